"""The two hooks the gateway installs inside LiteLLM.

``custom_auth``: accept a request only if our pre-flight put a verified principal in its scope.

LiteLLM calls this for every request it serves (``general_settings.custom_auth``). The presented api_key is ignored:
the handoff replaces Authorization with a placeholder, and a request that reached LiteLLM without passing through our
pipeline has no principal in its scope, because nothing on the wire can create a Python object in an ASGI scope.

Denials raise ``HTTPException(401)``: returning None would make LiteLLM fall back to its own key checks.

``ApprovalCheck``: just before LiteLLM calls the provider, compare its call with the request's approval
(:mod:`gateway.pipeline.approval`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import UserAPIKeyAuth

from gateway.pipeline.approval import Deployment, verify
from gateway.pipeline.asgi import PRINCIPAL_SCOPE_KEY
from gateway.principal import Principal


async def custom_auth(request: Any, api_key: str | None) -> UserAPIKeyAuth:
    principal = request.scope.get(PRINCIPAL_SCOPE_KEY)
    if type(principal) is not Principal:
        raise HTTPException(status_code=401, detail="invalid_api_key")
    # Only the non-secret key id travels into LiteLLM (it may echo it in messages and logs).
    return UserAPIKeyAuth(api_key=principal.key_id, key_alias=principal.key_id, user_id=principal.key_id)


class ApprovalCheck(CustomLogger):
    """LiteLLM's last hook before the provider call: its arguments must be exactly what the pre-flight approved
    (:mod:`gateway.pipeline.approval`). Installed last in ``litellm.callbacks`` by boot, so it sees the final call."""

    def __init__(self, deployments: Mapping[str, Deployment]) -> None:
        super().__init__()
        self._deployments = dict(deployments)

    async def async_pre_call_deployment_hook(self, kwargs: dict[str, Any], call_type: Any) -> dict[str, Any] | None:
        verify(kwargs, getattr(call_type, "value", call_type), self._deployments)
        return None
