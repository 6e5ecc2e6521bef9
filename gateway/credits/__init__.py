"""Credits: prices, worst-case estimates, and the ledger that reserves before dispatch and settles after."""
