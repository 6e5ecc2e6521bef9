# Vault policy for the gateway at runtime (attached to tokens from the "gateway" AppRole role).
# Least privilege: read its two KV v2 secrets, give up its own token, nothing else. No list, no write, no metadata.
# `gateway secrets bootstrap` renders this file with the configured mount and path in place of "secret" and "gateway".

path "secret/data/gateway/core" {
  capabilities = ["read"]
}

path "secret/data/gateway/providers" {
  capabilities = ["read"]
}

# The role sets token_no_default_policy, so the few self-service paths the gateway uses are granted here explicitly.
path "auth/token/revoke-self" {
  capabilities = ["update"]
}

path "auth/token/lookup-self" {
  capabilities = ["read"]
}
