"""The ``gateway`` command: serve, dev, keys, admin-key, secrets, openapi, accounts, ledger, audit."""

from __future__ import annotations

import json
import os
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

EXIT_CODES_HELP = ("Exit codes: 0 success; 1 an integrity check found a break or drift (named on stderr); 2 a usage "
                   "or operational failure (one line on stderr); 3 the command itself failed unexpectedly (a bug: "
                   "one line on stderr, the traceback only with GATEWAY_LOG_LEVEL=DEBUG; nothing was verified).")
# Exit codes (also in EXIT_CODES_HELP and docs/cli.md): integrity findings, usage failures and crashes stay apart, so a
# crash of a checker is never read as a finding, nor a finding as a crash.
EXIT_BROKEN = 1
EXIT_FAILURE = 2
EXIT_CRASH = 3

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Security-hardened LLM gateway. " + EXIT_CODES_HELP)
keys_app = typer.Typer(no_args_is_help=True, help="Keys on the store directly: create customer keys; list and revoke any key.")
admin_key_app = typer.Typer(no_args_is_help=True, help="Admin keys (created on the host only).")
secrets_app = typer.Typer(no_args_is_help=True, help="The Vault side: policy, AppRole, secrets.")
accounts_app = typer.Typer(no_args_is_help=True, help="Credit accounts (integer micro-USD), on the store directly.")
ledger_app = typer.Typer(no_args_is_help=True, help="Ledger parity check and the reservation sweeper.")
audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit log and the auditor's report.")
app.add_typer(audit_app, name="audit")
app.add_typer(accounts_app, name="accounts")
app.add_typer(ledger_app, name="ledger")
app.add_typer(keys_app, name="keys")
app.add_typer(admin_key_app, name="admin-key")
app.add_typer(secrets_app, name="secrets")


def _fail(line: str) -> None:
    typer.echo(line, err=True)
    raise typer.Exit(EXIT_FAILURE)


@app.command()
def serve(
    check: Annotated[bool, typer.Option("--check", help="Run every boot check, then exit.")] = False,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, max=64,
        help="Worker processes, forked after the boot (default GATEWAY_WORKERS, else 1); more than one needs "
             "GATEWAY_REDIS_URL.")] = None,
) -> None:
    """Boot from Vault and serve on GATEWAY_HOST:GATEWAY_PORT."""
    from gateway.boot.start import main

    raise typer.Exit(main(check=check, workers=workers))


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="Port for the gateway.", min=1, max=65535)] = 8090,
    keys_file: Annotated[Path | None, typer.Option("--keys-file", help="Also write the keys as JSON (mode 0600).")] = None,
    env_file: Annotated[Path | None, typer.Option(
        "--env-file", help="Also write the GATEWAY_* settings that point the CLI at this stack (mode 0600, no "
                           "secrets); load them with: set -a; . PATH; set +a")] = None,
) -> None:
    """Local stack: OpenBao dev server, provider stand-in, bootstrap, keys, and the gateway; files in var/dev/."""
    from gateway.devstack.server import run_dev

    raise typer.Exit(run_dev(port=port, keys_file=keys_file, env_file=env_file))


def _parse_expiry(value: str | None) -> datetime | None:
    from gateway.clock import is_naive

    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        _fail("gateway: --expires-at must be an ISO 8601 date-time with an offset, e.g. 2027-01-31T00:00:00+00:00")
        raise
    if is_naive(parsed):
        _fail("gateway: --expires-at needs a timezone offset")
    if parsed <= datetime.now(UTC):
        _fail("gateway: --expires-at is in the past")
    return parsed


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A label for the key.")],
    model: Annotated[list[str], typer.Option("--model", help="A model the key may use (repeat).")],
    account_id: Annotated[str, typer.Option(help="The credit account the key spends from.")],
    expires_at: Annotated[str | None, typer.Option(help="ISO 8601 with offset.")] = None,
    spend_cap_micro_usd: Annotated[int | None, typer.Option(help="Most this key may spend per period.")] = None,
    spend_cap_period: Annotated[str, typer.Option(help="none, daily or monthly.")] = "none",
    rpm_limit: Annotated[int | None, typer.Option(help="Requests per minute (default: the policy's).")] = None,
    tpm_limit: Annotated[int | None, typer.Option(help="Tokens per minute (default: the policy's).")] = None,
) -> None:
    """Create a customer key (reads the pepper from Vault with the configured credentials)."""
    from gateway.credits.ledger import is_spend_cap_period
    from gateway.keys.format import KeyKind
    from gateway.ops.keys import create_key

    if not is_spend_cap_period(spend_cap_period):
        _fail("gateway: --spend-cap-period must be none, daily or monthly")
    if spend_cap_micro_usd is not None and spend_cap_micro_usd < 0:
        _fail("gateway: --spend-cap-micro-usd cannot be negative")
    if (rpm_limit is not None and rpm_limit < 1) or (tpm_limit is not None and tpm_limit < 1):
        _fail("gateway: --rpm-limit and --tpm-limit must be positive")
    plaintext, record = create_key(KeyKind.CUSTOMER, name=name, models=model, expires_at=_parse_expiry(expires_at),
                                   account_id=account_id, spend_cap_micro_usd=spend_cap_micro_usd,
                                   spend_cap_period=spend_cap_period, rpm_limit=rpm_limit, tpm_limit=tpm_limit)
    typer.echo(json.dumps({**record, "key": plaintext}, indent=2))
    typer.echo("Store the key now: it is not shown again.", err=True)


