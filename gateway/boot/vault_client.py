"""HAZMAT: the one place an hvac client is made (Vault address, TLS, mTLS), and the line for a request that never got
an answer. Every Vault caller in ``gateway/boot/`` (boot's login and reads, the unwrap of a wrapped secret_id, the
operator commands) builds its client here, so none can skip the configured CA or client certificate."""

from __future__ import annotations

import hvac
import requests

from gateway.boot.errors import BootError
from gateway.boot.settings import Settings, vault_tls


def new_client(settings: Settings, token: str | None = None) -> hvac.Client:
    """An hvac client for ``settings.vault_addr`` with the configured TLS: the private CA bundle or certifi's, and the
    client certificate and key for mTLS. Every client the gateway creates comes from here."""
    verify, cert = vault_tls(settings)
    # hvac's stubs type the timeout as int; hvac hands it to requests, which takes seconds as a float.
    return hvac.Client(url=settings.vault_addr, token=token, verify=verify, cert=cert,
                       timeout=settings.vault_timeout_seconds)  # type: ignore[arg-type]


def transport_error(step: str, settings: Settings, exc: requests.exceptions.RequestException) -> BootError:
    """The line for a failed request: an untrusted server certificate, a refused TLS handshake, or no answer. The
    exception's text is looked at, never quoted."""
    if isinstance(exc, requests.exceptions.SSLError):
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return BootError(step, "Vault's TLS certificate is not trusted (GATEWAY_VAULT_CACERT)")
        return BootError(step, "the TLS handshake with Vault failed (GATEWAY_VAULT_CACERT, GATEWAY_VAULT_CLIENT_CERT, "
                               "GATEWAY_VAULT_CLIENT_KEY)")
    return BootError(step, f"Vault at {settings.vault_addr} is unreachable")
