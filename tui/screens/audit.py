"""監査 (T-18 log review): the 使用履歴 filtered by operator, task, resident and time; built-in
reports (night and holiday access, failed logins, mass searches, repeated look-ups of one
person); the 提供・移転の記録 with refusals; and the hash chain's verification.

An auditor's own review is an operator request like any other, so it is logged too.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label, Static

from tui.errors import SESSION_CODES, ErrorInfo
from tui.messages import Answered, Failed
from tui.widgets import StatusBar

if TYPE_CHECKING:
    from tui.shell import TerminalApp

AUDIT_TASK = "監査"
JST = timezone(timedelta(hours=9))
REPORTS = {
    "night_holiday": "夜間・休日のアクセス",
    "failed_logins": "認証失敗",
    "mass_searches": "大量検索",
    "repeated_lookups": "同一人物への反復照会",
}
USAGE_COLUMNS = ("日時", "操作者", "端末", "事務種別", "処理事由", "電文", "対象", "結果", "署名")


def _jst(ts: float) -> str:
    return datetime.fromtimestamp(ts, JST).strftime("%Y-%m-%d %H:%M:%S")


def _day(text: str, *, end: bool = False) -> float | None:
    """YYYY-MM-DD (JST) → epoch seconds; the end of a period is the next midnight."""
    if not text.strip():
        return None
    d = datetime.strptime(text.strip(), "%Y-%m-%d").replace(tzinfo=JST)
    return (d + timedelta(days=1 if end else 0)).timestamp()


class AuditScreen(Screen[None]):
    """Filters on top, results below, the chain verdict at the bottom."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "戻る", id="audit.back"),
        Binding("f5", "usage", "使用履歴", id="audit.usage"),
        Binding("f6", "report('night_holiday')", "夜間休日", id="audit.night"),
        Binding("f7", "report('failed_logins')", "認証失敗", id="audit.failed"),
        Binding("f8", "report('mass_searches')", "大量検索", id="audit.mass"),
        Binding("f9", "report('repeated_lookups')", "反復照会", id="audit.repeated"),
        Binding("f10", "provisions", "提供記録", id="audit.provisions"),
        Binding("f11", "verify", "改ざん検証", id="audit.verify"),
    ]

    @property
    def terminal(self) -> TerminalApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with Horizontal(classes="filters"):
            yield Input(placeholder="操作者ID", id="f-operator")
            yield Input(placeholder="事務種別", id="f-task")
            yield Input(placeholder="住民票コード", id="f-target")
        with Horizontal(classes="filters"):
            yield Input(placeholder="開始日 YYYY-MM-DD", id="f-since")
            yield Input(placeholder="終了日 YYYY-MM-DD", id="f-until")
            yield Input(value="定期点検", placeholder="処理事由", id="f-reason")
        yield Label("使用履歴", id="audit-title")
        yield DataTable(id="audit-table", zebra_stripes=True, cursor_type="row")
        yield Static("", id="audit-verify")
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self.terminal.refresh_status()
        self.query_one("#audit-table", DataTable).focus()

    def blank(self) -> None:
        self.query_one("#audit-table", DataTable).clear(columns=True)
        self.query_one("#audit-verify", Static).update("")

    # -- requests -----------------------------------------------------------------------------

    def _value(self, wid: str) -> str:
        return self.query_one(wid, Input).value.strip()

    def _period(self) -> dict[str, float] | None:
        try:
            since, until = _day(self._value("#f-since")), _day(self._value("#f-until"), end=True)
        except ValueError:
            self.terminal.show_error(
                ErrorInfo(
                    "期間の形式が違います",
                    "開始日・終了日を日付として読めませんでした。",
                    "YYYY-MM-DD の形式（例 2026-11-01）で入力してください。",
                    "bad_period",
                )
            )
            return None
        out = {}
        if since is not None:
            out["since"] = since
        if until is not None:
            out["until"] = until
        return out

    def _send(self, tag: str, message_type: str, body: dict[str, Any]) -> None:
        reason = self._value("#f-reason") or "監査"
        self.terminal.request(self, tag, message_type, body, task=AUDIT_TASK, reason=reason)

    def action_usage(self) -> None:
        period = self._period()
        if period is None:
            return
        body: dict[str, Any] = dict(period)
        for key, wid in (
            ("filter_operator", "#f-operator"),
            ("filter_task", "#f-task"),
            ("filter_target", "#f-target"),
        ):
            if self._value(wid):
                body[key] = self._value(wid)
        self._send("usage", "cs.op.audit.usage", body)

    def action_report(self, report: str) -> None:
        period = self._period()
        if period is not None:
            self._send(f"report:{report}", "cs.op.audit.report", {**period, "report": report})

    def action_provisions(self) -> None:
        period = self._period()
        if period is not None:
            self._send("provisions", "cs.op.audit.provisions", period)

    def action_verify(self) -> None:
        self._send("verify", "cs.op.audit.verify", {})

    # -- answers ------------------------------------------------------------------------------

    def _fill(
        self, title: str, columns: tuple[str, ...] | list[str], rows: list[list[str]]
    ) -> None:
        self.query_one("#audit-title", Label).update(f"{title}（{len(rows)}件）")
        table = self.query_one("#audit-table", DataTable)
        table.clear(columns=True)
        table.add_columns(*columns)
        for row in rows:
            table.add_row(*row)

    @on(Answered)
    def _answered(self, message: Answered) -> None:
        data = message.data
        if message.tag == "usage":
            rows = [
                [
                    _jst(e["at"]),
                    e["user_id"],
                    e["terminal_id"],
                    e["task"],
                    e["reason"],
                    e["message_type"],
                    e["target"],
                    e["outcome"],
                    "有" if e["signed"] else "",
                ]
                for e in data["entries"]
            ]
            self._fill("使用履歴", USAGE_COLUMNS, rows)
        elif message.tag.startswith("report:"):
            name = REPORTS[message.tag.split(":", 1)[1]]
            self._fill(f"レポート: {name}", data["columns"], data["rows"])
        elif message.tag == "provisions":
            rows = [
                [
                    _jst(p["at"]),
                    p["operator_id"],
                    p["recipient"],
                    p["message_type"],
                    p["legal_basis"],
                    p["target"],
                    "提供" if p["result"] == "provided" else "拒否",
                    p["reason"],
                ]
                for p in data["entries"]
            ]
            columns = ("日時", "操作者", "提供先", "電文", "根拠", "対象", "結果", "拒否理由")
            self._fill("提供・移転の記録", columns, rows)
        elif message.tag == "verify":
            verdict = "改ざんは検出されませんでした" if data["ok"] else "改ざんを検出しました"
            self.query_one("#audit-verify", Static).update(
                f"使用履歴の検証: {verdict} — {data['text']}"
            )

    @on(Failed)
    def _failed(self, message: Failed) -> None:
        if message.error.code not in SESSION_CODES:
            self.terminal.show_error(message.error)