@keys_app.command("list")
def keys_list() -> None:
    """List customer and admin keys (ids and states, never the keys or their digests)."""
    from gateway.ops.keys import list_keys

    typer.echo(json.dumps(list_keys(), indent=2))


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a customer or admin key by id."""
    from gateway.ops.keys import revoke_key

    record = revoke_key(key_id)
    if record is None:
        _fail(f"gateway: no key with id {key_id}")
    typer.echo(json.dumps(record, indent=2))


@admin_key_app.command("create")
def admin_key_create(name: Annotated[str, typer.Option(help="Who or what holds this admin key.")]) -> None:
    """Create an admin key (valid on /admin only)."""
    from gateway.keys.format import KeyKind
    from gateway.ops.keys import create_key

    plaintext, record = create_key(KeyKind.ADMIN, name=name, models=[], expires_at=None, account_id=None)
    typer.echo(json.dumps({**record, "key": plaintext}, indent=2))
    typer.echo("Store the key now: it is not shown again.", err=True)


@secrets_app.command("bootstrap")
def secrets_bootstrap(
    operator_token_file: Annotated[Path, typer.Option(help="File with an operator Vault token (mode 0600).")],
    credentials_dir: Annotated[Path, typer.Option(help="Where to write role_id and secret_id (0600).")],
    provider_key_file: Annotated[
        list[str] | None, typer.Option(help="NAME=PATH: provider NAME's API key is in file PATH (repeat); for kind "
                                            "bedrock, its AWS key pair as one JSON object (secrets/README.md).")
    ] = None,
    rotate_core: Annotated[bool, typer.Option(
        help="Generate a new master key, pepper and audit key even if present (invalidates every virtual key and "
             "starts a new audit chain key).")] = False,
    rotate_master_key: Annotated[bool, typer.Option(
        help="Generate a new LiteLLM master key only; then restart every replica.")] = False,
    postgres_password_file: Annotated[Path | None, typer.Option(
        help="File (0600) with the Postgres password to store in Vault (GATEWAY_DATABASE_PASSWORD_FROM_VAULT).")
    ] = None,
    redis_password_file: Annotated[Path | None, typer.Option(
        help="File (0600) with the Redis password to store in Vault (GATEWAY_REDIS_PASSWORD_FROM_VAULT).")] = None,
) -> None:
    """Apply the policy and AppRole role, generate master key and pepper, write provider keys, datastore passwords and
    credentials."""
    from gateway.ops.bootstrap import bootstrap

    if rotate_core and rotate_master_key:
        _fail("gateway: use either --rotate-core or --rotate-master-key")
    role_id_file, secret_id_file = bootstrap(operator_token_file, credentials_dir, provider_key_file or [], rotate_core,
                                             rotate_master_key, postgres_password_file=postgres_password_file,
                                             redis_password_file=redis_password_file)
    typer.echo(f"role_id written to {role_id_file}\nsecret_id written to {secret_id_file} (single use)")


@secrets_app.command("issue-secret-id")
def secrets_issue_secret_id(
    operator_token_file: Annotated[Path, typer.Option(help="File with an operator Vault token (mode 0600).")],
    credentials_dir: Annotated[Path, typer.Option(help="Where to write role_id and secret_id (0600).")],
    wrap_ttl: Annotated[str | None, typer.Option(
        help="Write a response-wrapping token for the secret_id instead, valid this long (e.g. 10m); boot unwraps it "
             "with GATEWAY_VAULT_SECRET_ID_WRAPPED=true.")] = None,
) -> None:
    """Write a fresh single-use secret_id (every gateway start needs one), or a wrapping token for it."""
    from gateway.ops.bootstrap import issue_secret_id

    _, secret_id_file = issue_secret_id(operator_token_file, credentials_dir, wrap_ttl)
    if wrap_ttl is not None:
        typer.echo(f"wrapped secret_id written to {secret_id_file} (a wrapping token, single use, valid {wrap_ttl}; "
                   "set GATEWAY_VAULT_SECRET_ID_WRAPPED=true)")
    else:
        typer.echo(f"secret_id written to {secret_id_file} (single use)")


@secrets_app.command("jwt-setup")
def secrets_jwt_setup(
    operator_token_file: Annotated[Path, typer.Option(help="File with an operator Vault token (mode 0600).")],
    public_key_file: Annotated[list[Path], typer.Option(
        help="PEM public key the platform's issuer signs tokens with (repeat for key rotation).")],
    issuer: Annotated[str, typer.Option(help="The tokens' issuer (iss), e.g. the cluster's service-account issuer.")],
    audience: Annotated[str, typer.Option(help="The audience (aud) the tokens must carry; unique to this Vault role.")],
    subject: Annotated[str, typer.Option(
        help="The subject (sub) the tokens must carry, e.g. system:serviceaccount:NAMESPACE:NAME.")],
    bound_claim: Annotated[list[str] | None, typer.Option(
        help="NAME=VALUE: a claim the tokens must carry with exactly this value (repeat).")] = None,
) -> None:
    """Configure Vault's jwt auth method (GATEWAY_VAULT_JWT_MOUNT) and the gateway's role (GATEWAY_VAULT_JWT_ROLE)
    for GATEWAY_VAULT_AUTH=jwt logins."""
    from gateway.ops.bootstrap import jwt_setup

    role = jwt_setup(operator_token_file, public_key_file, issuer, audience, subject, bound_claim or [])
    typer.echo(f"jwt role {role} written: set GATEWAY_VAULT_AUTH=jwt, GATEWAY_VAULT_JWT_ROLE={role} and "
               "GATEWAY_VAULT_JWT_FILE")


@secrets_app.command("cert-setup")
def secrets_cert_setup(
    operator_token_file: Annotated[Path, typer.Option(help="File with an operator Vault token (mode 0600).")],
    ca_file: Annotated[Path, typer.Option(help="PEM certificate of the CA that signs the gateway's client certificate.")],
    common_name: Annotated[str, typer.Option(help="The common name (CN) the client certificate must carry, exactly.")],
) -> None:
    """Configure Vault's TLS certificate auth method (GATEWAY_VAULT_CERT_MOUNT) and the gateway's role
    (GATEWAY_VAULT_CERT_ROLE) for GATEWAY_VAULT_AUTH=cert logins."""
    from gateway.ops.bootstrap import cert_setup

    role = cert_setup(operator_token_file, ca_file, common_name)
    typer.echo(f"cert role {role} written: set GATEWAY_VAULT_AUTH=cert, GATEWAY_VAULT_CERT_ROLE={role}, "
               "GATEWAY_VAULT_CLIENT_CERT and GATEWAY_VAULT_CLIENT_KEY")


@app.command()
def openapi() -> None:
    """Print the gateway's OpenAPI description (customer surface and admin API) as JSON."""
    from gateway.admin.api import build_admin_app
    from gateway.openapi import gateway_openapi

    admin = build_admin_app(None, None, frozenset(), audit=None)  # type: ignore[arg-type]  # schema only, never served
    typer.echo(json.dumps(gateway_openapi(admin.openapi()), indent=2))


