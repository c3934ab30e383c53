"""画面ロック (lock screen): nothing personal shows; only the same operator unlocks it."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from tui.messages import Failed, LoginStep
from tui.screens.login import STEPS
from tui.widgets import StatusBar

if TYPE_CHECKING:
    from tui.shell import TerminalApp

WHY = {
    "idle": "一定時間操作がなかったため、画面をロックしました。",
    "card": "操作者カードが取り外されたため、画面をロックしました。",
    "manual": "画面をロックしました。",
    "cs": "市町村CSがセッションをロックしました。",
}


class LockScreen(Screen[None]):
    """Covers everything; Enter re-authenticates the same operator (card + biometric)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "unlock", "ロック解除", id="lock.unlock"),
        Binding("f12", "app.logout", "ログアウト", id="lock.logout"),
    ]

    def __init__(self, why: str) -> None:
        super().__init__()
        self.why = why

    @property
    def terminal(self) -> TerminalApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        session = self.terminal.session
        who = f"{session.name}（{session.operator_id}）" if session else ""
        with Center(), Vertical(id="lock-box"):
            yield Label("画面ロック中", id="lock-title")
            yield Static(WHY.get(self.why, WHY["manual"]), id="lock-why")
            yield Static(
                f"{who} の操作者カードを読取機（スロット2）に挿入し、Enter を押して"
                "生体認証でロックを解除してください。",
                id="lock-help",
            )
            yield Static("", id="lock-progress")
        yield StatusBar()
        yield Footer()

    def action_unlock(self) -> None:
        self.query_one("#lock-progress", Static).update("認証中…")
        self.terminal.start_login(self, resume=True)

    @on(LoginStep)
    def _step(self, message: LoginStep) -> None:
        self.query_one("#lock-progress", Static).update(STEPS.get(message.step, message.step))

    @on(Failed)
    def _failed(self, message: Failed) -> None:
        self.query_one("#lock-progress", Static).update(f"解除できません: {message.error.title}")
        self.terminal.show_error(message.error)
