"""本人確認情報整合 (T-08 / CS-6, consistency check against the prefecture and national).

F5 starts a check (照合のみ), F6 one that also re-sends what differs (再送付). The CS runs one at
a time in its own process; this screen polls ``cs.op.consistency.status`` once a second while
it runs and shows the progress, then the verdict, the peers compared and a table of the
mismatches (住民票コード, tier, kind, items). A mismatch is repaired only on request (F6).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, ProgressBar, Static

from tui.screens.task_base import TaskScreen

JST = timezone(timedelta(hours=9))
POLL_SECONDS = 1.0
TIERS = {"prefecture": "都道府県サーバ", "national": "全国サーバ"}
KINDS = {"missing": "欠落", "extra": "余剰", "differs": "相違"}
STATES = {"running": "実行中", "done": "完了", "failed": "失敗"}


def _jst(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, JST).strftime("%Y-%m-%d %H:%M:%S")


class ConsistencyScreen(TaskScreen):
    """Progress on top, the verdict and the mismatch table below."""

    TASK: ClassVar[str] = "整合性確認"
    HEADING: ClassVar[str] = "本人確認情報整合 — 整合性確認（CS-6）"
    REASONS: ClassVar[tuple[str, ...]] = ("年次の整合性確認", "不一致の再送付")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "start(False)", "照合開始", id="consistency.start"),
        Binding("f6", "start(True)", "再送付", id="consistency.repair"),
        Binding("f7", "status", "状況", id="consistency.status"),
    ]
    DEFAULT_CSS = """
    ConsistencyScreen #cons-run { margin: 0 1; height: auto; }
    ConsistencyScreen #cons-progress { margin: 0 1; }
    ConsistencyScreen #cons-verdict { margin: 0 1; height: auto; text-style: bold; }
    ConsistencyScreen #cons-table { height: 1fr; margin: 0 1; }
    """

    def __init__(self, poll_seconds: float = POLL_SECONDS) -> None:
        super().__init__()
        self.poll_seconds = poll_seconds
        self.last_run: dict[str, Any] | None = None
        """The last run the CS reported (tests read it)."""

    def compose_body(self) -> ComposeResult:
        yield Static("", id="cons-run")
        yield ProgressBar(id="cons-progress", show_eta=False)
        yield Static("", id="cons-verdict")
        yield DataTable(id="cons-table", cursor_type="row", zebra_stripes=True)

    def ready(self) -> None:
        self.query_one("#cons-table", DataTable).focus()
        self.action_status()

    def action_start(self, repair: bool) -> None:
        if self.last_run is not None and self.last_run["state"] == "running":
            self.set_state("整合性確認を実行中です。終了を待ってください。")
            return
        self.call("start", "cs.op.consistency.start", {"repair": repair})

    def action_status(self) -> None:
        if "status" not in self.pending:
            self.call("status", "cs.op.consistency.status", {})

    def answered(self, tag: str, data: dict[str, Any]) -> None:
        if tag == "start":
            self._show(data)
        elif tag == "status":
            self._show(data.get("run"))

    def _show(self, run: dict[str, Any] | None) -> None:
        self.last_run = run
        head = self.query_one("#cons-run", Static)
        bar = self.query_one("#cons-progress", ProgressBar)
        if run is None:
            head.update("整合性確認の実行記録はありません。F5で照合を開始します。")
            bar.update(total=None, progress=0)
            return
        mode = "再送付あり" if run["repair"] else "照合のみ"
        head.update(
            f"実行番号 {run['run_id']}（{mode}） 状態: {STATES[run['state']]} ／ "
            f"開始 {_jst(run['started_at'])} 操作者 {run['operator_id']}"
            + (f" ／ 終了 {_jst(run['finished_at'])}" if run["finished_at"] else "")
            + (f"\n進行: {run['description']}" if run["description"] else "")
        )
        total = run["total"] or None
        bar.update(total=total, progress=run["done"])
        if run["state"] == "running":
            self.set_timer(self.poll_seconds, self.action_status)
            return
        if run["state"] == "failed":
            self.query_one("#cons-verdict", Static).update(
                f"整合性確認は失敗しました: {run['error'] or '原因不明'}"
            )
            return
        self._report(run.get("report") or {})

    def _report(self, report: dict[str, Any]) -> None:
        peers = "、".join(
            f"{TIERS.get(p['tier'], p['tier'])} {p['records']:,}件（不一致 {p['mismatches']}）"
            for p in report.get("peers", [])
        )
        verdict = (
            "整合しています（不一致なし）"
            if report.get("ok")
            else f"不一致 {report.get('mismatch_count', 0):,}件 — F6で再送付できます"
        )
        repairs = report.get("repairs", 0)
        self.query_one("#cons-verdict", Static).update(
            f"結果: {verdict}\n市町村CS {report.get('cs_records', 0):,}件 ／ {peers}"
            + (f"\n再送付 {repairs:,}件を送信しました" if repairs else "")
        )
        table = self.query_one("#cons-table", DataTable)
        table.clear(columns=True)
        table.add_columns("住民票コード", "照合先", "ノード", "種別", "相違項目")
        for m in report.get("mismatches", []):
            table.add_row(
                m["resident_code"],
                TIERS.get(m["tier"], m["tier"]),
                m["node"],
                KINDS.get(m["kind"], m["kind"]),
                ", ".join(m["fields"])[:60],
            )

    def blank(self) -> None:
        super().blank()
        self.query_one("#cons-verdict", Static).update("")
        self.query_one("#cons-table", DataTable).clear(columns=True)
