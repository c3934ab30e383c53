"""端末内の通知 (messages inside the terminal): what workers post back to the event loop.

Workers never touch widgets; they post one of these to the screen that asked, and the screen's
handler (on the event loop) updates what is shown.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message

from tui.errors import ErrorInfo


class Answered(Message):
    """A request to the CS succeeded; ``tag`` says which of the screen's requests it was."""

    def __init__(self, tag: str, data: dict[str, Any]) -> None:
        super().__init__()
        self.tag = tag
        self.data = data


class Failed(Message):
    """A request failed; ``error`` is ready to show."""

    def __init__(self, tag: str, error: ErrorInfo) -> None:
        super().__init__()
        self.tag = tag
        self.error = error


class LoginStep(Message):
    """Progress of a login or unlock (card, challenge, sign, biometric, verify)."""

    def __init__(self, step: str) -> None:
        super().__init__()
        self.step = step


class CardRemoved(Message):
    """The operator card left its reader: lock at once."""
