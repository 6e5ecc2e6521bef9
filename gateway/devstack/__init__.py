"""Development stand-ins. Nothing here is used in production serving."""
