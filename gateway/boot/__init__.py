"""HAZMAT: the boot path.

This package is the only code that talks to Vault (hvac), holds the LiteLLM master key and the provider API keys,
and imports ``litellm.proxy.proxy_server``. It runs once, before the port opens. Everything it hands to the request
path is either non-secret or wrapped in :class:`gateway.boot.secret.Secret`. An import-linter contract (pyproject)
keeps the rest of the package from importing hvac or LiteLLM's proxy module.
"""
