"""Bench only: the two-process shape (configuration c). A thin ASGI forwarder, the least a separate gateway process
would do: read the request, send it to LiteLLM on its own port over one pooled HTTP/1.1 client, stream the answer
back. No authentication, no checks: whatever a real pre-flight costs comes on top of this.

    python bench/forwarder.py --port 8001 --upstream http://127.0.0.1:4000
"""

from __future__ import annotations

import argparse

import httpx
import uvicorn

HOP_BY_HOP = {b"host", b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade",
              b"proxy-authorization", b"proxy-connection"}


def build(upstream: str, *, extra_headers: list[tuple[bytes, bytes]] | None = None):
    """The forwarding ASGI app; its client is ``app.client``. ``extra_headers`` go on every forwarded request."""
    client = httpx.AsyncClient(base_url=upstream, timeout=60,
                               limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await client.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP] + (extra_headers or [])
        request = client.build_request(scope["method"], scope["path"], headers=headers, content=body)
        response = await client.send(request, stream=True)
        try:
            out = [(k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP]
            await send({"type": "http.response.start", "status": response.status_code, "headers": out})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

    app.client = client
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    uvicorn.run(build(args.upstream), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
