"""住民票コード変更 (T-09, 住基法30条の4): the resident picks one of the codes 機構 designates,
the clerk confirms, and a print-ready 住民票コード変更通知書 comes out.

``cs.op.code_candidates`` asks national for fresh codes (the CS remembers which it offered for
whom, so only an offered code is accepted by ``cs.op.code_change``); the change itself is applied
by the existing registry and flows back through CS-1 to the prefecture and national.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from tui.screens.task_base import CODE_RE, TaskScreen

JST = timezone(timedelta(hours=9))


def change_notice(
    *,
    municipality: str,
    name: str,
    address: str,
    old_code: str,
    new_code: str,
    changed_on: str,
) -> str:
    """住民票コード変更通知書 as plain text, ready to print (住基法30条の4第3項)."""
    return "\n".join(
        [
            "住民票コード変更通知書",
            "",
            f"{changed_on}",
            f"{name} 様",
            f"住所 {address}",
            "",
            "住民基本台帳法第30条の4の規定により、あなたの住民票コードを",
            "次のとおり変更しましたので通知します。",
            "",
            f"  新しい住民票コード  {new_code[:4]} {new_code[4:8]} {new_code[8:]}",
            f"  変更前の住民票コード {old_code[:4]} {old_code[4:8]} {old_code[8:]}",
            f"  変更年月日          {changed_on}",
            "",
            f"{municipality}長",
        ]
    )


class ConfirmChange(ModalScreen[bool]):
    """y / n before the change is sent."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "はい", id="codechange.yes"),
        Binding("n,escape", "answer(False)", "いいえ", id="codechange.no"),
    ]
    DEFAULT_CSS = """
    ConfirmChange { align: center middle; }
    #cc-confirm { width: 64; height: auto; padding: 1 2; border: round $warning;
                  background: $surface; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="cc-confirm"):
            yield Static(self.question)
            yield Static("はい (y) ／ いいえ (n)")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class CodeChangeScreen(TaskScreen):
    """Current code → the resident and 機構's candidates → pick → confirm → the notice."""

    TASK = "住民票コード変更"
    HEADING = "住民票コード変更"
    REASONS = ("本人からの変更請求",)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "candidates", "候補取得", id="codechange.candidates"),
        Binding("f6", "save_notice", "通知書保存", id="codechange.save"),
    ]
    DEFAULT_CSS = """
    CodeChangeScreen .cc-form { height: 3; margin: 0 1; }
    CodeChangeScreen #cc-code { width: 30; }
    CodeChangeScreen #cc-who { height: 2; margin: 0 1; }
    CodeChangeScreen #cc-body { height: 1fr; margin: 0 1; }
    CodeChangeScreen #cc-candidates { width: 30; height: 1fr; }
    CodeChangeScreen #cc-notice { width: 1fr; height: 1fr; padding: 0 2; border: round $primary; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.resident: dict[str, Any] | None = None
        self.codes: list[str] = []
        self.new_code: str | None = None
        self.notice: str | None = None
        self.saved: Path | None = None
        """Where the last notice was saved."""

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="cc-form"):
            yield Input(placeholder="現在の住民票コード（11桁）", id="cc-code", classes="personal")
        yield Static("", id="cc-who")
        with Horizontal(id="cc-body"):
            yield OptionList(id="cc-candidates")
            yield Static("", id="cc-notice")

    def ready(self) -> None:
        self.query_one("#cc-code", Input).focus()

    @property
    def code(self) -> str:
        return self.query_one("#cc-code", Input).value.strip()

    @on(Input.Submitted, "#cc-code")
    def _code_given(self) -> None:
        self.action_candidates()

    def action_candidates(self) -> None:
        if not self.valid(self.code, CODE_RE, "住民票コード", "11桁の数字"):
            return
        self._clear()
        self.call("lookup", "cs.op.lookup", {"resident_code": self.code})
        self.call("candidates", "cs.op.code_candidates", {"resident_code": self.code})

    def _clear(self) -> None:
        self.resident = None
        self.codes = []
        self.new_code = None
        self.notice = None
        self.query_one("#cc-who", Static).update("")
        self.query_one("#cc-candidates", OptionList).clear_options()
        self.query_one("#cc-notice", Static).update("")

    def answered(self, tag: str, data: dict[str, Any]) -> None:
        if tag == "lookup":
            self.resident = data.get("record")
            who = "対象者が見つかりません"
            if self.resident is not None:
                r = self.resident
                who = (
                    f"対象: {r['name_kanji']}（{r['name_kana']}）生年月日 {r['birth_date']}\n"
                    f"住所: {r['address']}"
                )
            self.query_one("#cc-who", Static).update(who)
        elif tag == "candidates":
            self.codes = list(data.get("codes", []))
            options = self.query_one("#cc-candidates", OptionList)
            options.clear_options()
            options.add_options([Option(c, id=c) for c in self.codes])
            self.set_state(f"機構が指定した候補 {len(self.codes)}件。本人に選んでもらい Enter。")
            if self.codes:
                options.focus()
        elif tag == "change" and data.get("accepted") and self.new_code:
            self._issue_notice()
        elif tag == "output" and data.get("recorded"):
            self._write_notice()

    @on(OptionList.OptionSelected, "#cc-candidates")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        new = event.option.id
        if not new:
            return
        self.new_code = new
        self.app.push_screen(
            ConfirmChange(f"住民票コード {self.code} を {new} に変更します。よろしいですか。"),
            self._confirmed,
        )

    def _confirmed(self, yes: bool | None) -> None:
        if not yes or self.new_code is None:
            self.set_state("変更を取り消しました。")
            return
        self.call(
            "change",
            "cs.op.code_change",
            {"resident_code": self.code, "new_resident_code": self.new_code},
        )

    def _issue_notice(self) -> None:
        assert self.new_code is not None
        r = self.resident or {}
        changed_on = datetime.fromtimestamp(self.terminal.clock(), JST).date().isoformat()
        self.notice = change_notice(
            municipality=self.terminal.municipality[1],
            name=str(r.get("name_kanji", "")),
            address=str(r.get("address", "")),
            old_code=self.code,
            new_code=self.new_code,
            changed_on=changed_on,
        )
        self.query_one("#cc-notice", Static).update(self.notice)
        self.query_one("#cc-candidates", OptionList).clear_options()
        self.set_state("変更を受け付けました。F6で通知書を保存（印刷用）。")

    def notices_dir(self) -> Path:
        """var/notices (beside var/cards, which the app already knows)."""
        return Path(self.terminal.cards_dir).parent / "notices"

    def action_save_notice(self) -> None:
        """T-16: every output is recorded at the CS first (「逐一出力の記録が残される」);
        the file is written only once the record exists."""
        if self.notice is None or self.new_code is None:
            self.set_state("保存する通知書がありません。")
            return
        self.call(
            "output",
            "cs.op.output",
            {"kind": "住民票コード変更通知書", "target": self.new_code, "medium": "file"},
        )

    def _write_notice(self) -> None:
        if self.notice is None or self.new_code is None:
            return
        folder = self.notices_dir()
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.fromtimestamp(self.terminal.clock(), JST).strftime("%Y%m%d%H%M%S")
        path = folder / f"code-change-{stamp}-{self.new_code}.txt"
        path.write_text(self.notice + "\n", encoding="utf-8")
        path.chmod(0o600)
        self.saved = path
        self.set_state(f"通知書を保存しました: {path}")

    def blank(self) -> None:
        super().blank()
        self._clear()
