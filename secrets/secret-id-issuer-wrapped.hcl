# Vault policy for whoever delivers the gateway's secret_ids when boot unwraps them
# (GATEWAY_VAULT_SECRET_ID_WRAPPED=true): as secret-id-issuer.hcl, but Vault answers the gateway role's secret-id path
# only response-wrapped, for 10 seconds to an hour (`gateway secrets issue-secret-id --wrap-ttl 10m`), so no delivery
# job using it can put a bare secret_id on the way. Whoever steals the issuer token itself can still issue and unwrap
# one: keep it off the gateway host. Write it with the configured AppRole mount in place of "approle":
# `bao policy write gateway-secret-id-issuer secrets/secret-id-issuer-wrapped.hcl`.

path "auth/approle/role/gateway/role-id" {
  capabilities = ["read"]
}

path "auth/approle/role/gateway/secret-id" {
  capabilities = ["update"]
  # Setting either bound makes Vault refuse an unwrapped answer on this path.
  min_wrapping_ttl = "10s"
  max_wrapping_ttl = "1h"
}

# The operator commands check their token before using it.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
