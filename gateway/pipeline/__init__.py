"""The request pipeline: one module per step, wired in order by :mod:`gateway.pipeline.customer`.

authn → body bounds → steering-field refusal → model allow-list → (rate limits, guardrails, credit reservation:
planned) → in-process handoff to LiteLLM (:mod:`gateway.pipeline.handoff`) → response header allow-list.
"""
