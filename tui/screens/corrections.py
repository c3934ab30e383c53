"""職権修正 (T-15 / V-12, correction of 本人確認情報 with a second operator's approval).

Two screens, because two people do it (「入力、削除及び訂正を行った者以外の者が確認する」):

- 職権修正（入力）: the first operator looks the person up, picks an item, types the corrected
  value and the reason, and proposes it (``cs.op.correction.propose``). The CS checks the
  proposal now as the 職権修正 it will become and keeps it pending.
- 職権修正（承認）: the 本人確認情報管理責任者, on their own session, lists the pending proposals
  and approves or rejects one. The CS refuses the proposer with rule V-12 whatever they hold;
  the screen says so in the error dialog and beside the proposal. An approved correction goes
  to the existing registry, which sends it back through CS-1 as an ordinary 職権修正.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Label, Select, Static

from tui.errors import ErrorInfo
from tui.screens.task_base import TaskScreen

JST = timezone(timedelta(hours=9))
ITEMS = {
    "name_kanji": "漢字氏名",
    "name_kana": "ふりがな氏名",
    "birth_date": "生年月日",
    "sex": "性別",
    "address": "住所",
    "postcode": "郵便番号",
    "oaza_code": "大字・字コード",
    "relationship": "続柄",
    "former_surname_kanji": "旧氏 漢字",
    "former_surname_kana": "旧氏 ふりがな",
}
"""Items offered for a 職権修正 (the CS decides what may be corrected and says so)."""
STATUS = {"pending": "承認待ち", "approved": "承認済", "rejected": "却下"}
V12_NOTE = "V-12: 訂正を入力した操作者本人は承認・却下できません。別の操作者が確認します。"


def _jst(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, JST).strftime("%m-%d %H:%M")


def _items(values: dict[str, Any]) -> str:
    return "、".join(f"{ITEMS.get(k, k)}={v}" for k, v in values.items())


class CorrectionBase(TaskScreen):
    """Shared: the proposal table."""

    DEFAULT_CSS = """
    CorrectionBase .corr-row { height: 3; margin: 0 1; }
    CorrectionBase .corr-row Label { width: 14; padding-top: 1; }
    CorrectionBase .corr-row Input { width: 1fr; }
    CorrectionBase #corr-item { width: 24; }
    CorrectionBase #corr-current { margin: 0 1; height: auto; }
    CorrectionBase #corr-result { margin: 0 1; height: auto; text-style: bold; }
    CorrectionBase #corr-table { height: 1fr; margin: 0 1; }
    """
    LIST_STATUS: ClassVar[str | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.proposals: list[dict[str, Any]] = []
        self.outcome = ""

    def compose_table(self) -> ComposeResult:
        yield Static("", id="corr-result")
        yield DataTable(id="corr-table", cursor_type="row", zebra_stripes=True)

    def refresh_list(self) -> None:
        body: dict[str, Any] = {"limit": 100}
        if self.LIST_STATUS:
            body["status"] = self.LIST_STATUS
        self.call("list", "cs.op.correction.list", body)

    def fill(self, proposals: list[dict[str, Any]]) -> None:
        self.proposals = proposals
        table = self.query_one("#corr-table", DataTable)
        table.clear(columns=True)
        table.add_columns(
            "提案番号", "住民票コード", "訂正前", "訂正後", "状態", "提案者", "提案日時", "確認者"
        )
        for p in proposals:
            table.add_row(
                p["proposal_id"],
                p["resident_code"],
                _items(p["before"])[:30],
                _items(p["changes"])[:30],
                STATUS[p["status"]] + ("・反映済" if p["applied"] else ""),
                p["proposer_id"],
                _jst(p["proposed_at"]),
                p["decided_by"] or "",
                key=p["proposal_id"],
            )

    def result(self, text: str) -> None:
        self.outcome = text
        self.query_one("#corr-result", Static).update(text)

    def blank(self) -> None:
        super().blank()
        self.proposals = []
        for wid in ("#corr-result",):
            self.query_one(wid, Static).update("")


class CorrectionProposeScreen(CorrectionBase):
    """Look up, choose an item, type the corrected value and why; F6 proposes."""

    TASK: ClassVar[str] = "本人確認情報訂正"
    HEADING: ClassVar[str] = "職権修正（入力） — 承認は別の操作者が行います（V-12）"
    REASONS: ClassVar[tuple[str, ...]] = ("誤記の申出", "職権調査による訂正")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "lookup", "照会", id="corrections.lookup"),
        Binding("f6", "propose", "訂正を提案", id="corrections.propose"),
        Binding("f9", "reload", "一覧更新", id="corrections.reload"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.record: dict[str, Any] | None = None
        self.proposal: dict[str, Any] | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="corr-row"):
            yield Label("住民票コード")
            yield Input(max_length=11, restrict=r"[0-9]*", id="corr-code", classes="personal")
            yield Label("訂正項目")
            yield Select[str](
                [(label, key) for key, label in ITEMS.items()],
                value="name_kana",
                allow_blank=False,
                id="corr-item",
            )
        yield Static("", id="corr-current")
        with Horizontal(classes="corr-row"):
            yield Label("訂正後の値")
            yield Input(id="corr-value", classes="personal")
        with Horizontal(classes="corr-row"):
            yield Label("訂正理由")
            yield Input(max_length=500, id="corr-note", classes="personal")
        yield from self.compose_table()

    def ready(self) -> None:
        self.query_one("#corr-code", Input).focus()
        self.refresh_list()

    def action_reload(self) -> None:
        self.refresh_list()

    def action_lookup(self) -> None:
        code = self.query_one("#corr-code", Input).value.strip()
        if len(code) != 11:
            self.show_error(
                ErrorInfo(
                    "住民票コードがありません",
                    "住民票コード（11桁）が入力されていません。",
                    "住民票コードを入力してください。",
                    "input",
                )
            )
            return
        self.call("lookup", "cs.op.lookup", {"resident_code": code})

    @on(Input.Submitted, "#corr-code")
    def _code_entered(self) -> None:
        self.action_lookup()

    @on(Select.Changed, "#corr-item")
    def _item_changed(self) -> None:
        self._show_current()

    def _item(self) -> str:
        return str(self.query_one("#corr-item", Select).value)

    def _show_current(self) -> None:
        if self.record is None:
            self.query_one("#corr-current", Static).update("")
            return
        item = self._item()
        r = self.record
        self.query_one("#corr-current", Static).update(
            f"{r['name_kanji']}（{r['name_kana']}） {r['birth_date']} {r['address']}\n"
            f"現在の{ITEMS[item]}: {r.get(item) if r.get(item) is not None else '（なし）'}"
        )

    def action_propose(self) -> None:
        code = self.query_one("#corr-code", Input).value.strip()
        value = self.query_one("#corr-value", Input).value
        note = self.query_one("#corr-note", Input).value.strip()
        if len(code) != 11 or not value or not note:
            self.show_error(
                ErrorInfo(
                    "入力が不足しています",
                    "住民票コード・訂正後の値・訂正理由のいずれかが入力されていません。",
                    "3つとも入力してから提案してください。",
                    "input",
                )
            )
            return
        self.call(
            "propose",
            "cs.op.correction.propose",
            {"resident_code": code, "changes": {self._item(): value}, "note": note},
        )

    def answered(self, tag: str, data: dict[str, Any]) -> None:
        if tag == "lookup":
            self.record = data.get("record")
            if self.record is None:
                self.result("該当する住民がいません。")
            self._show_current()
        elif tag == "propose":
            p = data["proposal"]
            self.proposal = p
            self.query_one("#corr-value", Input).value = ""
            self.result(
                f"訂正案 {p['proposal_id']} を登録しました（{STATUS[p['status']]}）: "
                f"{_items(p['before'])} → {_items(p['changes'])}。"
                "本人確認情報管理責任者（別の操作者）の承認後に反映されます。"
            )
            self.refresh_list()
        elif tag == "list":
            self.fill(data["proposals"])

    def failed(self, tag: str, error: ErrorInfo) -> None:
        if tag == "propose":
            self.result(f"訂正案は受け付けられませんでした（{error.code}）: {error.title}")
        super().failed(tag, error)

    def blank(self) -> None:
        super().blank()
        self.record = None
        self.query_one("#corr-current", Static).update("")


class CorrectionApproveScreen(CorrectionBase):
    """Pending proposals; F7 approves, F8 rejects the one under the cursor."""

    TASK: ClassVar[str] = "本人確認情報管理責任者"
    HEADING: ClassVar[str] = "職権修正（承認） — 本人確認情報管理責任者による確認（V-12）"
    REASONS: ClassVar[tuple[str, ...]] = ("訂正内容の確認",)
    LIST_STATUS: ClassVar[str | None] = "pending"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f7", "decide('approve')", "承認", id="corrections.approve"),
        Binding("f8", "decide('reject')", "却下", id="corrections.reject"),
        Binding("f9", "reload", "一覧更新", id="corrections.reload"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.decided: dict[str, Any] | None = None

    def compose_body(self) -> ComposeResult:
        yield Static("", id="corr-current")
        with Horizontal(classes="corr-row"):
            yield Label("確認メモ")
            yield Input(max_length=500, id="corr-note")
        yield from self.compose_table()

    def ready(self) -> None:
        self.query_one("#corr-table", DataTable).focus()
        self.refresh_list()

    def action_reload(self) -> None:
        self.refresh_list()

    def selected(self) -> dict[str, Any] | None:
        table = self.query_one("#corr-table", DataTable)
        if not self.proposals or table.row_count == 0:
            return None
        row = min(max(table.cursor_row, 0), len(self.proposals) - 1)
        return self.proposals[row]

    @on(DataTable.RowHighlighted, "#corr-table")
    def _highlighted(self) -> None:
        p = self.selected()
        if p is None:
            self.query_one("#corr-current", Static).update("")
            return
        session = self.terminal.session
        own = session is not None and session.operator_id == p["proposer_id"]
        self.query_one("#corr-current", Static).update(
            f"訂正案 {p['proposal_id']} 住民票コード {p['resident_code']}\n"
            f"訂正前: {_items(p['before'])}\n訂正後: {_items(p['changes'])}\n"
            f"理由: {p['note']} ／ 提案者 {p['proposer_id']}（端末 {p['proposer_terminal']}）"
            + (f"\n⚠ あなたが入力した訂正案です。{V12_NOTE}" if own else "")
        )

    def action_decide(self, verb: str) -> None:
        p = self.selected()
        if p is None:
            self.result("承認待ちの訂正案がありません。")
            return
        body: dict[str, Any] = {"proposal_id": p["proposal_id"]}
        note = self.query_one("#corr-note", Input).value.strip()
        if note:
            body["note"] = note
        self.call(verb, f"cs.op.correction.{verb}", body)

    def answered(self, tag: str, data: dict[str, Any]) -> None:
        if tag in ("approve", "reject"):
            p = data["proposal"]
            self.decided = p
            if tag == "approve":
                self.result(
                    f"訂正案 {p['proposal_id']} を承認しました。既存住基システムへ送付し、"
                    "職権修正として本人確認情報に反映されます。"
                )
            else:
                self.result(
                    f"訂正案 {p['proposal_id']} を却下しました。本人確認情報は変わりません。"
                )
            self.refresh_list()
        elif tag == "list":
            self.fill(data["proposals"])
            self._highlighted()

    def failed(self, tag: str, error: ErrorInfo) -> None:
        if tag in ("approve", "reject"):
            if error.code == "V-12":
                self.result(f"承認できません — {V12_NOTE}")
            else:
                self.result(f"処理できませんでした（{error.code}）: {error.title}")
        super().failed(tag, error)
