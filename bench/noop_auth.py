"""Bench only: a custom_auth for LiteLLM-alone (configuration b) that accepts every request without a lookup,
so the comparison measures LiteLLM's own request path and not an auth backend."""

from litellm.proxy._types import UserAPIKeyAuth


async def custom_auth(request, api_key):
    return UserAPIKeyAuth(api_key="bench", key_alias="bench", user_id="bench")
