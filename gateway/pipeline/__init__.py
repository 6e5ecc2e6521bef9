"""The request pipeline: one module per step, wired in order by :mod:`gateway.pipeline.customer`.

authn → rate limits (requests) → body → fields → authz (model) → guardrails → shaping → credits (estimate) → rate
limits (tokens) → approval → credits (reserve) → handoff to LiteLLM (:mod:`gateway.pipeline.handoff`: error
replacement, response header allow-list, metering and settlement). LiteLLM's side of the handoff is
:mod:`gateway.pipeline.bridge` (its custom_auth and the approval check, :mod:`gateway.pipeline.approval`). The
customer's own endpoints are :mod:`gateway.pipeline.own_routes`. Steps raise :class:`~gateway.pipeline.errors.Denial`;
domain services (keys, credits, rate limiting, audit) raise their own errors, which the steps translate.
"""
