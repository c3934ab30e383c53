"""窓口事務の部品 (counter-task widgets): the masked 個人番号, the 本人確認情報 view, result tables.

- `MaskedNumber` shows 個人番号 masked; its ``reveal`` binding (F9) sends ``cs.op.number.reveal``
  — its own usage-logged request at the CS — and shows the number in clear until ``blank()``.
  A number that arrives in clear from anywhere else is masked on receipt and never kept.
- `RecordView` shows the 40 items of file (2) with their seed labels (store.records order) and
  the record's history.
- `ResultsTable` is a row-cursor DataTable over a list of dicts, with the chosen row at hand.

Every widget here has ``blank()``: `TaskScreen.blank` calls it on lock and logout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from rich.cells import cell_len
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Label, Static

from store.records import IDENTITY_FIELDS, IDENTITY_ITEM_NUMBERS
from tui.messages import Answered

if TYPE_CHECKING:
    from tui.screens.task_base import TaskScreen

LABELS: dict[str, str] = {
    "resident_code": "住民票コード",
    "name_kanji": "漢字氏名",
    "name_gaiji_count": "外字数（氏名）",
    "name_kana": "ふりがな氏名",
    "name_kana_seion": "清音化かな氏名",
    "birth_date": "生年月日",
    "sex": "性別",
    "municipality_code": "市町村コード",
    "oaza_code": "大字・字コード",
    "postcode": "郵便番号",
    "address": "住所",
    "address_gaiji_count": "外字数（住所）",
    "individual_number": "個人番号",
    "became_resident_on": "住民となった日",
    "address_set_on": "住所を定めた日",
    "notified_on": "届出の年月日",
    "previous_municipality_code": "市町村コード（転入前）",
    "previous_address": "転入前住所",
    "previous_address_gaiji_count": "外字数（転入前住所）",
    "relationship": "続柄",
    "change_reason": "異動事由",
    "change_date": "異動年月日",
    "change_reason_detail": "異動事由詳細",
    "old_resident_code": "旧住民票コード",
    "resident_code_since": "住民票コード使用年月日",
    "request_number": "依頼管理番号",
    "operator_id": "操作者ＩＤ",
    "terminal_id": "操作端末ＩＤ",
    "sequence": "更新順番号",
    "recovery_sequence": "異常時更新順番号",
    "update_prohibited": "更新禁止フラグ",
    "prospective": "予定者フラグ",
    "locked": "排他フラグ",
    "gaiji_flag": "外字フラグ",
    "record_status": "レコード状況フラグ",
    "timestamp": "タイムスタンプ",
    "former_surname_kanji": "旧氏　漢字",
    "former_surname_gaiji_count": "旧氏　外字数",
    "former_surname_kana": "旧氏　ふりがな",
    "former_surname_gaiji_serial": "旧氏　外字変更連番",
}
"""Item name (store.records) → the seed's Japanese label (seed-digest §3.2)."""

SEX = {"1": "男", "2": "女", "9": "適用不能"}
NUMBER_FIELD = "individual_number"


def mask(number: str | None) -> str:
    """個人番号 as shown by default: the last four digits only (already masked stays so)."""
    if not number:
        return "（未指定）"
    if number.isdigit():
        return "********" + number[-4:]
    return number


def show_value(field: str, value: Any) -> str:
    """A record value as the screen shows it (never a clear 個人番号)."""
    if field == NUMBER_FIELD:
        return mask(value)
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "あり" if value else "なし"
    if field == "sex":
        return SEX.get(str(value), str(value))
    return str(value)


class MaskedNumber(Static):
    """個人番号, masked; F9 asks the CS for it in clear (a logged request of its own)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f9", "reveal", "個人番号表示", id="number.reveal"),
    ]
    DEFAULT_CSS = """
    MaskedNumber { height: 1; width: auto; padding: 0 1; }
    MaskedNumber:focus { background: $accent 30%; }
    MaskedNumber.revealed { color: $warning; text-style: bold; }
    """
    can_focus = True

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.resident_code: str | None = None
        self.masked: str = ""
        self.revealed: str | None = None
        """The clear number after a reveal, until ``blank()`` (or the next record)."""

    def on_mount(self) -> None:
        self._render_number()

    def set_record(self, resident_code: str | None, number: str | None) -> None:
        """Show ``resident_code``'s 個人番号 masked (``number`` may arrive masked or not)."""
        self.resident_code = resident_code
        self.masked = mask(number) if resident_code else ""
        self.revealed = None
        self._render_number()

    def _render_number(self) -> None:
        self.set_class(self.revealed is not None, "revealed")
        if self.resident_code is None:
            self.update("個人番号: —")
        elif self.revealed is not None:
            self.update(f"個人番号: {self.revealed}（表示中・記録済み）")
        else:
            self.update(f"個人番号: {self.masked}（F9で表示）")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "reveal":
            return self.resident_code is not None and self.revealed is None
        return True

    def action_reveal(self) -> None:
        """Ask the CS; the screen's 事務種別 and 処理事由 go with it into the usage log."""
        if self.resident_code is None:
            return
        screen: TaskScreen = self.screen  # type: ignore[assignment]
        screen.call(
            "number.reveal",
            "cs.op.number.reveal",
            {"resident_code": self.resident_code},
            requester=self,
        )

    @on(Answered)
    def _revealed(self, message: Answered) -> None:
        if message.tag != "number.reveal":
            return
        message.stop()
        screen = self.screen
        pending = getattr(screen, "pending", None)
        if pending is not None:
            pending.discard(message.tag)
        number = message.data.get("individual_number")
        self.revealed = number or "（未指定）"
        self._render_number()
        set_state = getattr(screen, "set_state", None)
        if set_state is not None:
            set_state("個人番号を表示しました（使用履歴に記録されています）")

    def blank(self) -> None:
        self.set_record(None, None)


