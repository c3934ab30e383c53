"""端末の部品 (terminal widgets): the status bar every screen shows above its footer."""

from __future__ import annotations

from dataclasses import dataclass

from textual.widgets import Static


@dataclass
class Status:
    """What the status bar shows (the app owns one and updates it)."""

    terminal: str
    operator: str = "未ログイン"
    broker: str = "未確認"
    cards: str = "操作者カード: 未確認"
    clock: str = ""

    def line(self) -> str:
        return (
            f" 操作者: {self.operator} │ 端末: {self.terminal} │ 通信: {self.broker} │ "
            f"{self.cards} │ {self.clock}"
        )


class StatusBar(Static):
    """One line: operator, terminal, broker and card readers."""

    DEFAULT_CSS = """
    StatusBar { dock: bottom; height: 1; margin-bottom: 1; background: $panel; color: $text; }
    """

    def on_mount(self) -> None:
        status = getattr(self.app, "status", None)
        if status is not None:
            self.show(status)

    def show(self, status: Status) -> None:
        self.update(status.line())
