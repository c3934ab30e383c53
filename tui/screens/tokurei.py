"""特例転入 (CS-3 / T-04 special move-in): the 転出証明書情報 pushed here before the move, and the
move-in itself.

The list shows every pending 転出証明書情報 the CS holds (purged after the set period if no 転入
follows). The resident's card identity check is its own screen (本人確認（カード）); here the
clerk gives the new address and the move-in date, and ``cs.op.tokurei_movein`` hands the 転入 to
the existing registry, whose update returns through CS-1 and sends the 転入通知 to the 転出地.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Static

from tui.screens.task_base import DATE_RE, TaskScreen
from tui.widgets_task import ResultsTable

JST = timezone(timedelta(hours=9))
COLUMNS = (
    ("resident_code", "住民票コード"),
    ("name_kanji", "氏名"),
    ("from_municipality", "転出地 市町村コード"),
    ("planned_on", "転入予定日"),
    ("received", "受信日時"),
)


class TokureiScreen(TaskScreen):
    """Pending certificates on top; choose one, give the new address and date, F2."""

    TASK = "特例転入"
    HEADING = "特例転入（転出証明書情報による転入）"
    REASONS = ("転入届の受付", "特例転入の届出")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "reload", "再読込", id="tokurei.reload"),
        Binding("f2", "movein", "転入処理", id="tokurei.movein"),
    ]
    DEFAULT_CSS = """
    TokureiScreen #tk-list { height: 1fr; margin: 0 1; }
    TokureiScreen #tk-chosen { height: 1; margin: 0 1; text-style: bold; }
    TokureiScreen .tk-form { height: 3; margin: 0 1; }
    TokureiScreen #tk-address { width: 3fr; }
    TokureiScreen #tk-date { width: 1fr; }
    TokureiScreen #tk-note { height: 2; margin: 0 1; color: $text-muted; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.done = ""
        """What the last move-in did, shown with the reloaded list."""

    def compose_body(self) -> ComposeResult:
        yield ResultsTable(COLUMNS, id="tk-list")
        yield Static("対象: 一覧から選択してください", id="tk-chosen")
        with Horizontal(classes="tk-form"):
            yield Input(placeholder="新住所（転入先）", id="tk-address", classes="personal")
            yield Input(placeholder="転入年月日 YYYY-MM-DD", id="tk-date")
        yield Static(
            "転入者本人の個人番号カードによる本人確認は「本人確認（カード）」で行ってください。",
            id="tk-note",
        )

    def ready(self) -> None:
        today = datetime.fromtimestamp(self.terminal.clock(), JST).date().isoformat()
        self.query_one("#tk-date", Input).value = today
        self.action_reload()

    def action_reload(self) -> None:
        self.call("pending", "cs.op.pending_moveouts", {})

    @property
    def chosen(self) -> dict[str, Any] | None:
        return self.query_one("#tk-list", ResultsTable).chosen

    @on(DataTable.RowHighlighted, "#tk-list")
    def _highlighted(self) -> None:
        row = self.chosen
        text = "対象: 一覧から選択してください"
        if row is not None:
            text = (
                f"対象: {row['name_kanji']}（住民票コード {row['resident_code']}、"
                f"転出地 {row['from_municipality']}）"
            )
        self.query_one("#tk-chosen", Static).update(text)

    @on(DataTable.RowSelected, "#tk-list")
    def _selected(self) -> None:
        self.query_one("#tk-address", Input).focus()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_movein()

    def action_movein(self) -> None:
        row = self.chosen
        if row is None:
            self.set_state("転出証明書情報を一覧から選んでください。")
            return
        address = self.query_one("#tk-address", Input).value.strip()
        moved_in_on = self.query_one("#tk-date", Input).value.strip()
        if not address:
            self.set_state("新住所を入力してください。")
            self.query_one("#tk-address", Input).focus()
            return
        if not self.valid(moved_in_on, DATE_RE, "転入年月日", "YYYY-MM-DD（例 2026-11-27）"):
            return
        self.call(
            "movein",
            "cs.op.tokurei_movein",
            {
                "resident_code": row["resident_code"],
                "new_address": address,
                "moved_in_on": moved_in_on,
            },
        )

    def answered(self, tag: str, data: dict[str, Any]) -> None:
        if tag == "pending":
            rows = [
                {
                    **p,
                    "received": datetime.fromtimestamp(p["received_at"], JST).strftime(
                        "%Y-%m-%d %H:%M"
                    ),
                }
                for p in data.get("pending", [])
            ]
            self.query_one("#tk-list", ResultsTable).show(rows)
            self._highlighted()
            self.set_state(f"{self.done}転入予定の転出証明書情報 {len(rows)}件")
            self.done = ""
            if rows:
                self.query_one("#tk-list", ResultsTable).focus()
        elif tag == "movein" and data.get("accepted"):
            self.query_one("#tk-address", Input).value = ""
            self.done = "転入処理を受け付けました（転出地へ転入通知）。"
            self.action_reload()

    def blank(self) -> None:
        super().blank()
        self.query_one("#tk-chosen", Static).update("対象: 一覧から選択してください")
