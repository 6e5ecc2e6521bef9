"""Operator commands run by the host CLI (keys, admin-key, accounts, ledger, audit, secrets), on the store directly.

Nothing here imports hvac or LiteLLM: what a command needs from Vault (the pepper, the audit key, a bootstrap, a
fresh secret_id) comes through :mod:`gateway.boot.operator`. A failed step prints one line naming it and exits 2.
"""
