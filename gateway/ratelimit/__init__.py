"""Rate limiting: per-key request and token counters shared by the fleet (a domain service; no HTTP here)."""
