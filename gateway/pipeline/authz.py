"""Step: the per-key model allow-list. The model must be exposed by the policy and allowed for this key."""

from __future__ import annotations

import logging
from typing import Any

from gateway.pipeline.errors import Denial
from gateway.principal import Principal

log = logging.getLogger("gateway.authz")


def check_model(body: dict[str, Any], principal: Principal, exposed: frozenset[str], request_id: str) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise Denial(400, "invalid_request", "The 'model' field is required and must be a string.", param="model")
    if model not in exposed or model not in principal.models:
        log.info("model denied", extra={"key_id": principal.key_id, "request_id": request_id,
                                        "reason": "model_not_allowed"})
        raise Denial(403, "model_not_allowed", "This key may not use the requested model.",
                     error_type="permission_error", param="model")
    return model
