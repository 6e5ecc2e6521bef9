# Vault policy for whoever delivers the gateway's secret_ids (an orchestrator, a deploy job, `gateway secrets
# issue-secret-id`): read the role's role_id and issue secret_ids for the "gateway" role, plain or response-wrapped.
# Nothing else: no other role, no policy or secret access. secret-id-issuer-wrapped.hcl is the same with wrapping
# required. `gateway dev` renders it with the configured AppRole mount in place of "approle"; elsewhere write it with
# `bao policy write gateway-secret-id-issuer secrets/secret-id-issuer.hcl`.

path "auth/approle/role/gateway/role-id" {
  capabilities = ["read"]
}

path "auth/approle/role/gateway/secret-id" {
  capabilities = ["update"]
}

# The operator commands check their token before using it.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