@accounts_app.command("create")
def accounts_create(name: Annotated[str, typer.Option(help="A label for the account.")]) -> None:
    """Create an account with a zero balance."""
    from gateway.ops.accounts import create_account

    typer.echo(json.dumps(create_account(name), indent=2))


@accounts_app.command("credit")
def accounts_credit(
    account_id: str,
    amount_micro_usd: Annotated[int, typer.Option(help="Positive integer micro-USD (1 USD = 1000000).")],
    reason: Annotated[str, typer.Option(help="Why (kept in the ledger).")],
) -> None:
    """Add credit to an account (a top-up ledger entry)."""
    from gateway.ops.accounts import credit_account

    if amount_micro_usd <= 0:
        _fail("gateway: --amount-micro-usd must be positive")
    typer.echo(json.dumps(credit_account(account_id, amount_micro_usd, reason), indent=2))


@accounts_app.command("list")
def accounts_list(
    limit: Annotated[int, typer.Option(help="At most this many accounts (1 to 1000).")] = 100,
    after_id: Annotated[str | None, typer.Option(help="Start after this account id: the next_after_id of the "
                                                      "previous page.")] = None,
) -> None:
    """Accounts in id order, a page at a time, with their balances (as GET /admin/accounts)."""
    from gateway.ops.accounts import list_accounts

    if not 1 <= limit <= 1000:
        _fail("gateway: --limit must be from 1 to 1000")
    typer.echo(json.dumps(list_accounts(limit, after_id), indent=2))


