"""Errors a user meets at run time: one clear message each, rendered by the CLI without a traceback."""

from __future__ import annotations


class RunError(Exception):
    """A run stopped for a reason the user can act on. `node` says where, `hint` what to do."""

    def __init__(self, node: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.node = node
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"error in {self.node}: {self.message}"
        return f"{text}\n  = hint: {self.hint}" if self.hint else text
