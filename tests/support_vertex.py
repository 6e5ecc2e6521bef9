"""Vertex AI for the tests: service accounts with throwaway RSA keys, the stand-in that knows them, their JSON in
Vault, and a gateway whose policy serves Gemini models on Vertex AI (tests/functional/test_vertex_ai.py, the
differential property in tests/security/test_differential.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from gateway.devstack.standin_vertex import ServiceAccounts, throwaway_service_account
from tests.support import PRICE, RunningGateway, Stack, StandIn, start_gateway

PROJECT = "proj-standin"
LOCATION = "europe-west4"
@dataclass
class VertexStack:
    gateway: RunningGateway
    standin: StandIn
    accounts: ServiceAccounts
    credentials: dict[str, str]  # provider name -> the service account's JSON in Vault
    emails: dict[str, str]  # provider name -> the service account's client_email
    key: str
    account: str

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url + "/v1", api_key=self.key, max_retries=0, timeout=30)

    def calls(self, path_prefix: str = "/v1/projects/") -> list[dict[str, Any]]:
        return [c for c in self.standin.recorder.all() if str(c["path"]).startswith(path_prefix)]

    def token_calls(self) -> list[dict[str, Any]]:
        return self.calls("/token")

    def secrets(self) -> list[str]:
        """Everything no response or log line may show: each account's JSON and private key, every issued token."""
        keys = [json.loads(text)["private_key"] for text in self.credentials.values()]
        lines = [line for key in keys for line in key.splitlines() if len(line) >= 40]
        return [*self.credentials.values(), *keys, *lines, *self.accounts.issued()]


def model_entry(name: str, provider: str, upstream: str, price: bool = True) -> str:
    text = (f"  - name: {name}\n    provider: {provider}\n    upstream_model: {upstream}\n    mode: chat\n"
            "    max_output_tokens: 1000\n")
    return text + (f"    price: {json.dumps(PRICE)}\n" if price else "")


def provider_entry(name: str, root: str, project: str = PROJECT) -> str:
    return f"  {name}:\n    kind: vertex_ai\n    project: {project}\n    location: {LOCATION}\n    api_base: {root}\n"


def vertex_policy(root: str) -> str:
    providers = (provider_entry("vertex", root) + provider_entry("vertex_wrong", root) + provider_entry("vertex_refresh", root)
                 + provider_entry("vertex_elsewhere", root, project="proj-elsewhere")
                 + provider_entry("vertex_redirect", root, project="proj-redirect"))
    models = (model_entry("vertex-chat", "vertex", "gemini-standin-chat")
              + model_entry("vertex-failing", "vertex", "gemini-standin-error-500")
              + model_entry("vertex-echo", "vertex", "gemini-standin-echo-error")
              + model_entry("vertex-slow", "vertex", "gemini-standin-slow-6000")
              + model_entry("vertex-wrong-key", "vertex_wrong", "gemini-standin-chat")
              + model_entry("vertex-refresh", "vertex_refresh", "gemini-standin-chat")
              + model_entry("vertex-elsewhere", "vertex_elsewhere", "gemini-standin-chat")
              + model_entry("vertex-redirected", "vertex_redirect", "gemini-standin-chat")
              + model_entry("vertex-mapped", "vertex", "gemini-2.5-flash", price=False))
    return (f"version: 1\nproviders:\n{providers}models:\n{models}"
            "upstream:\n  timeout_seconds: 3\nrate_limits:\n  default_rpm: 1000000\n  default_tpm: 1000000000\n")


def start_vertex_stack(stack: Stack, workdir: Path) -> VertexStack:
    """Service accounts for each provider (``vertex_wrong``'s key is not the one the token endpoint knows, and
    ``vertex_refresh``'s tokens last 2 seconds), the stand-in that knows them, their JSON in Vault, and a gateway whose
    HOME holds a gcloud default-credentials file of yet another account that must never be used."""
    from gateway.boot.bootstrap import bootstrap
    from gateway.boot.secret import Secret
    from gateway.boot.settings import Settings

    accounts = ServiceAccounts({})
    standin = StandIn(service_accounts=accounts).start()
    token_uri = standin.root_url + "/token"
    credentials, emails = {}, {}
    for name in ("vertex", "vertex_wrong", "vertex_refresh", "vertex_elsewhere", "vertex_redirect", "adc"):
        email = f"{name.replace('_', '-')}@{PROJECT}.iam.gserviceaccount.com"
        text, account = throwaway_service_account(email, frozenset({PROJECT}), token_uri,
                                                  token_lifetime=2 if name == "vertex_refresh" else 3600)
        if name == "vertex_wrong":
            _, account = throwaway_service_account(email, frozenset({PROJECT}), token_uri)  # another key pair
        accounts.accounts[email] = account
        credentials[name], emails[name] = text, email
    home = workdir / "vertex-home"
    (home / ".config" / "gcloud").mkdir(parents=True, exist_ok=True)
    (home / ".config" / "gcloud" / "application_default_credentials.json").write_text(credentials.pop("adc"))
    policy_text = vertex_policy(standin.root_url)
    policy_file = workdir / "vertex-policy.yaml"
    policy_file.write_text(policy_text, encoding="utf-8")
    bootstrap(stack.root(), Settings(vault_addr=stack.vault_addr),
              provider_keys={name: Secret(text) for name, text in credentials.items()},
              credentials_dir=workdir / "vertex-boot")
    stack.canaries += [json.loads(text)["private_key"] for text in credentials.values()]
    gateway = start_gateway(stack, workdir, "gw-vertex", f"sqlite:///{workdir / 'vertex.db'}",
                            GATEWAY_POLICY_FILE=str(policy_file), HOME=str(home))
    account = gateway.keys.account(100_000_000)
    models = [line.split(": ", 1)[1] for line in policy_text.splitlines() if line.startswith("  - name: ")]
    key, _ = gateway.keys.customer(models=models, account_id=account)
    return VertexStack(gateway, standin, accounts, credentials, emails, key, account)
