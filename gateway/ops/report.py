"""``gateway audit report``: the auditor's view, computed from the live configuration.

Reads the audit key from Vault through :mod:`gateway.boot.operator` (to verify the chain) and never writes a secret
value into the report: it names where each secret lives and which policy can read it, nothing more.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from gateway import LITELLM_PIN
from gateway.admin.api import build_admin_app
from gateway.boot import litellm_mount
from gateway.boot.bootstrap import POLICY_NAME, render_policy, secrets_dir
from gateway.boot.errors import BootError
from gateway.credits.ledger import SqlLedger
from gateway.keys.store import SqlKeyStore
from gateway.ops.context import die, open_audit, open_settings, open_store_and_core
from gateway.policy import PolicyError, load_policy
from gateway.routes import ROUTES, Endpoint


def _routes() -> list[tuple[str, str, str]]:
    groups = [((Endpoint.HANDOFF,), "customer key; pre-flight then LiteLLM"),
              ((Endpoint.MODELS, Endpoint.MODEL, Endpoint.SELF_REVOKE), "customer key; answered by the gateway"),
              ((Endpoint.HEALTH, Endpoint.READY), "no key; probe answering only ok/ready/not_ready")]
    rows = [(method, path, access) for endpoints, access in groups
            for method, path in sorted((r.method, r.label) for r in ROUTES if r.endpoint in endpoints)]
    admin = build_admin_app(None, None, frozenset(), audit=None)  # type: ignore[arg-type]  # routes only, never served
    for route in admin.routes:
        for method in sorted(getattr(route, "methods", None) or []):
            rows.append((method, route.path, "admin key"))  # type: ignore[attr-defined]
    return rows


def _pinned() -> dict[str, str]:
    lock = (secrets_dir().parent / "requirements" / "runtime.txt").read_text()
    return {m.group(1).lower(): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", lock,
                                                                 re.MULTILINE)}


def build_report() -> str:
    settings = open_settings()
    try:
        policy = load_policy(settings.policy_file)
    except PolicyError as exc:
        die(BootError("policy", str(exc)))
    engine, core = open_store_and_core(settings)
    lines = [(f"# Gateway audit report\n\nGenerated {datetime.now(UTC).isoformat(timespec='seconds')} from the live "
             f"configuration (policy `{settings.policy_file}`, store `{engine.url.get_backend_name()}`).\n")]

    lines.append("## Routes exposed (computed from the application)\n\n| method | path | who |\n|---|---|---|")
    lines += [f"| {m} | `{p}` | {who} |" for m, p, who in _routes()]
    lines.append("\nEvery other path and method answers 404; LiteLLM's own routes are not reachable.\n")

    base = f"{settings.vault_mount}/{settings.vault_path}"
    providers = sorted(policy.provider_names())
    policy_text = render_policy(settings)
    readable = re.findall(r'path "([^"]+)"\s*\{\s*capabilities\s*=\s*\[([^\]]*)\]', policy_text)
    lines.append("## Where each secret lives\n\n| secret | location | readable by |\n|---|---|---|")
    for name, sub in (("LiteLLM master key", "core#master_key"), ("key-hashing pepper", "core#pepper"),
                      ("audit chain key", "core#audit_key"),
                      *((f"provider key `{p}`", f"providers#{p}") for p in providers),
                      *((name, sub) for name, sub, asked in (
                          ("Postgres password", "datastores#postgres_password", settings.database_password_from_vault),
                          ("Redis password", "datastores#redis_password", settings.redis_password_from_vault))
                        if asked)):
        path = f"{settings.vault_mount}/data/{settings.vault_path}/{sub.split('#')[0]}"
        readers = [POLICY_NAME] if any(p == path and "read" in caps for p, caps in readable) else ["(no policy)"]
        lines.append(f"| {name} | Vault KV v2 `{base}/{sub.replace('#', '` field `')}` | {', '.join(readers)} "
                     "(boot only; token revoked after the reads) |")
    lines.append("| virtual keys | the store keeps HMAC-SHA256 digests only | — |")
    lines.append("\nIn the running process the master key and provider keys live in LiteLLM's memory (TM-T1).\n")
    lines.append("Runtime policy (`secrets/gateway-runtime.hcl`, rendered):\n\n```hcl\n" + policy_text.strip() + "\n```\n")

    lines.append("## Versions: pinned and installed\n\n| package | pinned | installed | |\n|---|---|---|---|")
    mismatches = 0
    for name, version in sorted(_pinned().items()):
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = "missing"
        if installed != version:
            mismatches += 1
        if installed != version or name in ("litellm", "hvac", "fastapi", "starlette", "sqlalchemy", "slowapi",
                                            "limits", "uvicorn", "openai", "cryptography"):
            lines.append(f"| {name} | {version} | {installed} | {'ok' if installed == version else 'MISMATCH'} |")
    try:
        litellm_mount.check_litellm_version()
        litellm_line = f"LiteLLM version check: passed (pin {LITELLM_PIN})."
    except BootError as exc:
        litellm_line = f"LiteLLM version check: FAILED ({exc.message})."
    lines.append(f"\n{mismatches} installed versions differ from the lock. {litellm_line}\n")

    drifts = SqlLedger(engine).check()
    lines.append("## Ledger parity\n")
    lines.append("Parity holds for every account." if not drifts else "\n".join(
        f"- DRIFT: {d.describe()}" for d in drifts))

    audit = open_audit(settings, engine, core)
    broken, seq = audit.verify_chain()
    lines.append("\n## Audit chain\n")
    lines.append(f"Intact: {seq} entries verified." if not broken else "\n".join(
        f"- BROKEN at seq {b.seq}: {b.problem}" for b in broken))

    now = datetime.now(UTC)
    counts = Counter((r.kind, "honeytoken" if r.honeytoken else r.state(now)) for r in SqlKeyStore(engine).list())
    lines.append("\n## Keys\n\n| kind | state | count |\n|---|---|---|")
    lines += [f"| {'customer' if kind == 'ck' else 'admin'} | {state} | {n} |"
              for (kind, state), n in sorted(counts.items())]
    return "\n".join(lines) + "\n"


def write_report(output: Path) -> None:
    output.write_text(build_report(), encoding="utf-8")
