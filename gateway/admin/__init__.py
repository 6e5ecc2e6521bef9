"""The admin API (``/admin``): key issue, list, show, revoke. Admin keys only; customer keys and the master key never."""
