"""PROVIDER STAND-IN, NOT A REAL LLM: Google Cloud's Vertex AI, for the stand-in (:mod:`gateway.devstack.fake_provider`).

Two parts, each checking what the real service checks:

* an OAuth 2.0 token endpoint (``POST /token``): the JWT-bearer grant a service account's key signs
  (``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``). The assertion's RS256 signature is verified with the
  public key of the account it names (``iss``, key id in the header), and its audience, expiry and scope are checked
  by google-auth's own JWT module; an access token of the account's ``token_lifetime`` is issued. A bad assertion gets
  Google's ``400 invalid_grant`` body.
* Vertex AI's Gemini API: ``POST /v1/projects/{project}/locations/{location}/publishers/google/models/{model}``
  ``:generateContent`` and ``:streamGenerateContent?alt=sse`` with ``Authorization: Bearer <token it issued>``, answered
  with the Gemini stand-in's bodies (:func:`gateway.devstack.standin_gemini.gemini_reply`). A missing, unknown or expired
  token gets Google's ``401 UNAUTHENTICATED``; a project the account may not use, ``403 PERMISSION_DENIED``. The account
  a token was issued to is recorded with the request (``token_holder``). A call naming the project ``proj-redirect``
  is answered with a 307 to the same call in ``proj-standin``.

The stand-in's test model names carry a ``gemini-`` prefix on Vertex AI (``gemini-standin-error-500``): LiteLLM sends a
vertex_ai model to the Gemini API only when its name holds "gemini".
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.devstack.standin_gemini import gemini_error, gemini_reply

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# The audience google-auth puts in every assertion, whatever token_uri it posts it to.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# Calls naming this project are answered with a redirect.
REDIRECTING_PROJECT = "proj-redirect"
UNAUTHENTICATED = ("Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                   "other valid authentication credential.")


@dataclasses.dataclass(frozen=True)
class Account:
    """A service account the token endpoint knows: its key's id and public key (PEM), the projects it may use, and how
    long the access tokens issued to it last (Google's last an hour)."""

    key_id: str
    public_key_pem: bytes
    projects: frozenset[str]
    token_lifetime: int = 3600


class ServiceAccounts:
    """The token endpoint's accounts (by client_email) and the access tokens it issued."""

    def __init__(self, accounts: dict[str, Account]) -> None:
        self.accounts = dict(accounts)
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}

    def issue(self, email: str) -> str:
        token = "ya29.standin-" + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (email, time.time() + self.accounts[email].token_lifetime)
        return token

    def holder(self, token: str) -> str | None:
        """The account ``token`` was issued to, while it has not expired."""
        with self._lock:
            issued = self._tokens.get(token)
        if issued is None or issued[1] <= time.time():
            return None
        return issued[0]

    def issued(self) -> list[str]:
        with self._lock:
            return list(self._tokens)


def _invalid_grant(description: str) -> JSONResponse:
    return JSONResponse({"error": "invalid_grant", "error_description": description}, status_code=400)


def _verified_account(assertion: str, accounts: ServiceAccounts) -> str:
    """The client_email of a valid assertion; ValueError naming what is wrong otherwise."""
    from google.auth import jwt

    claims = jwt.decode(assertion, verify=False)  # type: ignore[no-untyped-call]  # iss picks the key; verified below
    header = jwt.decode_header(assertion)  # type: ignore[no-untyped-call]
    email = claims.get("iss")
    account = accounts.accounts.get(email) if isinstance(email, str) else None
    if account is None:
        raise ValueError("Invalid grant: account not found")
    if header.get("alg") != "RS256" or header.get("kid") != account.key_id:
        raise ValueError("Invalid JWT Signature.")
    try:
        verified = jwt.decode(assertion, certs={account.key_id: account.public_key_pem},  # type: ignore[no-untyped-call]
                              audience=GOOGLE_TOKEN_AUDIENCE)
    except ValueError:
        raise ValueError("Invalid JWT Signature.") from None
    if CLOUD_PLATFORM_SCOPE not in str(verified.get("scope", "")).split():
        raise ValueError("Invalid OAuth scope or ID token audience provided.")
    return str(email)


