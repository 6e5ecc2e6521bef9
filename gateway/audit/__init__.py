"""The tamper-evident audit log: who did what, every authentication denial, boot and shutdown."""
