"""Virtual keys: the format, the hashing, the store behind them, and the service that verifies them."""
