"""Security-hardened, OpenAI-compatible LLM gateway with LiteLLM mounted in-process."""

__version__ = "0.1.0"

# The exact LiteLLM release this code is written against. The in-process mount couples our code to LiteLLM's
# internals, so boot refuses any other installed version (threat-model TM-T2).
LITELLM_PIN = "1.106.12"
# Releases known to have been compromised; refused even if the pin above were changed to one of them.
LITELLM_COMPROMISED = frozenset({"1.82.7", "1.82.8", "1.107.0"})
