"""Admin routes. Authentication is an admin key in ``Authorization: Bearer``; every failure is ``401 invalid_api_key``.

No ``from __future__ import annotations`` here: FastAPI resolves the ``Annotated`` dependency types at runtime.
"""


import difflib
import json
import logging
import re
import typing
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.audit.log import AuditLog
from gateway.clock import is_naive
from gateway.credits.ledger import (
    ACCOUNT_ID,
    MAX_BALANCE_MICRO_USD,
    BalanceLimit,
    SpendCapPeriod,
    SqlLedger,
    UnknownAccount,
    account_page,
)
from gateway.keys.format import KeyKind
from gateway.keys.service import AlreadyRotated, HoneytokenNotRotatable, KeyService
from gateway.keys.store import InvalidExpiry
from gateway.logs import new_request_id
from gateway.metrics import REVOCATIONS, exposition
from gateway.pipeline.authn import ADMIN_PRINCIPAL_SCOPE_KEY, authenticate
from gateway.pipeline.errors import Denial, error_body, internal_error
from gateway.principal import Principal

log = logging.getLogger("gateway.admin")

# Ids as the store issues them (account ids: the ledger's ACCOUNT_ID). Anything else is answered 404 before the store
# is asked: a NUL, for one, made Postgres raise (a 500), and no other byte has a reason to reach a query.
KEY_ID = re.compile(r"key_[0-9a-f]{24}")
# Free text (names, reasons, audit filters): no control characters, NUL included (Postgres refuses NUL in text).
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
MAX_TEXT = 200
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT, pattern=NO_CONTROL)]
MAX_MODELS = 200
MAX_RPM = 1_000_000
MAX_TPM = 1_000_000_000
MAX_GRACE_SECONDS = 7 * 86_400
MAX_PAGE = 1000  # items per page of a list
MAX_AUDIT_SEQ = 2**62


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text
    models: list[Text] = Field(min_length=1, max_length=MAX_MODELS)
    account_id: str = Field(pattern=f"^{ACCOUNT_ID.pattern}$")
    expires_at: datetime | None = None
    spend_cap_micro_usd: int | None = Field(default=None, ge=0, le=MAX_BALANCE_MICRO_USD, strict=True)
    spend_cap_period: SpendCapPeriod = "none"
    rpm_limit: int | None = Field(default=None, ge=1, le=MAX_RPM, strict=True)
    tpm_limit: int | None = Field(default=None, ge=1, le=MAX_TPM, strict=True)

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and is_naive(value):
            raise ValueError("must include a timezone offset")
        return value


class RotateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace_seconds: int | None = Field(default=None, ge=0, le=MAX_GRACE_SECONDS, strict=True)


class CreateAccount(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text


class AddCredits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_micro_usd: int = Field(gt=0, le=MAX_BALANCE_MICRO_USD, strict=True)
    reason: Text


_TEXT_RULE = f"1 to {MAX_TEXT} characters without control characters"
_ACCOUNT_ID_RULE = "an account id: acct_ followed by 24 lowercase hexadecimal digits"
# What each body field and query parameter must be, for a 400 that teaches (every field of the models above and every
# query parameter below has an entry; a test holds that). Worded from the same constants the models use.
EXPECTED = {
    "name": f"a string of {_TEXT_RULE}",
    "reason": f"a string of {_TEXT_RULE}",
    "models": f"a list of 1 to {MAX_MODELS} model names, each a string of {_TEXT_RULE}",
    "account_id": _ACCOUNT_ID_RULE,
    "expires_at": "an ISO 8601 date-time with a UTC offset, e.g. 2027-01-31T00:00:00Z",
    "spend_cap_micro_usd": f"null or an integer from 0 to {MAX_BALANCE_MICRO_USD} (micro-USD)",
    "spend_cap_period": "one of none, daily, monthly",
    "rpm_limit": f"null or an integer from 1 to {MAX_RPM}",
    "tpm_limit": f"null or an integer from 1 to {MAX_TPM}",
    "grace_seconds": f"null or an integer from 0 to {MAX_GRACE_SECONDS} (seconds)",
    "amount_micro_usd": f"an integer from 1 to {MAX_BALANCE_MICRO_USD} (micro-USD)",
    "limit": f"an integer from 1 to {MAX_PAGE}",
    "before_seq": "an integer from 1 to 2^62",
    "after_id": _ACCOUNT_ID_RULE,
    "event": "at most 40 characters without control characters",
    "actor": "at most 64 characters without control characters",
    "subject": "at most 64 characters without control characters",
}
# A field name is repeated in an answer only if it looks like one: it is the client's text.
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,39}")


