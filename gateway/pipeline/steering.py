"""Step: refuse top-level body fields that would steer LiteLLM (destination, credential, cost, callbacks).

A first line of defence; the per-route allow-list of OpenAI fields replaces it (see threat-model TM-T3).
"""

from __future__ import annotations

from typing import Any

from gateway.pipeline.errors import Denial

STEERING_FIELDS = frozenset(
    {
        "api_base", "base_url", "api_key", "api_version", "azure_ad_token", "organization", "custom_llm_provider",
        "user_config", "extra_headers", "headers", "extra_body", "mock_response", "mock_tool_calls",
        "mock_testing_fallbacks", "input_cost_per_token", "output_cost_per_token", "input_cost_per_second",
        "output_cost_per_second", "callbacks", "success_callback", "failure_callback", "litellm_logging_obj",
        "proxy_server_request", "secret_fields", "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
        "aws_region_name", "vertex_credentials", "vertex_project", "vertex_location", "litellm_credential_name",
        "litellm_metadata", "provider_specific_header", "fallbacks", "context_window_fallback_dict", "model_list", "deployment_id", "timeout",
        "num_retries", "guardrails", "tags", "cache", "no-log", "litellm_params",
    }
)


def refuse_steering(body: dict[str, Any]) -> None:
    for field in body:
        if field in STEERING_FIELDS or field.startswith("litellm_"):
            raise Denial(400, "unsupported_parameter", f"Unsupported parameter: {field[:64]!s}.")
