"""本人確認情報検索 (CS-4 / T-02 4情報 search): 4情報 in, the matching list out, one record with
its history on demand.

Rule V-7 (at least 氏名 plus 住所 or 生年月日; 性別 only narrows) is checked here only to explain
it while the clerk types; the search is sent anyway and the CS decides (and logs a refusal).
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Select, Static

from store.validation import validate_search
from tui.screens.task_base import DATE_RE, TaskScreen
from tui.widgets_task import RecordView, ResultsTable

SEARCH_COLUMNS = (
    ("resident_code", "住民票コード"),
    ("name_kanji", "漢字氏名"),
    ("name_kana", "ふりがな氏名"),
    ("birth_date", "生年月日"),
    ("sex", "性別"),
    ("address", "住所"),
    ("record_status", "状況"),
)
FIELDS = (
    ("name_kanji", "漢字氏名"),
    ("name_kana", "ふりがな氏名"),
    ("address", "住所"),
    ("birth_date", "生年月日 YYYY-MM-DD"),
)
RULE_OK = "検索条件: V-7 を満たしています（氏名＋住所／生年月日）。F5で検索。"
RULE_UNMET = (
    "⚠ V-7：氏名に加えて住所または生年月日が必要です（性別は絞り込みのみ）。\n"
    "不足のまま検索しても市町村CSが拒否し、その拒否も使用履歴に記録されます。"
)


def criteria_ok(criteria: dict[str, Any]) -> bool:
    """Whether V-7 is met (store.validation's own check: the CS runs the same rule)."""
    return not any(v.rule == "V-7" for v in validate_search(criteria))


class SearchScreen(TaskScreen):
    """4情報 on top, results in the middle, the chosen record (40 items + history) below."""

    TASK = "本人確認情報検索"
    HEADING = "本人確認情報検索（4情報）"
    REASONS = ("窓口での本人確認", "届出内容の確認", "証明書交付")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "search", "検索", id="search.run"),
        Binding("f4", "clear", "条件クリア", id="search.clear"),
    ]
    DEFAULT_CSS = """
    SearchScreen .search-form { height: 3; margin: 0 1; }
    SearchScreen .search-form Input { width: 1fr; }
    SearchScreen #s-sex { width: 22; }
    SearchScreen #s-rule { height: 2; margin: 0 1; }
    SearchScreen #s-rule.unmet { color: $warning; }
    SearchScreen #s-results { height: 8; margin: 0 1; }
    SearchScreen #s-record { margin: 0 1; }
    """

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="search-form"):
            for key, label in FIELDS:
                yield Input(placeholder=label, id=f"s-{key}", classes="personal")
            yield Select[str](
                [("男", "1"), ("女", "2"), ("適用不能", "9")], prompt="性別", id="s-sex"
            )
        yield Static(RULE_UNMET, id="s-rule", classes="unmet")
        yield ResultsTable(SEARCH_COLUMNS, id="s-results")
        yield RecordView(id="s-record")

    def ready(self) -> None:
        self.query_one("#s-name_kanji", Input).focus()

    # -- the form -----------------------------------------------------------------------------

    def criteria(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, _ in FIELDS:
            value = self.query_one(f"#s-{key}", Input).value.strip()
            if value:
                out[key] = value
        sex = self.query_one("#s-sex", Select).value
        if isinstance(sex, str):
            out["sex"] = sex
        return out

    @on(Input.Changed)
    @on(Select.Changed)
    def _explain_rule(self) -> None:
        ok = criteria_ok(self.criteria())
        rule = self.query_one("#s-rule", Static)
        rule.update(RULE_OK if ok else RULE_UNMET)
        rule.set_class(not ok, "unmet")

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_search()

    def action_search(self) -> None:
        criteria = self.criteria()
        birth = criteria.get("birth_date")
        if birth and not self.valid(birth, DATE_RE, "生年月日", "YYYY-MM-DD（例 1980-04-01）"):
            return
        self.query_one("#s-results", ResultsTable).blank()
        self.query_one("#s-record", RecordView).show(None)
        self.call("search", "cs.op.search", {"criteria": criteria, "limit": 100})

    def action_clear(self) -> None:
        for key, _ in FIELDS:
            self.query_one(f"#s-{key}", Input).value = ""
        self.query_one("#s-sex", Select).clear()
        self.query_one("#s-results", ResultsTable).blank()
        self.query_one("#s-record", RecordView).show(None)
        self.query_one("#s-name_kanji", Input).focus()

    # -- results ------------------------------------------------------------------------------

    @on(DataTable.RowSelected, "#s-results")
    def _chosen(self) -> None:
        row = self.query_one("#s-results", ResultsTable).chosen
        if row is not None:
            self.call("lookup", "cs.op.lookup", {"resident_code": row["resident_code"]})

    def answered(self, tag: str, data: dict[str, Any]) -> None:
        if tag == "search":
            records = data.get("records", [])
            table = self.query_one("#s-results", ResultsTable)
            table.show(records)
            more = "（上限を超えたため一部のみ表示）" if data.get("truncated") else ""
            self.set_state(f"{len(records)}件該当しました{more}。Enterで詳細と履歴を表示。")
            if records:
                table.focus()
        elif tag == "lookup":
            view = self.query_one("#s-record", RecordView)
            view.show(data.get("record"), data.get("history", []))
            self.set_state(f"履歴 {len(view.history)}件。F9で個人番号を表示（記録されます）。")
            view.query_one("#record-items", DataTable).focus()