def _body_fields(request: Request) -> tuple[str, ...]:
    """The field names of the body model of the route that refused the request (none if it has no body model)."""
    route = request.scope.get("route")
    annotation = route.body_field.field_info.annotation if isinstance(route, APIRoute) and route.body_field else None
    for model in typing.get_args(annotation) or (annotation,):  # ``RotateKey | None`` is a union
        if isinstance(model, type) and issubclass(model, BaseModel):
            return tuple(model.model_fields)
    return ()


def _validation_denial(error: dict[str, Any], known: tuple[str, ...]) -> Denial:
    """One 400 for the first thing wrong: the field it is about (also as ``param``) and what was expected. The
    submitted value is never repeated."""
    loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
    kind = error.get("type", "")
    if kind == "json_invalid":
        return Denial(400, "invalid_request", "The body is not valid JSON.")
    if not loc:
        return Denial(400, "invalid_request", "The body must be a JSON object." if kind != "missing"
                      else "A JSON object body is required.")
    field = loc[0]
    if kind == "extra_forbidden":
        listed = f"; the fields are {', '.join(known)}." if known else "."
        if not _FIELD_NAME.fullmatch(field):
            return Denial(400, "invalid_request", "Unknown field in the body" + listed)
        close = difflib.get_close_matches(field, known, n=1, cutoff=0.5)
        advice = f"; did you mean '{close[0]}'?" if close else listed
        return Denial(400, "invalid_request", f"Unknown field '{field}'{advice}", param=field)
    param = field + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
    if kind == "missing":
        return Denial(400, "invalid_request", f"'{field}' is required.", param=param)
    expected = EXPECTED.get(field)
    message = f"'{field}' must be {expected}." if expected else f"Invalid value for '{field}'."
    return Denial(400, "invalid_request", message, param=param)


def _denial_response(denial: Denial, request_id: str) -> JSONResponse:
    headers = {"www-authenticate": 'Bearer realm="gateway"'} if denial.status == 401 else {}
    return JSONResponse(status_code=denial.status, content=json.loads(error_body(denial)), headers=headers)


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", None) or new_request_id())


class CreateHoneytoken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text


def _known_key_id(key_id: str) -> str:
    if not KEY_ID.fullmatch(key_id):
        raise Denial(404, "not_found", "No such key.")
    return key_id


def _known_account_id(account_id: str) -> str:
    if not ACCOUNT_ID.fullmatch(account_id):
        raise Denial(404, "not_found", "No such account.")
    return account_id


