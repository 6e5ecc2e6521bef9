"""LiteLLM's ``custom_auth`` hook: accept a request only if our pre-flight put a verified principal in its scope.

LiteLLM calls this for every request it serves (``general_settings.custom_auth``). The presented api_key is ignored:
the handoff replaces Authorization with a placeholder, and a request that reached LiteLLM without passing through our
pipeline has no principal in its scope, because nothing on the wire can create a Python object in an ASGI scope.

Denials raise ``HTTPException(401)``: returning None would make LiteLLM fall back to its own key checks.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from litellm.proxy._types import UserAPIKeyAuth

from gateway.pipeline.asgi import PRINCIPAL_SCOPE_KEY
from gateway.principal import Principal


async def custom_auth(request: Any, api_key: str | None) -> UserAPIKeyAuth:
    principal = request.scope.get(PRINCIPAL_SCOPE_KEY)
    if type(principal) is not Principal:
        raise HTTPException(status_code=401, detail="invalid_api_key")
    # Only the non-secret key id travels into LiteLLM (it may echo it in messages and logs).
    return UserAPIKeyAuth(api_key=principal.key_id, key_alias=principal.key_id, user_id=principal.key_id)
