"""HAZMAT: a response-wrapped secret_id, checked and unwrapped at boot (Vault's secure introduction).

With ``GATEWAY_VAULT_SECRET_ID_WRAPPED=true`` the secret_id file holds a response-wrapping token
(``gateway secrets issue-secret-id --wrap-ttl 10m``) instead of the secret_id. Boot:

1. looks the token up (``sys/wrapping/lookup``, which does not use it up) and refuses it unless its creation path is
   exactly ``auth/<GATEWAY_VAULT_APPROLE_MOUNT>/role/gateway/secret-id``. A token wrapping anything else (a secret_id
   of another role, a value someone wrapped with ``sys/wrapping/wrap``, a token) is left as it is, never unwrapped;
2. unwraps it, with the wrapping token as the request's own token (a wrapping token works exactly once);
3. hands the secret_id to the AppRole login.

Vault answers "not valid or does not exist" both to a lookup and to an unwrap of a token that was unwrapped already,
that expired, or that it never issued. Vault's guidance treats that as the sign of an interception: whoever unwrapped it
first holds the secret_id. Boot refuses with :class:`WrappingTokenUnusable` and logs a CRITICAL line saying so. The
gateway's own audit chain cannot take an entry at this point: its key (``audit_key``) is in Vault, which boot cannot
read without the login that just failed. So boot records a *pending* alarm in the store when it can open the store
without Vault (SQLite, or Postgres whose password does not come from Vault), and the next boot that holds the key moves
it into the chain as a ``boot_alarm`` entry (:mod:`gateway.audit.alarms`). A store whose password is in Vault cannot be
opened here: then the CRITICAL line and Vault's own audit device, which logged the earlier unwrap (with the caller's
address) and this refused lookup, are the record; threat model TM-S5, TM-T16.

Errors are :class:`BootError` lines that name the step and the setting; never the token, the secret_id or the text of
an hvac exception.
"""

from __future__ import annotations

import logging
import re

import hvac.exceptions
import requests

from gateway.audit.alarms import WRAPPING_TOKEN_UNUSABLE, raise_pending
from gateway.boot.errors import BootError
from gateway.boot.settings import APPROLE_ROLE, Settings, read_credential_file
from gateway.boot.vault_client import new_client, transport_error
from gateway.store.engine import open_store

log = logging.getLogger("gateway.boot")
STEP = "vault unwrap"
SETTING = "GATEWAY_VAULT_SECRET_ID_FILE"
# What Vault issues as a secret_id: a UUID. A wrapping token is a Vault token: a type prefix and a dot ("s.", "hvs."),
# then base62 (and, from a namespace, ".<namespace id>"). Anything else is a damaged delivery, not an interception.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_VAULT_TOKEN = re.compile(r"[A-Za-z]{1,8}\.[A-Za-z0-9._-]{16,512}")
INTERCEPTED = ("the wrapping token in GATEWAY_VAULT_SECRET_ID_FILE is unknown to Vault: it was unwrapped already "
               "(someone else may hold the secret_id) or it expired; treat it as an interception, check Vault's audit "
               "log for who unwrapped it, and deliver a new wrapped secret_id")


class WrappingTokenUnusable(BootError):
    """The wrapping token was already unwrapped, expired or never existed: the interception signal."""

    def __init__(self) -> None:
        super().__init__(STEP, INTERCEPTED)


def expected_creation_path(settings: Settings) -> str:
    """Where Vault records a wrapped secret_id of the gateway's role as created."""
    return f"auth/{settings.vault_approle_mount}/role/{APPROLE_ROLE}/secret-id"


def _intercepted(settings: Settings, stage: str) -> WrappingTokenUnusable:
    """The refusal for a wrapping token Vault no longer knows, after its CRITICAL line and the pending alarm."""
    log.critical("wrapped secret_id unusable: already unwrapped or expired; possible interception",
                 extra={"step": STEP, "reason": "wrapping_token_unusable"})
    _pending_alarm(settings, stage)
    return WrappingTokenUnusable()


