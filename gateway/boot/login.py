"""HAZMAT: logging in to Vault at boot, by ``GATEWAY_VAULT_AUTH``:

* ``approle``: role_id and a single-use secret_id from 0600 files; with ``GATEWAY_VAULT_SECRET_ID_WRAPPED=true`` the
  secret_id file holds a response-wrapping token, checked and unwrapped first (:mod:`gateway.boot.wrapping`);
* ``token``: a token from a 0600 file;
* ``jwt`` / ``kubernetes``: a platform identity token (a Kubernetes projected service-account token, a CI OIDC token)
  at Vault's jwt method (checked offline against the issuer's keys and the role's bindings) or kubernetes method
  (Vault asks the cluster's TokenReview API).
* ``cert``: the mTLS client certificate (``GATEWAY_VAULT_CLIENT_CERT``, its key a 0600 file) at Vault's TLS certificate
  method, which checks it against the CA and names of a role (``auth/<mount>/certs/<role>``).

Every refusal is a :class:`BootError` naming what was wrong; never a token, a secret_id or Vault's error text (which
may quote claims from the token).
"""

from __future__ import annotations

import dataclasses

import hvac
import hvac.exceptions
import requests

from gateway.boot.errors import BootError
from gateway.boot.settings import Settings, read_credential_file, read_identity_token
from gateway.boot.vault_client import new_client, transport_error
from gateway.boot.wrapping import unwrap_secret_id


def login(settings: Settings) -> hvac.Client:
    """An authenticated client: AppRole (secret_id plain or response-wrapped), a token file, a platform identity JWT
    (Vault's jwt or kubernetes method) or the TLS client certificate (Vault's cert method), per ``GATEWAY_VAULT_AUTH``."""
    if settings.vault_auth == "approle":
        return _approle_login(settings)
    if settings.vault_auth in ("jwt", "kubernetes"):
        return _identity_login(settings)
    if settings.vault_auth == "cert":
        return _cert_login(settings)
    return _token_login(settings)


def _approle_login(settings: Settings) -> hvac.Client:
    role_id = read_credential_file(settings.vault_role_id_file, "GATEWAY_VAULT_ROLE_ID_FILE")
    if settings.vault_secret_id_wrapped:
        secret_id = unwrap_secret_id(settings)
    else:
        secret_id = read_credential_file(settings.vault_secret_id_file, "GATEWAY_VAULT_SECRET_ID_FILE")
    client = new_client(settings)
    try:
        client.auth.approle.login(role_id=role_id, secret_id=secret_id, mount_point=settings.vault_approle_mount)
    except hvac.exceptions.InvalidRequest:
        raise BootError("vault login", "AppRole login refused (wrong role_id, or secret_id used, expired or unknown)") from None
    except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
        raise BootError("vault login", "AppRole login refused (permission denied)") from None
    except requests.exceptions.RequestException as exc:
        raise transport_error("vault login", settings, exc) from None
    except hvac.exceptions.VaultError as exc:
        raise BootError("vault login", f"Vault answered an error ({type(exc).__name__})") from None
    finally:
        del secret_id
    # A successful login is proof enough; a lookup-self here would spend one of the token's few uses.
    return client


def _token_login(settings: Settings) -> hvac.Client:
    token = read_credential_file(settings.vault_token_file, "GATEWAY_VAULT_TOKEN_FILE")
    client = new_client(settings, token)
    del token
    try:
        authenticated = client.is_authenticated()
    except requests.exceptions.RequestException as exc:
        raise transport_error("vault login", settings, exc) from None
    except hvac.exceptions.VaultError as exc:
        raise BootError("vault login", f"Vault answered an error ({type(exc).__name__})") from None
    if not authenticated:
        raise BootError("vault login", "token refused (invalid, expired or revoked)")
    return client


# What Vault's jwt and kubernetes methods say when they refuse a token, looked for in their error text (never quoted),
# and the reason boot names instead. First match wins.
IDENTITY_REFUSALS = (
    ("(aud)", "the token's audience (aud) is not one the role accepts"),
    ("(sub)", "the token's subject (sub) is not the role's bound subject"),
    ("(iss)", "the token's issuer (iss) is not the configured issuer"),
    ("(exp)", "the token has expired (exp)"),
    ("(nbf)", "the token is not valid yet (nbf)"),
    ("(iat)", "the token's issue time (iat) is in the future"),
    ("bound claim", "a claim does not match the role's bound claims"),
    ("signature", "the token's signature does not verify with the method's keys"),
    ("service account name not authorized", "the token's service account is not one the role accepts"),
    ("namespace not authorized", "the token's namespace is not one the role accepts"),
)


@dataclasses.dataclass(frozen=True, slots=True)
class IdentityMethod:
    """A Vault auth method that takes a platform identity token: its name in lines, its mount and setting."""

    name: str
    mount: str
    mount_setting: str


