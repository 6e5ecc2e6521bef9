"""The gateway's OpenAPI description: the customer surface (written here) and the admin API (from its FastAPI app).

Not served over HTTP (no route exposes it); used by the fuzz tests and available as ``gateway openapi``.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
_MESSAGE = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {"type": "string", "maxLength": 2000},
        "name": {"type": "string", "maxLength": 64},
    },
}
_COMMON = {
    "model": {"type": "string", "maxLength": 64},
    "user": {"type": "string", "maxLength": 64},
    "stream": {"type": "boolean"},
    "n": {"type": "integer", "minimum": 1, "maximum": 4},
    "max_tokens": {"type": "integer", "minimum": 1, "maximum": 1000},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "stop": {"oneOf": [{"type": "string", "maxLength": 20}, {"type": "array", "items": {"type": "string"},
                                                              "maxItems": 4}]},
    "seed": {"type": "integer"},
}


def _operation(summary: str, body: dict[str, Any] | None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": []}],
        "responses": {
            "200": {"description": "OK"},
            **{code: {"description": text, "content": {"application/json": {"schema": _ERROR}}}
               for code, text in [("400", "invalid request"), ("401", "invalid_api_key"), ("402", "budget_exhausted"),
                                  ("403", "model_not_allowed"), ("404", "not_found"), ("413", "request_too_large"),
                                  ("502", "upstream_error"), ("503", "service_unavailable")]},
        },
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return operation


def customer_paths() -> dict[str, Any]:
    return {
        "/v1/chat/completions": {"post": _operation("Chat completion (streaming or not)", {
            "type": "object", "required": ["model", "messages"],
            "properties": {**_COMMON, "messages": {"type": "array", "items": _MESSAGE, "minItems": 1, "maxItems": 8}},
        })},
        "/v1/completions": {"post": _operation("Text completion", {
            "type": "object", "required": ["model", "prompt"],
            "properties": {**_COMMON, "prompt": {"type": "string", "maxLength": 2000}},
        })},
        "/v1/embeddings": {"post": _operation("Embeddings", {
            "type": "object", "required": ["model", "input"],
            "properties": {"model": _COMMON["model"], "user": _COMMON["user"],
                           "input": {"oneOf": [{"type": "string", "maxLength": 2000},
                                               {"type": "array", "items": {"type": "string"}, "maxItems": 8}]}},
        })},
        "/v1/responses": {"post": _operation("Responses API, stateless (streaming or not)", {
            "type": "object", "required": ["model", "input"],
            "properties": {"model": _COMMON["model"], "user": _COMMON["user"], "stream": _COMMON["stream"],
                           "temperature": _COMMON["temperature"], "top_p": _COMMON["top_p"],
                           "instructions": {"type": "string", "maxLength": 2000},
                           "max_output_tokens": {"type": "integer", "minimum": 16, "maximum": 1000},
                           "store": {"type": "boolean", "enum": [False]},
                           "input": {"oneOf": [{"type": "string", "maxLength": 2000},
                                               {"type": "array", "items": _MESSAGE, "minItems": 1, "maxItems": 8}]}},
        })},
        "/v1/models": {"get": _operation("Models this key may use", None)},
        "/v1/models/{model}": {"get": {
            **_operation("One model this key may use (404 for any other)", None),
            "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
        }},
        "/v1/keys/revoke": {"post": _operation("Revoke the presented key (leaked-key response)", None)},
    }


def gateway_openapi(admin_schema: dict[str, Any]) -> dict[str, Any]:
    """Merge the customer surface with the admin app's generated schema."""
    components = dict(admin_schema.get("components") or {})
    schemas = dict(components.get("schemas") or {})
    schemas["Error"] = {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["message", "type", "code"], "properties": {
            "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": ["string", "null"]},
            "code": {"type": "string"}}}},
    }
    components["schemas"] = schemas
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    admin_paths = {path: {method: {**operation, "security": [{"bearer": []}]} for method, operation in item.items()}
                   for path, item in (admin_schema.get("paths") or {}).items()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "LLM gateway", "version": "0.1.0"},
        "paths": {**customer_paths(), **admin_paths},
        "components": components,
    }