def _pending_alarm(settings: Settings, stage: str) -> None:
    """One more line: the alarm is pending in the store for the next good boot to chain, or why it is not.

    The detail names the step at which Vault no longer knew the token. Vault no longer knows it, so its creation path
    is unknown; the token is never recorded, nor its accessor (Vault answers no lookup of a token it does not know)."""
    if settings.database_password_from_vault:
        log.warning("interception alarm not recorded in the store: its password is in Vault, which this boot cannot "
                    "read; the CRITICAL line and Vault's audit device are the record",
                    extra={"step": STEP, "reason": "store_needs_vault"})
        return
    try:
        engine = open_store(settings.database_url)
        try:
            raise_pending(engine, WRAPPING_TOKEN_UNUSABLE, f"creation_path=unknown stage={stage}")
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - the refusal stands whatever the store does; never the exception's text
        log.error("interception alarm not recorded in the store; the CRITICAL line is the record",
                  extra={"step": STEP, "reason": f"store_failed:{type(exc).__name__}"})
        return
    log.warning("interception alarm recorded in the store; the next boot moves it into the audit log (boot_alarm)",
                extra={"step": STEP, "reason": "alarm_pending"})


def _vault_failure(settings: Settings, exc: Exception) -> BootError:
    if isinstance(exc, requests.exceptions.RequestException):
        return transport_error(STEP, settings, exc)
    return BootError(STEP, f"Vault answered an error ({type(exc).__name__})")


def unwrap_secret_id(settings: Settings) -> str:
    """The secret_id inside the wrapping token in the secret_id file, after the checks above. Raises BootError."""
    token = read_credential_file(settings.vault_secret_id_file, SETTING)
    if _UUID.fullmatch(token):
        del token
        raise BootError(STEP, f"{SETTING} holds a plain secret_id, not a wrapping token; deliver a wrapped one "
                              "(gateway secrets issue-secret-id --wrap-ttl) or unset GATEWAY_VAULT_SECRET_ID_WRAPPED")
    if not _VAULT_TOKEN.fullmatch(token):
        del token
        raise BootError(STEP, f"{SETTING} does not hold a Vault wrapping token (damaged or wrong file)")
    lookup = new_client(settings)
    try:
        info = lookup.adapter.post("/v1/sys/wrapping/lookup", json={"token": token})
    except hvac.exceptions.InvalidRequest:
        del token
        raise _intercepted(settings, "lookup") from None
    except (requests.exceptions.RequestException, hvac.exceptions.VaultError) as exc:
        del token
        raise _vault_failure(settings, exc) from None
    finally:
        lookup.adapter.close()
    data = info.get("data") if isinstance(info, dict) else None
    creation_path = data.get("creation_path") if isinstance(data, dict) else None
    if not isinstance(creation_path, str):
        del token
        raise BootError(STEP, "Vault's lookup of the wrapping token named no creation path")
    expected = expected_creation_path(settings)
    if creation_path != expected:
        del token
        # The path is not a secret; it tells the operator what was delivered instead. The token stays unused.
        raise BootError(STEP, f"the wrapping token in {SETTING} was created by {creation_path[:120]!r}, not by "
                              f"{expected!r}; refusing to unwrap it")
    unwrap = new_client(settings, token)
    del token
    try:
        response = unwrap.sys.unwrap()  # type: ignore[no-untyped-call]  # untyped in hvac's stubs
    except hvac.exceptions.InvalidRequest:
        # Someone unwrapped it between our lookup and our unwrap.
        raise _intercepted(settings, "unwrap") from None
    except (requests.exceptions.RequestException, hvac.exceptions.VaultError) as exc:
        raise _vault_failure(settings, exc) from None
    finally:
        unwrap.token = None  # type: ignore[assignment]  # hvac's stubs say str; None is how a client drops its token
        unwrap.adapter.close()
    unwrapped = response.get("data") if isinstance(response, dict) else None
    secret_id = unwrapped.get("secret_id") if isinstance(unwrapped, dict) else None
    if not isinstance(secret_id, str) or not secret_id:
        raise BootError(STEP, "the unwrapped response holds no secret_id")
    return secret_id
