"""The two hooks the gateway installs inside LiteLLM.

``custom_auth``: accept a request only if our pre-flight put a verified principal in its scope.

LiteLLM calls this for every request it serves (``general_settings.custom_auth``). The presented api_key is ignored:
the handoff replaces Authorization with a placeholder, and a request that reached LiteLLM without passing through our
pipeline has no principal in its scope, because nothing on the wire can create a Python object in an ASGI scope.

Denials raise ``HTTPException(401)``: returning None would make LiteLLM fall back to its own key checks.

``ApprovalCheck``: just before LiteLLM calls the provider, compare its call with the request's approval
(:mod:`gateway.pipeline.approval`), and give the call the gateway's own HTTP client when LiteLLM would otherwise use
one of its own (see :class:`ApprovalCheck`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import UserAPIKeyAuth

from gateway.pipeline.approval import CURRENT, Deployment, verify
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
    (:mod:`gateway.pipeline.approval`). Installed last in ``litellm.callbacks`` by boot, so it sees the final call.

    LiteLLM's Anthropic handler does not use the SDK client boot installs (``litellm.aclient_session``): without a
    ``client`` argument it takes a cached handler of its own that follows redirects, so a redirecting endpoint would
    receive the ``x-api-key`` header. For deployments of the kinds in ``http_handlers`` the call gets the gateway's
    handler instead (no redirects, no cookies, nothing from the environment), passed as LiteLLM's ``client``.
    """

    def __init__(self, deployments: Mapping[str, tuple[Deployment, ...]],
                 http_handlers: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self._deployments = dict(deployments)
        self._http_handlers = dict(http_handlers or {})

    async def async_pre_call_deployment_hook(self, kwargs: dict[str, Any], call_type: Any) -> dict[str, Any] | None:
        _approval, deployment = verify(kwargs, getattr(call_type, "value", call_type), self._deployments)
        changed: dict[str, Any] = {}
        handler = self._http_handlers.get(deployment.provider)
        if handler is not None:
            changed["client"] = handler
        if deployment.call_timeout is not None:
            # The model's own per-call timeout, shorter than the upstream timeout the proxy gave the call, so a
            # deployment that hangs leaves time to retry another (LiteLLM's proxy passes the same timeout to every
            # call, and it wins over a timeout in the deployment's parameters).
            changed["timeout"] = deployment.call_timeout
        return {**kwargs, **changed} if changed else None

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        """A provider call ended in an error: marked on the request's last attempt, so settlement knows that
        attempt did not answer. LiteLLM awaits this before its router retries (litellm/utils.py), in the call's own
        context."""
        approval = CURRENT.get()
        if approval is not None and approval.attempts:
            approval.attempts[-1].failed = True