def build_admin_app(keys: KeyService, ledger: SqlLedger, exposed_models: frozenset[str], *, audit: AuditLog,
                    rotation_grace_seconds: int = 60) -> FastAPI:
    # redirect_slashes=False: no 307 to a Location built from the client's Host header; unknown paths are 404.
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, title="gateway admin", redirect_slashes=False)

    def admin(request: Request) -> Principal:
        # gateway.app verified the admin key before reading the body and put the principal in the scope (a Python
        # object nothing on the wire can create). Mounted any other way, the key is verified here.
        verified = request.scope.get(ADMIN_PRINCIPAL_SCOPE_KEY)
        if type(verified) is Principal and verified.kind == KeyKind.ADMIN:
            return verified
        return authenticate(request.scope, keys, KeyKind.ADMIN, _request_id(request), audit)

    def audit_event(event: str, request: Request, who: Principal, subject: str | None = None,
                    reason: str | None = None) -> None:
        # Written right after the change. If the audit write fails the request answers 500 and the error is logged:
        # the change itself has happened, and the operator learns that its record is missing.
        audit.record(event, actor=who.key_id, subject=subject, reason=reason, request_id=_request_id(request))

    def auditable(who: Annotated[Principal, Depends(admin)], request: Request) -> Principal:
        # A change is made only if its audit entry can be written: a missing head row (the audit blackout) or an
        # unreachable store refuses the change before it happens (threat-model TM-R1). What remains: the store failing
        # between the change and its entry, which answers 500 and logs it.
        try:
            audit.head()
        except Exception:  # noqa: BLE001 - whatever stops the audit write stops the change
            log.critical("audit log cannot be written; admin change refused",
                         extra={"request_id": _request_id(request), "by": who.key_id})
            raise Denial(503, "audit_unavailable", "The audit log cannot be written; nothing was changed.",
                         error_type="server_error") from None
        return who

    Admin = Annotated[Principal, Depends(admin)]
    Auditable = Annotated[Principal, Depends(auditable)]

    @app.exception_handler(Denial)
    async def _denial(request: Request, exc: Denial) -> JSONResponse:
        return _denial_response(exc, _request_id(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "not_found"}.get(exc.status_code, "invalid_request")
        status = 404 if exc.status_code in (404, 405) else exc.status_code
        return _denial_response(Denial(status, code, "Not found." if status == 404 else "Invalid request."),
                                _request_id(request))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # An unknown field first: {"amount": 5} is best answered with "did you mean 'amount_micro_usd'?", not with
        # "'amount_micro_usd' is required".
        errors = sorted(exc.errors(), key=lambda error: error.get("type") != "extra_forbidden")
        return _denial_response(_validation_denial(errors[0] if errors else {}, _body_fields(request)),
                                _request_id(request))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("admin request failed", extra={"request_id": _request_id(request),
                                                 "reason": type(exc).__name__})
        return _denial_response(internal_error(), _request_id(request))

    @app.post("/admin/keys", status_code=201)
    def create_key(payload: CreateKey, who: Auditable, request: Request) -> dict[str, object]:
        unknown = sorted(set(payload.models) - exposed_models)
        if unknown:
            raise Denial(400, "invalid_request", "Unknown model in 'models' (not exposed by the policy).",
                         param="models")
        if payload.expires_at is not None and payload.expires_at <= keys.clock.now():
            raise Denial(400, "invalid_request", "'expires_at' is in the past.", param="expires_at")
        if ledger.get_account(payload.account_id) is None:
            raise Denial(400, "invalid_request", "Unknown 'account_id'.", param="account_id")
        try:
            plaintext, record = keys.issue(KeyKind.CUSTOMER, name=payload.name, models=payload.models,
                                           expires_at=payload.expires_at, account_id=payload.account_id,
                                           spend_cap_micro_usd=payload.spend_cap_micro_usd,
                                           spend_cap_period=payload.spend_cap_period, rpm_limit=payload.rpm_limit,
                                           tpm_limit=payload.tpm_limit)
        except InvalidExpiry:
            raise Denial(400, "invalid_request", "'expires_at' must carry a UTC offset and fall between the years "
                                                 "2001 and 8999 (UTC).", param="expires_at") from None
        log.info("key created", extra={"key_id": record.id, "by": who.key_id})
        audit_event("key_created", request, who, record.id)
        return {**record.public(keys.clock.now()), "key": plaintext}

    @app.get("/admin/keys")
    def list_keys(who: Admin) -> dict[str, object]:
        now = keys.clock.now()
        return {"object": "list", "data": [r.public(now) for r in keys.list(KeyKind.CUSTOMER)]}

    @app.get("/admin/keys/{key_id}")
    def show_key(key_id: str, who: Admin) -> dict[str, object]:
        record = keys.get(_known_key_id(key_id), KeyKind.CUSTOMER)
        if record is None:
            raise Denial(404, "not_found", "No such key.")
        return record.public(keys.clock.now())

    @app.post("/admin/keys/{key_id}/revoke")
    def revoke_key(key_id: str, who: Auditable, request: Request) -> dict[str, object]:
        """Revokes the key and every key rotated from it (a revocation that raced a rotation leaves no live key)."""
        if keys.get(_known_key_id(key_id), KeyKind.CUSTOMER) is None:
            raise Denial(404, "not_found", "No such key.")
        revoked, successors = keys.revoke_line(key_id, by=who.key_id)
        if revoked is None:  # keys are never deleted, so this means the store changed under us
            raise Denial(404, "not_found", "No such key.")
        log.warning("key revoked", extra={"key_id": key_id, "by": who.key_id})
        REVOCATIONS.labels(channel="admin").inc()
        audit_event("key_revoked", request, who, key_id,
                    reason=f"successors_revoked={len(successors)}" if successors else None)
        for successor in successors:
            log.warning("key revoked", extra={"key_id": successor, "by": who.key_id, "reason": "predecessor_revoked"})
            REVOCATIONS.labels(channel="admin").inc()
            audit_event("key_revoked", request, who, successor, reason=f"predecessor={key_id}")
        return {**revoked.public(keys.clock.now()), "revoked_successors": successors}

    @app.post("/admin/keys/{key_id}/rotate", status_code=201)
    def rotate_key(key_id: str, who: Auditable, request: Request, payload: RotateKey | None = None) -> dict[str, object]:
        grace = payload.grace_seconds if payload and payload.grace_seconds is not None else rotation_grace_seconds
        try:
            rotated = keys.rotate(_known_key_id(key_id), grace=timedelta(seconds=grace))
        except HoneytokenNotRotatable:
            log.warning("honeytoken rotation refused", extra={"key_id": key_id, "by": who.key_id,
                                                              "reason": "honeytoken_not_rotatable"})
            raise Denial(409, "honeytoken_not_rotatable",
                         "A honeytoken cannot be rotated; revoke it and mint a new one.") from None
        except AlreadyRotated as refused:
            log.warning("rotation refused", extra={"key_id": key_id, "by": who.key_id, "reason": "already_rotated"})
            audit_event("key_rotation_refused", request, who, key_id, reason=f"already_rotated_to={refused.successor}")
            raise Denial(409, "already_rotated",
                         "This key was already rotated; rotate its successor instead.") from None
        if rotated is None:
            raise Denial(404, "not_found", "No live customer key with that id.")
        plaintext, record = rotated
        old = keys.get(key_id)
        log.warning("key rotated", extra={"key_id": key_id, "by": who.key_id, "outcome": record.id})
        audit_event("key_rotated", request, who, key_id, reason=f"successor={record.id}")
        until = old.expires_at.isoformat() if old is not None and old.expires_at is not None else None
        return {**record.public(keys.clock.now()), "key": plaintext, "replaces": key_id,
                "old_key_valid_until": until}

    @app.post("/admin/honeytokens", status_code=201)
    def create_honeytoken(payload: CreateHoneytoken, who: Auditable, request: Request) -> dict[str, object]:
        """A canary key to plant where a leak would be found (repos, laptops, configs). Any use raises an alarm."""
        plaintext, created = keys.issue_honeytoken(payload.name)
        audit_event("honeytoken_created", request, who, created.id)
        return {"id": created.id, "name": created.name, "key": plaintext, "honeytoken": True}

    @app.get("/admin/audit")
    def list_audit(
        who: Admin,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        before_seq: Annotated[int | None, Query(ge=1, le=MAX_AUDIT_SEQ)] = None,
        event: Annotated[str | None, Query(max_length=40, pattern=NO_CONTROL)] = None,
        actor: Annotated[str | None, Query(max_length=64, pattern=NO_CONTROL)] = None,
        subject: Annotated[str | None, Query(max_length=64, pattern=NO_CONTROL)] = None,
    ) -> dict[str, object]:
        items = audit.list(limit=limit, before_seq=before_seq, event=event, actor=actor, subject=subject)
        next_before = items[-1]["seq"] if len(items) == limit else None
        return {"object": "list", "data": items, "next_before_seq": next_before}

    @app.get("/admin/metrics")
    def metrics(who: Admin) -> Response:
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/accounts", status_code=201)
    def create_account(payload: CreateAccount, who: Auditable, request: Request) -> dict[str, object]:
        account = ledger.create_account(payload.name)
        audit_event("account_created", request, who, account.id)
        log.info("account created", extra={"by": who.key_id, "outcome": account.id})
        return account.public()

    @app.post("/admin/accounts/{account_id}/credits")
    def add_credits(account_id: str, payload: AddCredits, who: Auditable, request: Request) -> dict[str, object]:
        try:
            account = ledger.top_up(_known_account_id(account_id), payload.amount_micro_usd, payload.reason)
        except UnknownAccount:
            raise Denial(404, "not_found", "No such account.") from None
        except BalanceLimit:
            raise Denial(400, "invalid_request", f"A balance may not exceed {MAX_BALANCE_MICRO_USD} micro-USD; "
                                                 "this top-up would pass it.") from None
        log.info("credits added", extra={"by": who.key_id, "outcome": account_id})
        # The amount goes into the chained entry; the operator's free-text reason (at most 200 characters, no
        # control characters) stays in the ledger entry.
        audit_event("credits_added", request, who, account_id, reason=f"amount_micro_usd={payload.amount_micro_usd}")
        return account.public()

    @app.get("/admin/accounts")
    def list_accounts(
        who: Admin,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        after_id: Annotated[str | None, Query(pattern=f"^{ACCOUNT_ID.pattern}$")] = None,
    ) -> dict[str, object]:
        """Accounts in id order, a page at a time: pass the answer's ``next_after_id`` as ``after_id`` for the next
        page (null when this page is the last)."""
        return account_page(ledger.list_accounts(limit=limit, after_id=after_id), limit)

    @app.get("/admin/accounts/{account_id}")
    def show_account(account_id: str, who: Admin) -> dict[str, object]:
        account = ledger.get_account(_known_account_id(account_id))
        if account is None:
            raise Denial(404, "not_found", "No such account.")
        return {**account.public(), "recent_ledger": ledger.recent_entries(account_id)}

    return app