class RecordView(Vertical):
    """One person's 本人確認情報: 個人番号 (masked) on top, the 40 items, then the history."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f9", "reveal", "個人番号表示", id="record.reveal"),
    ]
    DEFAULT_CSS = """
    RecordView { height: 1fr; }
    RecordView #record-items { height: 2fr; }
    RecordView #record-history { height: 1fr; }
    RecordView .record-section { text-style: bold; margin-top: 0; }
    """
    HISTORY_COLUMNS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("no", "履歴番号"),
        ("change_reason", "異動事由"),
        ("change_date", "異動年月日"),
        ("name_kanji", "漢字氏名"),
        ("address", "住所"),
        ("sequence", "更新順番号"),
        ("record_status", "状況"),
    )

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.record: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield MaskedNumber(id="record-number")
        yield DataTable(id="record-items", zebra_stripes=True, cursor_type="row")
        yield Label("履歴（修正前の本人確認情報）", classes="record-section")
        yield DataTable(id="record-history", zebra_stripes=True, cursor_type="row")

    def on_mount(self) -> None:
        items = self.query_one("#record-items", DataTable)
        items.add_columns("No.", "項目", "内容")
        history = self.query_one("#record-history", DataTable)
        history.add_columns(*(label for _, label in self.HISTORY_COLUMNS))

    @property
    def number(self) -> MaskedNumber:
        return self.query_one(MaskedNumber)

    def show(
        self, record: Mapping[str, Any] | None, history: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        """Show ``record`` (a record_to_dict map) and its history (``{"no", "record"}`` maps)."""
        items = self.query_one("#record-items", DataTable)
        table = self.query_one("#record-history", DataTable)
        items.clear()
        table.clear()
        self.record = dict(record) if record is not None else None
        if self.record is not None and NUMBER_FIELD in self.record:
            self.record[NUMBER_FIELD] = mask(self.record[NUMBER_FIELD])
        self.history = []
        if self.record is None:
            self.number.set_record(None, None)
            return
        self.number.set_record(self.record.get("resident_code"), self.record.get(NUMBER_FIELD))
        for name in IDENTITY_FIELDS:
            items.add_row(
                str(IDENTITY_ITEM_NUMBERS[name]),
                LABELS[name],
                show_value(name, self.record.get(name)),
                key=name,
            )
        for entry in history:
            old = entry.get("record", {})
            self.history.append({"no": entry.get("no"), **{k: old.get(k) for k in LABELS}})
            table.add_row(
                str(entry.get("no", "")),
                *(show_value(k, old.get(k)) for k, _ in self.HISTORY_COLUMNS[1:]),
            )

    def action_reveal(self) -> None:
        self.number.action_reveal()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "reveal":
            return self.number.check_action("reveal", parameters)
        return True

    def blank(self) -> None:
        self.show(None)


class ResultsTable(DataTable[str]):
    """A row-cursor table over dicts: ``show(rows, columns)``; ``chosen`` is the cursor's row."""

    DEFAULT_CSS = "ResultsTable { height: 1fr; }"

    def __init__(self, columns: Sequence[tuple[str, str]], *, id: str | None = None) -> None:
        super().__init__(id=id, zebra_stripes=True, cursor_type="row")
        self.columns_spec = tuple(columns)
        """(key in each row dict, Japanese column label)."""
        self.rows_data: list[dict[str, Any]] = []

    def on_mount(self) -> None:
        self.add_columns(*(label for _, label in self.columns_spec))

    def show(self, rows: Sequence[Mapping[str, Any]]) -> None:
        # Column widths are computed here, from the cells, rather than left to DataTable's
        # auto-sizing, which settles a refresh later: the screen must look the same whenever it
        # is drawn (an operator's screenshot, a snapshot test) once the rows are in.
        self.clear(columns=True)
        self.rows_data = [dict(r) for r in rows]
        cells = [
            [show_value(k, row.get(k)) for k, _ in self.columns_spec] for row in self.rows_data
        ]
        for j, (_key, label) in enumerate(self.columns_spec):
            width = max([cell_len(label), *(cell_len(str(c[j])) for c in cells)])
            self.add_column(label, width=width)
        for i, row_cells in enumerate(cells):
            self.add_row(*row_cells, key=str(i))

    @property
    def chosen(self) -> dict[str, Any] | None:
        if not self.rows_data or self.cursor_row < 0 or self.cursor_row >= len(self.rows_data):
            return None
        return self.rows_data[self.cursor_row]

    def blank(self) -> None:
        self.clear()
        self.rows_data = []
