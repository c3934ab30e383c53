"""送付先情報通知 (T-07 / CS-7, mailing-destination notification): counts per day.

The CS forwards each 送付先 record to 機構 unedited and deletes it one business day after 機構
acknowledged it; this screen shows how many were received, refused, sent, acknowledged and
purged each day, and what is still waiting. Counts only: §4.10 forbids statistics from file
(3)'s personal data, and the CS never sends a name or a code for this screen.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Label, Static

from tui.errors import ErrorInfo
from tui.screens.task_base import TaskScreen

JST = timezone(timedelta(hours=9))
COLUMNS = ("日付", "受信", "拒否", "送付", "受領確認", "消去")


class DestinationsScreen(TaskScreen):
    """A table of days, newest first, and the waiting counts under it."""

    TASK: ClassVar[str] = "送付先情報通知"
    HEADING: ClassVar[str] = "送付先情報通知 — 件数（CS-7）"
    REASONS: ClassVar[tuple[str, ...]] = ("日次確認", "機構からの照会")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "refresh", "再表示", id="destinations.refresh"),
    ]
    DEFAULT_CSS = """
    DestinationsScreen .dest-row { height: 3; margin: 0 1; }
    DestinationsScreen .dest-row Label { padding-top: 1; width: 24; }
    DestinationsScreen #dest-since { width: 20; }
    DestinationsScreen #dest-table { height: 1fr; margin: 0 1; }
    DestinationsScreen #dest-summary { margin: 0 1; height: auto; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.totals: dict[str, int] = {}
        """Column sums of the last answer (tests read them)."""

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="dest-row"):
            yield Label("開始日（省略時は31日前）")
            yield Input(placeholder="YYYY-MM-DD", max_length=10, id="dest-since")
        yield DataTable(id="dest-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="dest-summary")

    def ready(self) -> None:
        self.query_one("#dest-table", DataTable).focus()
        self.action_refresh()

    def action_refresh(self) -> None:
        since = self.query_one("#dest-since", Input).value.strip()
        body: dict[str, Any] = {}
        if since:
            try:
                datetime.strptime(since, "%Y-%m-%d")
            except ValueError:
                self.show_error(
                    ErrorInfo(
                        "日付の形式が違います",
                        "開始日を日付として読めませんでした。",
                        "YYYY-MM-DD の形式（例 2026-11-01）で入力してください。",
                        "bad_period",
                    )
                )
                return
            body["since"] = since
        self.call("counts", "cs.op.destinations", body)

    def answered(self, tag: str, data: dict[str, Any]) -> None:
        if tag != "counts":
            return
        keys = ("received", "refused", "forwarded", "acknowledged", "purged")
        days = sorted(data["days"], key=lambda d: d["day"], reverse=True)
        table = self.query_one("#dest-table", DataTable)
        table.clear(columns=True)
        table.add_columns(*COLUMNS)
        for d in days:
            table.add_row(d["day"], *(f"{d[k]:,}" for k in keys))
        self.totals = {k: sum(d[k] for d in days) for k in keys}
        self.totals["awaiting_ack"] = data["awaiting_ack"]
        self.totals["awaiting_purge"] = data["awaiting_purge"]
        due = data.get("next_purge_due")
        due_text = (
            "なし" if due is None else datetime.fromtimestamp(due, JST).strftime("%Y-%m-%d %H:%M")
        )
        t = self.totals
        self.query_one("#dest-summary", Static).update(
            f"期間計: 受信 {t['received']:,} ／ 拒否 {t['refused']:,} ／ "
            f"送付 {t['forwarded']:,} ／ "
            f"受領確認 {t['acknowledged']:,} ／ 消去 {t['purged']:,}\n"
            f"機構の受領確認待ち {data['awaiting_ack']:,}件 ／ 消去待ち（受領確認の翌営業日に消去）"
            f" {data['awaiting_purge']:,}件 ／ 次回消去予定 {due_text}"
        )

    def blank(self) -> None:
        super().blank()
        self.query_one("#dest-summary", Static).update("")