def vertex_routes(record: Callable[[Request], Awaitable[dict[str, Any]]], accounts: ServiceAccounts) -> list[Route]:
    """The token endpoint and Vertex AI's Gemini methods; ``record`` keeps each request as the stand-in records."""

    async def token(request: Request) -> Response:
        entry = await record(request)
        form = parse_qs(entry["body"] if isinstance(entry["body"], str) else "")
        if form.get("grant_type") != [JWT_BEARER]:
            return JSONResponse({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"},
                                status_code=400)
        (assertion,) = form.get("assertion") or [""]
        try:
            email = _verified_account(assertion, accounts)
        except ValueError as refused:
            return _invalid_grant(str(refused))
        entry["token_holder"] = email
        return JSONResponse({"access_token": accounts.issue(email), "expires_in": accounts.accounts[email].token_lifetime,
                             "token_type": "Bearer"})

    async def generate(request: Request) -> Response:
        entry = await record(request)
        project, location = request.path_params["project"], request.path_params["location"]
        model, _, method = str(request.path_params["target"]).partition(":")
        if project == REDIRECTING_PROJECT:
            # An endpoint that redirects (here: to the same call in another project); a client that followed it
            # would send the bearer token on to wherever it points.
            target = str(request.url).replace(f"/projects/{project}/", "/projects/proj-standin/")
            return Response(status_code=307, headers={"location": target})
        authorization = request.headers.get("authorization", "")
        scheme, _, presented = authorization.partition(" ")
        email = accounts.holder(presented) if scheme.lower() == "bearer" and presented else None
        if email is None:
            return JSONResponse(gemini_error(401, "UNAUTHENTICATED", UNAUTHENTICATED, "ACCESS_TOKEN_EXPIRED"
                                             if presented in accounts.issued() else "CREDENTIALS_MISSING"),
                                status_code=401)
        entry["token_holder"] = email
        if project not in accounts.accounts[email].projects:
            resource = f"projects/{project}/locations/{location}/publishers/google/models/{model}"
            return JSONResponse(gemini_error(403, "PERMISSION_DENIED", "Permission 'aiplatform.endpoints.predict' "
                                             f"denied on resource '//aiplatform.googleapis.com/{resource}' (or it may "
                                             "not exist).", "IAM_PERMISSION_DENIED"), status_code=403)
        return await gemini_reply(request, entry, model, method, model.removeprefix("gemini-"),
                                  f"bad request from {authorization} at {request.url}")

    return [
        Route("/token", token, methods=["POST"]),
        Route("/v1/projects/{project}/locations/{location}/publishers/google/models/{target}", generate,
              methods=["POST"]),
    ]


def throwaway_service_account(email: str, projects: frozenset[str], token_uri: str,
                              token_lifetime: int = 3600) -> tuple[str, Account]:
    """A new service account for the stand-in: its JSON key file (as Google issues one, with a fresh 2048-bit RSA key)
    and the :class:`Account` the token endpoint verifies it with. For tests and ``gateway dev`` only."""
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    key_id = secrets.token_hex(20)
    info = {"type": "service_account", "project_id": min(projects), "private_key_id": key_id,
            "private_key": private_pem, "client_email": email, "client_id": str(secrets.randbelow(10**20)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri,
            "universe_domain": "googleapis.com"}
    return json.dumps(info, indent=2), Account(key_id, public_pem, projects, token_lifetime)


def accounts_to_json(accounts: dict[str, Account]) -> str:
    """The accounts as one line of JSON (public keys only), for a stand-in started as a child process."""
    import json

    return json.dumps([{"email": email, "key_id": a.key_id, "public_key_pem": a.public_key_pem.decode(),
                        "projects": sorted(a.projects), "token_lifetime": a.token_lifetime}
                       for email, a in accounts.items()])


def accounts_from_json(line: str) -> ServiceAccounts:
    import json

    return ServiceAccounts({str(a["email"]): Account(str(a["key_id"]), str(a["public_key_pem"]).encode(),
                                                     frozenset(str(p) for p in a["projects"]), int(a["token_lifetime"]))
                            for a in json.loads(line)})