@accounts_app.command("show")
def accounts_show(account_id: str) -> None:
    """Balance, reservations and the recent ledger of an account."""
    from gateway.ops.accounts import show_account

    typer.echo(json.dumps(show_account(account_id), indent=2))


@ledger_app.command("check")
def ledger_check() -> None:
    """Verify every account and key cap against the ledger's entries; exit 1 naming each drift, 3 if the check
    itself fails."""
    from gateway.ops.ledger import check_ledger

    drifts = check_ledger()
    for drift in drifts:
        typer.echo(f"drift: {drift.describe()}", err=True)
    if drifts:
        raise typer.Exit(EXIT_BROKEN)
    typer.echo("ledger parity holds for every account and key cap")


@ledger_app.command("sweep")
def ledger_sweep(
    ttl_seconds: Annotated[int | None, typer.Option(help="Expire reservations open longer than this "
                                                            "(default: the policy's reservation_ttl_seconds).")] = None,
) -> None:
    """Expire reservations left open by requests that can no longer finish (audited as ``ledger_swept``)."""
    from gateway.ops.ledger import sweep_ledger

    if ttl_seconds is not None and ttl_seconds < 0:
        # A negative TTL reaches into the future: every open reservation, in-flight requests included, would be
        # expired and charged nothing.
        _fail("gateway: --ttl-seconds cannot be negative (0 expires every open reservation: only with no gateway "
              "serving)")
    expired, still_open = sweep_ledger(ttl_seconds)
    typer.echo(json.dumps({"expired": expired, "open": still_open}))


@audit_app.command("verify")
def audit_verify(
    expect_head: Annotated[str | None, typer.Option(
        "--expect-head", metavar="SEQ:MAC",
        help="A head recorded earlier (the audit_head=SEQ:MAC of a log line kept off the host): the chain must still "
             "hold that entry with that MAC, else it was rewound.")] = None,
) -> None:
    """Walk the audit chain (reads the audit key from Vault); exit 1 naming each break, 3 if the check itself fails."""
    from gateway.audit.log import parse_head
    from gateway.ops.audit import verify_audit

    anchor = None
    if expect_head is not None:
        try:
            anchor = parse_head(expect_head)
        except ValueError:
            _fail("gateway: --expect-head must be SEQ:MAC as logged in audit_head=SEQ:MAC")
    broken, entries = verify_audit(anchor)
    for item in broken:
        typer.echo(f"audit chain broken at seq {item.seq}: {item.problem}", err=True)
    if broken:
        raise typer.Exit(EXIT_BROKEN)
    typer.echo(f"audit chain intact ({entries} entries)" + (f", holds head {anchor[0]}" if anchor else ""))


@audit_app.command("report")
def audit_report(output: Annotated[Path, typer.Option("--output", "-o", help="Markdown file to write.")]) -> None:
    """Write the auditor's report (live configuration, secrets map, versions, parity, chain, key counts)."""
    from gateway.ops.report import write_report

    write_report(output)
    typer.echo(f"report written to {output}")


def main() -> None:
    # Everything this process and its children create is private to the gateway's user (0600 files, 0700 folders):
    # the SQLite database and its -wal/-shm side files, the dev stack's files and logs, reports.
    os.umask(0o077)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last resort: one line and its own exit code, never a traceback
        _crashed(exc)


def _crashed(exc: Exception) -> None:
    # Only the exception's type: its text may carry a database URL or a value from the store.
    if os.environ.get("GATEWAY_LOG_LEVEL", "").upper() == "DEBUG":
        traceback.print_exception(exc)
    typer.echo(f"gateway: the command failed unexpectedly ({type(exc).__name__}); nothing was verified. This is a "
               "bug, not a finding: set GATEWAY_LOG_LEVEL=DEBUG for the traceback", err=True)
    sys.exit(EXIT_CRASH)
