"""Every answer carries the security headers and, unless LiteLLM set its own, ``Cache-Control: no-store``; the admin
app cannot opt out of no-store (one of its answers carries a new key)."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.admin.gate import AdminGate
from gateway.pipeline.security_headers import SECURITY_HEADERS, with_security_headers
from gateway.principal import Principal


def _start(send_through: Any, headers: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(send_through(send, headers))
    return dict(sent[0]["headers"])


async def _plain(send: Any, headers: list[tuple[bytes, bytes]]) -> None:
    wrapped = with_security_headers(send, None)
    await wrapped({"type": "http.response.start", "status": 200, "headers": headers})


def test_no_store_is_added_and_a_litellm_cache_control_is_kept() -> None:
    added = _start(_plain, [(b"content-type", b"application/json")])
    assert added[b"cache-control"] == b"no-store"
    assert all(added[name] == value for name, value in SECURITY_HEADERS)
    assert _start(_plain, [(b"cache-control", b"no-cache")])[b"cache-control"] == b"no-cache"


class _Keys:
    def verify(self, presented: str | None, kind: Any) -> Principal:
        return Principal(key_id="key_admin", kind="admin", name="a", models=frozenset(), expires_at=None)


class _Audit:
    def try_record(self, *_args: object, **_kwargs: object) -> None:
        raise AssertionError("nothing to audit on a verified key")


def test_the_admin_app_cannot_opt_out_of_no_store() -> None:
    async def admin_app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"cache-control", b"public, max-age=600")]})

    async def through_gate(send: Any, headers: list[tuple[bytes, bytes]]) -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        gate = AdminGate(admin_app, _Keys(), _Audit())  # type: ignore[arg-type]
        scope = {"type": "http", "method": "POST", "path": "/admin/keys", "headers": headers}
        await gate(scope, receive, with_security_headers(send, None))

    headers = _start(through_gate, [(b"authorization", b"Bearer lgw_ak_x")])
    assert headers[b"cache-control"] == b"no-store"
    assert headers[b"x-request-id"].startswith(b"req_")
