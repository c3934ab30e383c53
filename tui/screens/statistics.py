"""統計 (T-20 statistics): the number of updates per day and 異動事由 — counts only.

The seed allows 「本人確認情報の更新件数の集計等、事務処理実績の確認のための統計のみ」 and no
analysis about any person (seed-digest §4.10): the CS answers with counts and nothing else, and
this screen has nothing to drill into.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Label, Static

from tui.screens.task_base import DATE_RE, TaskScreen


def pivot(rows: list[dict[str, Any]]) -> tuple[list[str], list[tuple[str, list[int], int]]]:
    """(reasons in first-seen order, [(day, count per reason, day total)]) from the CS's
    ``by_day_and_reason`` rows."""
    reasons: list[str] = []
    days: dict[str, dict[str, int]] = {}
    for r in rows:
        if r["reason"] not in reasons:
            reasons.append(r["reason"])
        per_day = days.setdefault(r["day"], {})
        per_day[r["reason"]] = per_day.get(r["reason"], 0) + int(r["count"])
    out = []
    for day in sorted(days):
        counts = [days[day].get(reason, 0) for reason in reasons]
        out.append((day, counts, sum(counts)))
    return reasons, out


class StatisticsScreen(TaskScreen):
    """From a date (optional), F5: one row per day, one column per 異動事由, totals last."""

    TASK = "統計"
    HEADING = "統計（本人確認情報の更新件数：日別・異動事由別）"
    REASONS = ("事務処理実績の確認", "月次報告")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "load", "集計", id="statistics.load"),
    ]
    DEFAULT_CSS = """
    StatisticsScreen .st-form { height: 3; margin: 0 1; }
    StatisticsScreen .st-form Label { padding-top: 1; }
    StatisticsScreen #st-since { width: 44; }
    StatisticsScreen #st-note { height: 1; margin: 0 1; color: $text-muted; }
    StatisticsScreen #st-table { height: 1fr; margin: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.totals: dict[str, int] = {}
        """異動事由 → count over the period (what the last answer summed to)."""

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="st-form"):
            yield Label("集計開始日 ")
            yield Input(placeholder="YYYY-MM-DD（空欄: 全期間）", id="st-since")
        yield Static("件数のみを表示します。個人に着目した分析・統計は行いません。", id="st-note")
        yield DataTable(id="st-table", zebra_stripes=True)

    def ready(self) -> None:
        self.action_load()

    @on(Input.Submitted, "#st-since")
    def _since_given(self) -> None:
        self.action_load()

    def action_load(self) -> None:
        since = self.query_one("#st-since", Input).value.strip()
        body: dict[str, Any] = {}
        if since:
            if not self.valid(since, DATE_RE, "集計開始日", "YYYY-MM-DD（例 2026-11-01）"):
                return
            body["since"] = since
        self.call("stats", "cs.op.statistics", body)

    def answered(self, tag: str, data: dict[str, Any]) -> None:
        if tag != "stats":
            return
        reasons, days = pivot(data.get("by_day_and_reason", []))
        table = self.query_one("#st-table", DataTable)
        table.clear(columns=True)
        table.add_columns("異動年月日", *reasons, "合計")
        self.totals = {reason: 0 for reason in reasons}
        for day, counts, total in days:
            table.add_row(day, *(str(n) for n in counts), str(total))
            for reason, n in zip(reasons, counts, strict=True):
                self.totals[reason] += n
        grand = sum(self.totals.values())
        if days:
            table.add_row("合計", *(str(self.totals[r]) for r in reasons), str(grand))
        self.set_state(f"{len(days)}日分、更新 {grand}件")
