"""HAZMAT-adjacent: the one error boot raises. Its text names the step and the setting, never a secret value."""

from __future__ import annotations


class BootError(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message

    def line(self) -> str:
        return f"gateway: boot failed at {self.step}: {self.message}"
