"""The request pipeline: one module per step, wired in order by :mod:`gateway.pipeline.customer`.

authn → body bounds → field allow-list → model allow-list → (rate limits: planned) → guardrails → credit
reservation → in-process handoff to LiteLLM (:mod:`gateway.pipeline.handoff`) → response header allow-list and
settlement.
"""
