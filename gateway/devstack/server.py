"""``gateway dev``: a complete local stack in one command.

Starts an OpenBao dev server and the provider stand-in as child processes, bootstraps Vault with the same code as
``gateway secrets bootstrap``, creates an admin key and a demo customer key, and serves the gateway on 127.0.0.1.
Everything lives in a private temporary folder that is removed on exit; Ctrl-C or SIGTERM stops every child. The
Vault side (bootstrap with the dev server's root token, reading back the pepper) happens in
:mod:`gateway.boot.operator`; this module never holds a Vault client.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal

# Starts our own stand-in with a fixed argument list, no shell.
import subprocess  # nosec B404
import sys
import tempfile
from pathlib import Path
from types import FrameType

from gateway import logs
from gateway.boot import operator
from gateway.boot import serve as boot_serve
from gateway.boot.bootstrap import write_private_file
from gateway.boot.errors import BootError
from gateway.boot.secret import Secret
from gateway.boot.settings import Settings
from gateway.credits.ledger import SqlLedger
from gateway.devstack.openbao import die_with_parent, free_port, start_dev_vault, stop_process, wait_http
from gateway.keys.format import KeyKind
from gateway.keys.hashing import KeyHasher
from gateway.keys.service import KeyService
from gateway.keys.store import SqlKeyStore
from gateway.store.engine import open_store

DEV_CREDIT_MICRO_USD = 10_000_000  # 10 USD for the demo account
DEV_MODELS = [
    ("gpt-4o-mini", "chat"),
    ("gpt-3.5-turbo-instruct", "completion"),
    ("text-embedding-3-small", "embedding"),
]


def dev_policy(standin_base: str) -> str:
    lines = ["version: 1", "providers:", "  standin:", f"    api_base: {standin_base}", "models:"]
    for name, mode in DEV_MODELS:
        lines += [f"  - name: {name}", "    provider: standin", f"    upstream_model: {name}", f"    mode: {mode}"]
    return "\n".join(lines) + "\n"


def _banner(base_url: str, admin_key: str, customer_key: str) -> str:
    return f"""
gateway dev is up (OpenBao dev server and a provider STAND-IN, not a real LLM).

  base URL       {base_url}
  admin key      {admin_key}
  customer key   {customer_key}  (account with 10 USD of credit)

  curl {base_url}/v1/chat/completions \\
    -H "Authorization: Bearer {customer_key}" -H "Content-Type: application/json" \\
    -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello"}}]}}'

  python -c 'from openai import OpenAI; c = OpenAI(base_url="{base_url}/v1", api_key="{customer_key}");
  print(c.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "Hello"}}]).choices[0].message.content)'

Ctrl-C stops everything.
"""


def run_dev(*, port: int, keys_file: Path | None) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="gateway-dev-"))  # created 0700
    children: list[subprocess.Popen[bytes]] = []

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        vault = start_dev_vault(workdir / "openbao.log")
        children.append(vault.process)
        standin_port = free_port()
        standin = subprocess.Popen(  # nosec B603
            [sys.executable, "-m", "gateway.devstack.fake_provider", "--port", str(standin_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - a single prctl call, no locks taken
        )
        children.append(standin)
        wait_http(f"http://127.0.0.1:{standin_port}/_standin/requests")

        policy_file = workdir / "policy.yaml"
        policy_file.write_text(dev_policy(f"http://127.0.0.1:{standin_port}/v1"), encoding="utf-8")
        settings = Settings(
            vault_addr=vault.addr,
            vault_auth="approle",
            vault_role_id_file=workdir / "role_id",
            vault_secret_id_file=workdir / "secret_id",
            database_url=f"sqlite:///{workdir / 'gateway.db'}",
            policy_file=policy_file,
            host="127.0.0.1",
            port=port,
        )
        pepper = operator.bootstrap_dev_vault(
            settings, Secret(vault.root_token),
            provider_keys={"standin": Secret("standin-" + secrets.token_urlsafe(24))},
            credentials_dir=workdir,
        )
        engine = open_store(settings.database_url)
        keys = KeyService(SqlKeyStore(engine), KeyHasher(pepper.reveal().encode("utf-8")))
        del pepper
        ledger = SqlLedger(engine)
        account = ledger.create_account("dev account")
        ledger.top_up(account.id, DEV_CREDIT_MICRO_USD, "gateway dev starting credit")
        admin_key, _ = keys.issue(KeyKind.ADMIN, name="dev admin")
        customer_key, _ = keys.issue(KeyKind.CUSTOMER, name="dev customer", models=[m for m, _ in DEV_MODELS],
                                     account_id=account.id)
        base_url = f"http://127.0.0.1:{port}"
        if keys_file is not None:
            write_private_file(
                keys_file, json.dumps({"admin_key": admin_key, "customer_key": customer_key, "base_url": base_url})
            )
        print(_banner(base_url, admin_key, customer_key), flush=True)
        del admin_key, customer_key
        logs.configure(settings.log_level, settings.log_format)
        return boot_serve.serve(settings)
    except BootError as exc:
        print(exc.line(), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        for child in children:
            stop_process(child)
        shutil.rmtree(workdir, ignore_errors=True)
