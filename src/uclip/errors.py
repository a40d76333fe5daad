"""The project's exception type: one line for the user, no traceback from the CLI."""

from __future__ import annotations


class UclipError(Exception):
    """A user-facing error. The message says what was wrong and what to do about it."""