def identity_refusal(exc: hvac.exceptions.VaultError, settings: Settings, method: IdentityMethod) -> str:
    """Why Vault refused the identity token, in our words: Vault's error text may quote claims from the token."""
    said = " ".join(str(error) for error in (exc.errors or []))
    for marker, reason in IDENTITY_REFUSALS:
        if marker in said:
            return reason
    if "role" in said and "could not be found" in said:
        return f"role {settings.vault_jwt_role!r} does not exist at auth/{method.mount} (GATEWAY_VAULT_JWT_ROLE)"
    if method.name == "Kubernetes" and "permission denied" in said:
        # Vault asked the cluster (TokenReview), which did not vouch for the token.
        return "the cluster's TokenReview did not authenticate the token (revoked, or not from this cluster)"
    return "the token was not accepted"


def _identity_login(settings: Settings) -> hvac.Client:
    """Log in with the platform's identity token at Vault's jwt method (checked offline against the issuer's keys) or
    kubernetes method (Vault asks the cluster's TokenReview API)."""
    if settings.vault_auth == "kubernetes":
        method = IdentityMethod("Kubernetes", settings.vault_kubernetes_mount, "GATEWAY_VAULT_KUBERNETES_MOUNT")
    else:
        method = IdentityMethod("JWT", settings.vault_jwt_mount, "GATEWAY_VAULT_JWT_MOUNT")
    if settings.vault_jwt_role is None:
        raise BootError("settings", "GATEWAY_VAULT_JWT_ROLE is not set")
    token = read_identity_token(settings.vault_jwt_file, "GATEWAY_VAULT_JWT_FILE")
    client = new_client(settings)
    try:
        if settings.vault_auth == "kubernetes":
            client.auth.kubernetes.login(role=settings.vault_jwt_role, jwt=token, mount_point=method.mount)
        else:
            client.auth.jwt.jwt_login(role=settings.vault_jwt_role, jwt=token, path=method.mount)
    except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden) as exc:
        raise BootError("vault login", f"{method.name} login refused: "
                                       f"{identity_refusal(exc, settings, method)}") from None
    except hvac.exceptions.InvalidPath:
        raise BootError("vault login", f"no {method.name.lower()} auth method at auth/{method.mount} "
                                       f"({method.mount_setting})") from None
    except hvac.exceptions.Unauthorized:
        raise BootError("vault login", f"{method.name} login refused (permission denied)") from None
    except requests.exceptions.RequestException as exc:
        raise transport_error("vault login", settings, exc) from None
    except hvac.exceptions.VaultError as exc:
        raise BootError("vault login", f"Vault answered an error ({type(exc).__name__})") from None
    finally:
        del token
    return client


# What Vault's cert method says when it refuses a certificate (looked for, never quoted: it may quote the certificate),
# and the reason boot names instead. First match wins.
CERT_REFUSALS = (
    ("no chain matching all constraints", "the certificate's names (common name, DNS SANs) are not allowed"),
    ("expired or is not yet valid", "the client certificate has expired or is not valid yet"),
    ("no client certificate found", "Vault's listener did not ask for the client certificate"),
)


def cert_refusal(exc: hvac.exceptions.VaultError, settings: Settings) -> str:
    """Why Vault's cert method refused the client certificate, in our words."""
    said = " ".join(str(error) for error in (exc.errors or []))
    for marker, reason in CERT_REFUSALS:
        if marker in said:
            return reason
    if "invalid certificate" in said:
        # Vault answers the same for a certificate no trusted CA signed and for a role that does not exist.
        if settings.vault_cert_role is None:
            return f"the client certificate is not signed by a CA any role at auth/{settings.vault_cert_mount} trusts"
        return (f"the client certificate is not signed by the CA of role {settings.vault_cert_role!r} at "
                f"auth/{settings.vault_cert_mount}, or the role does not exist (GATEWAY_VAULT_CERT_ROLE)")
    return "the certificate was not accepted"


def _cert_login(settings: Settings) -> hvac.Client:
    """Log in with the TLS client certificate that ``new_client`` presents (its key read only by the TLS stack, from
    its 0600 file) at Vault's cert method: nothing secret crosses the connection but the handshake's proof."""
    client = new_client(settings)
    try:
        # The role is optional: without it, Vault tries every role of the mount and takes one that matches.
        client.auth.cert.login(name=settings.vault_cert_role or "", mount_point=settings.vault_cert_mount)
    except hvac.exceptions.InvalidPath:
        raise BootError("vault login", f"no cert auth method at auth/{settings.vault_cert_mount} "
                                       "(GATEWAY_VAULT_CERT_MOUNT)") from None
    except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
        # OpenBao answers an unknown mount with 403 as well.
        raise BootError("vault login", f"certificate login refused (permission denied; no cert auth method at "
                                       f"auth/{settings.vault_cert_mount}? GATEWAY_VAULT_CERT_MOUNT)") from None
    except requests.exceptions.RequestException as exc:
        raise transport_error("vault login", settings, exc) from None
    except hvac.exceptions.VaultError as exc:
        # An expired certificate comes back as a 500 from the method's own chain check.
        raise BootError("vault login", f"certificate login refused: {cert_refusal(exc, settings)}") from None
    return client
