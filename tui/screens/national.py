"""全国サーバ照会 (CS-5 / T-05 query to 機構): by 住民票コード, 個人番号 or 4情報, only when the
work needs it — which is why the 処理事由 is asked first and logged with the query.

The request goes CS → 都道府県サーバ → 全国サーバ; V-7 holds for a 4情報 query there too. 個人番号
in the answer is masked on this screen before it is shown and is not kept in clear.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Input, Select, Static

from tui.screens.search import FIELDS
from tui.screens.task_base import CODE_RE, DATE_RE, NUMBER_RE, TaskScreen
from tui.widgets_task import ResultsTable, mask

KEYS = (("住民票コード", "resident_code"), ("個人番号", "individual_number"), ("4情報", "4info"))
COLUMNS = (
    ("resident_code", "住民票コード"),
    ("name_kanji", "氏名"),
    ("birth_date", "生年月日"),
    ("sex", "性別"),
    ("address", "住所"),
    ("individual_number", "個人番号"),
    ("change_reason", "異動事由"),
    ("change_date", "異動年月日"),
    ("municipality_code", "市町村コード"),
    ("record_status", "状況"),
)


class NationalQueryScreen(TaskScreen):
    """Choose the key, fill it in, F5; the answer is a list of provided 本人確認情報."""

    TASK = "全国サーバ照会"
    HEADING = "全国サーバ照会（住民票コード・個人番号・4情報）"
    REASONS = ("転入者の前住所地での登録確認", "住所異動の確認")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "query", "照会", id="national.query"),
    ]
    DEFAULT_CSS = """
    NationalQueryScreen .nq-form { height: 3; margin: 0 1; }
    NationalQueryScreen .nq-form Input { width: 1fr; }
    NationalQueryScreen #nq-by { width: 22; }
    NationalQueryScreen #nq-help { height: 1; margin: 0 1; color: $text-muted; }
    NationalQueryScreen #nq-results { margin: 0 1; }
    """

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="nq-form"):
            yield Select[str](KEYS, value="resident_code", allow_blank=False, id="nq-by")
            yield Input(placeholder="住民票コード（11桁）", id="nq-code", classes="personal")
            yield Input(
                placeholder="個人番号（12桁）", id="nq-number", classes="personal", password=True
            )
        with Horizontal(classes="nq-form", id="nq-4info"):
            for key, label in FIELDS:
                yield Input(placeholder=label, id=f"nq-{key}", classes="personal")
        yield Static("", id="nq-help")
        yield ResultsTable(COLUMNS, id="nq-results")

    def ready(self) -> None:
        self._key_changed()

    @on(Select.Changed, "#nq-by")
    def _key_changed(self) -> None:
        by = self.query_one("#nq-by", Select).value
        self.query_one("#nq-code", Input).display = by == "resident_code"
        self.query_one("#nq-number", Input).display = by == "individual_number"
        self.query_one("#nq-4info").display = by == "4info"
        help_text = {
            "resident_code": "住民票コードで照会します。",
            "individual_number": "個人番号で照会します（入力値は表示されません）。",
            "4info": "4情報で照会します。V-7: 氏名に加えて住所または生年月日が必要です。",
        }
        self.query_one("#nq-help", Static).update(help_text.get(str(by), ""))
        first = {"resident_code": "#nq-code", "individual_number": "#nq-number"}.get(
            str(by), "#nq-name_kanji"
        )
        if self.task_kind is not None:
            self.query_one(first, Input).focus()

    def key(self) -> dict[str, Any]:
        by = str(self.query_one("#nq-by", Select).value)
        key: dict[str, Any] = {"by": by}
        if by == "resident_code":
            key["resident_code"] = self.query_one("#nq-code", Input).value.strip()
        elif by == "individual_number":
            key["individual_number"] = self.query_one("#nq-number", Input).value.strip()
        else:
            key["criteria"] = {
                k: v for k, _ in FIELDS if (v := self.query_one(f"#nq-{k}", Input).value.strip())
            }
        return key

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_query()

    def action_query(self) -> None:
        key = self.key()
        if key["by"] == "resident_code" and not self.valid(
            key["resident_code"], CODE_RE, "住民票コード", "11桁の数字"
        ):
            return
        if key["by"] == "individual_number" and not self.valid(
            key["individual_number"], NUMBER_RE, "個人番号", "12桁の数字"
        ):
            return
        birth = key.get("criteria", {}).get("birth_date")
        if birth and not self.valid(birth, DATE_RE, "生年月日", "YYYY-MM-DD（例 1980-04-01）"):
            return
        self.query_one("#nq-results", ResultsTable).blank()
        self.call("query", "cs.op.national_query", {"key": key})

    def answered(self, tag: str, data: dict[str, Any]) -> None:
        if tag != "query":
            return
        records = [
            {**r, "individual_number": mask(r.get("individual_number"))}
            for r in data.get("records", [])
        ]
        self.query_one("#nq-results", ResultsTable).show(records)
        more = "（一部のみ）" if data.get("truncated") else ""
        self.set_state(f"全国サーバから {len(records)}件{more}")
