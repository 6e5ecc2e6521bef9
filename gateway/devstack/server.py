"""``gateway dev``: a complete local stack in one command, for HTTP clients and for the host CLI.

Starts an OpenBao dev server and the provider stand-in as child processes, bootstraps Vault with the same code as
``gateway secrets bootstrap``, creates an admin key and a demo customer key, and serves the gateway on 127.0.0.1.
A port in use is refused before anything starts. The banner (keys, and the ``GATEWAY_*`` settings that point the CLI
at this stack) is printed only once the gateway has answered its own ``/readyz``.

Its files live in ``var/dev/`` under the working directory, one ``gateway dev`` at a time (a lock): the store and
the policy, kept after exit for inspection and cleared at the next start, and the Vault side (the OpenBao log with
its root token, the gateway's and the CLI's dev logins, the dev operator token), removed on exit. Ctrl-C or SIGTERM
stops every child. The Vault side happens in :mod:`gateway.boot.operator`; this module never holds a Vault client.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shlex
import shutil
import signal
import stat

# Starts our own stand-in with a fixed argument list, no shell.
import subprocess  # nosec B404
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

from gateway import logs
from gateway.boot import operator
from gateway.boot import serve as boot_serve
from gateway.boot.bootstrap import write_private_file
from gateway.boot.errors import BootError
from gateway.boot.secret import Secret
from gateway.boot.settings import Settings, load_settings
from gateway.credits.ledger import SqlLedger
from gateway.devstack.openbao import (
    check_port_free,
    die_with_parent,
    free_port,
    start_dev_vault,
    stop_process,
    wait_http,
)
from gateway.devstack.standin_vertex import accounts_to_json, throwaway_service_account
from gateway.keys.format import KeyKind
from gateway.keys.hashing import KeyHasher
from gateway.keys.service import KeyService
from gateway.keys.store import SqlKeyStore
from gateway.store.engine import open_store

HOST = "127.0.0.1"
DEV_CREDIT_MICRO_USD = 10_000_000  # 10 USD for the demo account
# The dev policy's models: (name, mode, provider, upstream model). One per provider kind, each on the stand-in's own
# wire protocol for that kind, so /v1/models shows the breadth (owned_by is the kind).
DEV_MODELS = [
    ("gpt-4o-mini", "chat", "standin", "gpt-4o-mini"),
    ("gpt-3.5-turbo-instruct", "completion", "standin", "gpt-3.5-turbo-instruct"),
    ("text-embedding-3-small", "embedding", "standin", "text-embedding-3-small"),
    ("claude-sonnet-4-5", "chat", "standin_anthropic", "claude-sonnet-4-5"),
    # An Azure deployment named after its model, so LiteLLM's cost map prices it (azure/gpt-4o-mini).
    ("azure-gpt-4o-mini", "chat", "standin_azure", "gpt-4o-mini"),
    # Priced from the cost map under Google AI Studio's name (gemini/gemini-2.5-flash).
    ("gemini-2.5-flash", "chat", "standin_gemini", "gemini-2.5-flash"),
    # A Bedrock model id, priced from the cost map under it; calls are SigV4-signed and checked by the stand-in.
    ("bedrock-claude-3-5-sonnet", "chat", "standin_bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
    # The same model on Vertex AI, with a throwaway service account (vertex_ai-language-models in the cost map).
    ("vertex-gemini-2.5-flash", "chat", "standin_vertex", "gemini-2.5-flash"),
    # One model, two deployments (OpenAI-compatible and Azure OpenAI): LiteLLM's router balances between them and
    # retries a failed call on the other (DEV_DEPLOYMENTS).
    ("gpt-4o", "chat", "", ""),
]
# The deployments of the dev models that have several: (provider, upstream model), each priced from the cost map.
DEV_DEPLOYMENTS = {"gpt-4o": [("standin", "gpt-4o"), ("standin_azure", "gpt-4o")]}
DEV_AZURE_API_VERSION = "2024-10-21"
DEV_VERTEX_PROJECT = "proj-gateway-dev"
DEV_VERTEX_ACCOUNT = f"gateway-dev@{DEV_VERTEX_PROJECT}.iam.gserviceaccount.com"
DEV_BEDROCK_REGION = "us-east-1"
# What var/dev/ holds besides the lock. The Vault side is removed on exit: the dev server, and with it every key and
# login, is gone then. The store and the policy stay until the next start, for a look at what the session did.
VAULT_SIDE = ("openbao.log", "boot", "cli", "operator-token")
# Marks var/dev/ as made by gateway dev: only such a folder is ever cleared.
MARKER = ".gateway-dev"


def dev_policy(standin_root: str) -> str:
    """The dev policy: the stand-in at ``standin_root`` (``http://127.0.0.1:PORT``) as an OpenAI-compatible provider,
    as Anthropic, as Azure OpenAI, as Google AI Studio's Gemini API, as Vertex AI and as AWS Bedrock."""
    lines = ["version: 1", "providers:",
             "  standin:", f"    api_base: {standin_root}/v1",
             "  standin_anthropic:", "    kind: anthropic", f"    api_base: {standin_root}",
             "  standin_azure:", "    kind: azure", f"    api_base: {standin_root}",
             f"    api_version: '{DEV_AZURE_API_VERSION}'",
             "  standin_gemini:", "    kind: gemini", f"    api_base: {standin_root}/v1beta",
             "  standin_vertex:", "    kind: vertex_ai", f"    project: {DEV_VERTEX_PROJECT}",
             "    location: us-central1", f"    api_base: {standin_root}",
             "  standin_bedrock:", "    kind: bedrock", f"    region: {DEV_BEDROCK_REGION}",
             f"    api_base: {standin_root}",
             "models:"]
    for name, mode, provider, upstream in DEV_MODELS:
        if name in DEV_DEPLOYMENTS:
            lines += [f"  - name: {name}", f"    mode: {mode}", "    deployments:",
                      *(f"      - {{provider: {p}, upstream_model: {u}}}" for p, u in DEV_DEPLOYMENTS[name]),
                      "    routing: {strategy: simple-shuffle, retries: 1, allowed_fails: 0, cooldown_seconds: 30}"]
            continue
        lines += [f"  - name: {name}", f"    provider: {provider}", f"    upstream_model: '{upstream}'",
                  f"    mode: {mode}"]
    return "\n".join(lines) + "\n"


def cli_settings(settings: Settings, access: operator.DevAccess) -> dict[str, str]:
    """The ``GATEWAY_*`` settings that point every CLI command at this stack: where the store, Vault, the policy and
    the CLI's dev login are; never a secret."""
    return {
        "GATEWAY_DATABASE_URL": settings.database_url,
        "GATEWAY_VAULT_ADDR": settings.vault_addr,
        "GATEWAY_VAULT_AUTH": "approle",
        "GATEWAY_VAULT_ROLE_ID_FILE": str(access.cli_role_id_file),
        "GATEWAY_VAULT_SECRET_ID_FILE": str(access.cli_secret_id_file),
        "GATEWAY_POLICY_FILE": str(settings.policy_file),
    }


def env_file_text(values: dict[str, str], base_url: str) -> str:
    return (f"# Written by `gateway dev` for the CLI against its stack at {base_url}; load with\n"
            "#   set -a; . THIS_FILE; set +a\n"
            "# No secret here, only where they are. Valid while that `gateway dev` runs.\n"
            + "".join(f"{name}={shlex.quote(value)}\n" for name, value in values.items()))


def _banner(*, base_url: str, admin_key: str, customer_key: str, account_id: str, folder: Path,
            values: dict[str, str], env_file: Path | None, operator_token_file: Path) -> str:
    gateway = shlex.quote(str(Path(sys.executable).with_name("gateway")))
    exports = "".join(f"  export {name}={shlex.quote(value)}\n" for name, value in values.items())
    where = ("" if env_file is None else
             f" ({shlex.quote(str(env_file))} holds these settings: set -a; . {shlex.quote(str(env_file))}; set +a)")
    return f"""
gateway dev is up (OpenBao dev server and a provider STAND-IN, not a real LLM).

  base URL       {base_url}
  admin key      {admin_key}
  customer key   {customer_key}  (account {account_id}, 10 USD of credit)
  dev folder     {folder}  (store, policy, dev Vault logins)

  curl {base_url}/v1/chat/completions \\
    -H "Authorization: Bearer {customer_key}" -H "Content-Type: application/json" \\
    -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello"}}]}}'

  {shlex.quote(sys.executable)} -c 'from openai import OpenAI; c = OpenAI(base_url="{base_url}/v1", api_key="{customer_key}");
  print(c.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "Hello"}}]).choices[0].message.content)'

The CLI against this stack, in another terminal{where}:
{exports}  {gateway} keys list
  {gateway} accounts show {account_id}
  {gateway} audit verify
  {gateway} ledger check
  {gateway} secrets issue-secret-id --operator-token-file {shlex.quote(str(operator_token_file))} --credentials-dir DIR

Ctrl-C stops everything. Vault and every key go with it; the store stays in {folder} until the next start.
"""


def _announce_when_ready(base_url: str, banner: str, stop: threading.Event) -> None:
    """Print ``banner`` once the gateway answers its own ``GET /readyz`` with 200, never before its port serves."""
    # No proxy for a loopback probe, whatever the environment says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while not stop.is_set():
        try:
            # A loopback http URL built here; no user input.
            with opener.open(f"{base_url}/readyz", timeout=2) as response:  # nosec B310
                if response.status == 200:
                    print(banner, flush=True)
                    return
        except (urllib.error.URLError, OSError):  # not listening yet, or 503 while LiteLLM starts
            pass
        stop.wait(0.1)


def check_writable_target(path: Path, option: str) -> None:
    """Refuse an output file that is a symlink or anything but our own regular file, before anything starts (the
    write itself refuses them again, without a window)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise BootError(option, f"{path} is a symlink; the file is written in place only")
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        raise BootError(option, f"{path} exists and is not a regular file of this user")


def claim_dev_folder(folder: Path) -> int:
    """Make ``folder`` ours (a real 0700 directory of this user, not a symlink), take its lock, and clear what an
    earlier run left. Returns the lock's descriptor: keep it open while the stack runs."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise BootError("dev folder", f"{folder} is not a directory of this user (a symlink is refused too)")
    os.chmod(folder, 0o700)
    lock = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        raise BootError("dev folder", f"another gateway dev uses {folder}; stop it, or start this one from another "
                                      "working directory") from None
    entries = [entry for entry in folder.iterdir() if entry.name not in (".lock", MARKER)]
    if entries and not (folder / MARKER).is_file():
        # Never clear a folder gateway dev did not make: it may hold someone else's files.
        os.close(lock)
        raise BootError("dev folder", f"{folder} holds files gateway dev did not put there; move them, or start "
                                      "gateway dev from another working directory")
    for entry in entries:
        _remove(entry)
    (folder / MARKER).touch(mode=0o600)
    return lock


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()


def run_dev(*, port: int, keys_file: Path | None, env_file: Path | None = None) -> int:
    folder = Path.cwd() / "var" / "dev"
    try:
        environment = load_settings()  # the log level and format; the rest is set below
        check_port_free(HOST, port)
        for target, option in ((keys_file, "--keys-file"), (env_file, "--env-file")):
            if target is not None:
                check_writable_target(target, option)
        lock = claim_dev_folder(folder)
    except BootError as exc:
        print(exc.line(), file=sys.stderr)
        return 2
    children: list[subprocess.Popen[bytes]] = []
    stop_announcing = threading.Event()

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        # Configured first, so what boot says before the gateway serves is in the same format as the rest.
        logs.configure(environment.log_level, environment.log_format)
        vault = start_dev_vault(folder / "openbao.log")
        children.append(vault.process)
        standin_port = free_port()
        # One dev key per provider; the stand-in learns them on its stdin (never argv or environment), so its
        # Anthropic, Azure, Gemini and Bedrock protocols refuse any other key, as the real services do.
        provider_keys = {name: "standin-" + secrets.token_urlsafe(24)
                         for name in ("standin", "standin_anthropic", "standin_azure", "standin_gemini")}
        # Vertex AI's: a service account with a new key, whose public half the stand-in's token endpoint learns.
        vertex_json, vertex_account = throwaway_service_account(
            DEV_VERTEX_ACCOUNT, frozenset({DEV_VERTEX_PROJECT}), f"http://127.0.0.1:{standin_port}/token")
        # Bedrock's credential is an AWS key pair, as Vault holds it for kind bedrock (the stand-in checks signatures).
        provider_keys["standin_bedrock"] = json.dumps({
            "aws_access_key_id": "AKIA" + secrets.token_hex(8).upper(),
            "aws_secret_access_key": "standin-" + secrets.token_urlsafe(30)})
        standin = subprocess.Popen(  # nosec B603
            [sys.executable, "-m", "gateway.devstack.fake_provider", "--port", str(standin_port),
             "--credentials-from-stdin"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - a single prctl call, no locks taken
        )
        children.append(standin)
        if standin.stdin is not None:  # always, with stdin=PIPE
            standin.stdin.write((json.dumps(sorted(provider_keys.values())) + "\n").encode())
            standin.stdin.write((accounts_to_json({DEV_VERTEX_ACCOUNT: vertex_account}) + "\n").encode())
            standin.stdin.close()
        provider_keys["standin_vertex"] = vertex_json
        del vertex_json
        wait_http(f"http://127.0.0.1:{standin_port}/_standin/requests")

        policy_file = folder / "policy.yaml"
        policy_file.write_text(dev_policy(f"http://127.0.0.1:{standin_port}"), encoding="utf-8")
        settings = Settings(
            vault_addr=vault.addr,
            vault_auth="approle",
            vault_role_id_file=folder / "boot" / "role_id",
            vault_secret_id_file=folder / "boot" / "secret_id",
            database_url=f"sqlite:///{folder / 'gateway.db'}",
            policy_file=policy_file,
            host=HOST,
            port=port,
        )
        access = operator.bootstrap_dev_vault(
            settings, Secret(vault.root_token),
            provider_keys={name: Secret(key) for name, key in provider_keys.items()},
            credentials_dir=folder / "boot", cli_credentials_dir=folder / "cli",
            operator_token_file=folder / "operator-token",
        )
        engine = open_store(settings.database_url)
        keys = KeyService(SqlKeyStore(engine), KeyHasher(access.pepper.reveal().encode("utf-8")))
        ledger = SqlLedger(engine)
        account = ledger.create_account("dev account")
        ledger.top_up(account.id, DEV_CREDIT_MICRO_USD, "gateway dev starting credit")
        admin_key, _ = keys.issue(KeyKind.ADMIN, name="dev admin")
        customer_key, _ = keys.issue(KeyKind.CUSTOMER, name="dev customer", models=[m[0] for m in DEV_MODELS],
                                     account_id=account.id)
        del keys
        engine.dispose()
        base_url = f"http://{HOST}:{port}"
        values = cli_settings(settings, access)
        if keys_file is not None:
            write_private_file(keys_file, json.dumps({"admin_key": admin_key, "customer_key": customer_key,
                                                      "account_id": account.id, "base_url": base_url}))
        if env_file is not None:
            write_private_file(env_file, env_file_text(values, base_url))
        banner = _banner(base_url=base_url, admin_key=admin_key, customer_key=customer_key, account_id=account.id,
                         folder=folder, values=values, env_file=env_file,
                         operator_token_file=access.operator_token_file)
        del admin_key, customer_key, access, provider_keys
        threading.Thread(target=_announce_when_ready, args=(base_url, banner, stop_announcing), daemon=True,
                         name="gateway-dev-banner").start()
        del banner
        return boot_serve.serve(settings)
    except BootError as exc:
        print(exc.line(), file=sys.stderr)
        return 2
    except SystemExit as exc:
        # uvicorn exits (3) when the application's startup fails or the port cannot be bound, which it logged.
        if exc.code in (0, None):
            return 0
        try:
            check_port_free(HOST, port)
        except BootError as taken:  # taken by another process after the check at the start
            print(taken.line(), file=sys.stderr)
        else:
            print("gateway: boot failed at startup: the gateway did not start (see the log above)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        stop_announcing.set()
        signal.signal(signal.SIGTERM, previous)
        for child in children:
            stop_process(child)
        for name in VAULT_SIDE:
            _remove(folder / name)
        os.close(lock)
