"""エラー表示 (error dialog): what happened and what to do, dismissed from the keyboard."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from tui.errors import ErrorInfo


class ErrorDialog(ModalScreen[None]):
    """A modal with the error's title, what happened and what to do."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "閉じる", id="error.close"),
        Binding("enter", "close", "確認", id="error.ok", show=False),
    ]

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__()
        self.info = info

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box"):
            yield Label(f"⚠ {self.info.title}", id="error-title")
            yield Static(f"発生した事象: {self.info.what}", id="error-what")
            yield Static(f"対処: {self.info.todo}", id="error-todo")
            yield Button("確認 (Enter)", id="error-ok", variant="error")

    def on_mount(self) -> None:
        self.query_one("#error-ok", Button).focus()

    def on_button_pressed(self) -> None:
        self.dismiss()

    def action_close(self) -> None:
        self.dismiss()
