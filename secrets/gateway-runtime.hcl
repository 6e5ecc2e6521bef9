# Vault policy for the gateway at runtime (attached to tokens from the "gateway" AppRole role).
# Least privilege: read its KV v2 secrets, give up its own token, nothing else. No list, no write, no metadata.
# `gateway secrets bootstrap` renders this file with the configured mount and path in place of "secret" and "gateway".

path "secret/data/gateway/core" {
  capabilities = ["read"]
}

path "secret/data/gateway/providers" {
  capabilities = ["read"]
}

# The Postgres and Redis passwords (fields postgres_password, redis_password), read at boot only when
# GATEWAY_DATABASE_PASSWORD_FROM_VAULT / GATEWAY_REDIS_PASSWORD_FROM_VAULT ask for them. Drop this block if neither
# is used.
path "secret/data/gateway/datastores" {
  capabilities = ["read"]
}

# The role sets token_no_default_policy, so the few self-service paths the gateway uses are granted here explicitly.
path "auth/token/revoke-self" {
  capabilities = ["update"]
}

path "auth/token/lookup-self" {
  capabilities = ["read"]
}
