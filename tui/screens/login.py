"""操作者ログイン (T-01 operator login): operator card, then the biometric, verified by the CS."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from tui.messages import Failed, LoginStep
from tui.widgets import StatusBar

if TYPE_CHECKING:
    from tui.shell import TerminalApp

STEPS = {
    "card": "① 操作者カードを読み取っています…",
    "challenge": "② 市町村CSに認証要求を送っています…",
    "sign": "③ 操作者カードで署名しています…",
    "biometric": "④ 生体センサーに手のひらをかざしてください…",
    "verify": "⑤ 市町村CSで照合しています…",
}


class LoginScreen(Screen[None]):
    """Insert the card (slot 2), press Enter, then hold the hand over the sensor."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "login", "ログイン", id="login.start")
    ]

    @property
    def terminal(self) -> TerminalApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        t = self.terminal
        with Center(), Vertical(id="login-box"):
            yield Label("操作者認証", id="login-title")
            yield Static(
                f"{t.municipality[1]}（{t.municipality[0]}） 端末 {t.terminal_id}", id="login-where"
            )
            yield Static(
                "1. 操作者カードを読取機（スロット2）に挿入してください。\n"
                "2. Enter を押してください。\n"
                "3. 生体センサーに手のひらをかざしてください。",
                id="login-help",
            )
            yield Static("", id="login-progress")
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self.terminal.refresh_status()

    def action_login(self) -> None:
        self.query_one("#login-progress", Static).update("認証を開始します…")
        self.terminal.start_login(self)

    @on(LoginStep)
    def _step(self, message: LoginStep) -> None:
        self.query_one("#login-progress", Static).update(STEPS.get(message.step, message.step))

    @on(Failed)
    def _failed(self, message: Failed) -> None:
        self.query_one("#login-progress", Static).update(
            f"ログインできません: {message.error.title}"
        )
        self.terminal.show_error(message.error)
