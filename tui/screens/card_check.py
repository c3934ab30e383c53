"""本人確認（個人番号カード）(T-03 / CS-2, identity check with the resident's card).

The resident puts the card on the reader (slot 0, 「スロット1」 to people) and types the two
4-digit PINs on screen: the 券面事項入力補助用暗証番号 opens 個人番号 and 基本4情報, the
住民基本台帳用暗証番号 opens the 住民票コード. Before anyone types, the card is probed (serial
and each PIN's tries left, a query that spends no try), so a blocked PIN is said at once and
the tries left are on screen. Then the card is read and ``cs.op.card.check`` compares it with
file (2) field by field; the CS record is shown beside the card's data.

Every pyscard call blocks, so the card is read in a thread worker that posts `CardProbed`,
`CardRead` or `CardFailed` back; nothing here logs a PIN or a 個人番号, and the number is
masked on screen.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import DataTable, Input, Label, Static

from store.cards import CARD_STATE_LABELS, CardState
from tui.card import reader
from tui.card.constants import PIN_LABELS, PIN_MAX_TRIES, PinKind
from tui.card.errors import CardError, InvalidPinFormat, PinBlocked, WrongPin
from tui.screens.task_base import TaskScreen
from tui.widgets_task import mask

RESIDENT_SLOT = 0
"""The resident's card goes into the first reader slot (the operator card is in the second)."""
PINS = (PinKind.KENHOJO, PinKind.JUKI)
FIELD_LABELS = {
    "individual_number": "個人番号",
    "name": "氏名",
    "address": "住所",
    "birth_date": "生年月日",
    "sex": "性別",
}
SEX_LABELS = {"1": "男", "2": "女", "9": "適用不能", "0": "不明"}
VERDICTS = {
    "match": "一致 — カードの記載は本人確認情報と一致します",
    "mismatch": "不一致 — カードの記載が本人確認情報と一致しません。申請・届出書と照合してください",
    "stale_card": "カードの記載が古い（転居等の前の情報）— 券面の記載事項変更を案内してください",
    "not_found": "該当者なし — この住民票コードの本人確認情報はこの市町村CSにありません",
}

CardOpener = Callable[[], AbstractContextManager[reader.Transport]]


def pcsc_card(slot: int = RESIDENT_SLOT) -> CardOpener:
    """Open the card in ``slot`` through pcscd (imported late: pyscard stays out of the app)."""

    def open_card() -> AbstractContextManager[reader.Transport]:
        from tui.card.pcsc import PcscTransport

        return PcscTransport(slot, timeout=2.0)

    return open_card


def _ymd(text: str | None) -> str:
    """Card dates are YYYYMMDD, file (2) dates YYYY-MM-DD; both shown as YYYY-MM-DD."""
    if not text:
        return ""
    digits = text.replace("-", "")
    return f"{digits[:4]}-{digits[4:6]}-{digits[6:8]}" if len(digits) == 8 else text


# --- what the worker posts -------------------------------------------------------------------


class CardProbed(Message):
    """The card answered: its serial and each PIN's tries left (no try spent)."""

    def __init__(self, serial: str, tries: dict[PinKind, int]) -> None:
        super().__init__()
        self.serial = serial
        self.tries = tries


class CardRead(Message):
    """Both PINs verified; what the chip holds. ``repr`` never shows the data."""

    def __init__(self, serial: str, resident_code: str, data: reader.CardData) -> None:
        super().__init__()
        self.serial = serial
        self.resident_code = resident_code
        self.data = data

    def __repr__(self) -> str:
        return "CardRead(…)"


class CardFailed(Message):
    """A card step failed; ``pin`` says which PIN was being verified, if any."""

    def __init__(self, error: CardError, pin: PinKind | None = None) -> None:
        super().__init__()
        self.error = error
        self.pin = pin


@dataclass(frozen=True, slots=True)
class CheckView:
    """What is on screen after a check, kept so that tests can assert on it."""

    verdict: str
    fields: dict[str, str]
    card_state: str | None


def describe_card_error(error: CardError, pin: PinKind | None) -> str:
    """One clear line for the resident and the clerk (never the PIN itself)."""
    which = PIN_LABELS[pin] if pin is not None else "暗証番号"
    if isinstance(error, WrongPin):
        if error.tries_left is None:
            return f"{which}が違います。もう一度入力してください。"
        return (
            f"{which}が違います（残り{error.tries_left}回）。"
            f"あと{error.tries_left}回間違えるとロックされます。"
        )
    if isinstance(error, PinBlocked):
        return (
            f"{which}はロックされています（入力誤りが規定回数に達しました）。"
            "カードは読み取れません。暗証番号の再設定の手続きを案内してください。"
        )
    if isinstance(error, InvalidPinFormat):
        return f"{which}は数字4桁です（カードには送っていません。回数は減りません）。"
    return f"{error.title}: {error.message}"


class CardCheckScreen(TaskScreen):
    """PIN fields and tries left on top; the card beside the CS record below."""

    TASK: ClassVar[str] = "カード関連事務"
    HEADING: ClassVar[str] = "本人確認（個人番号カード） — CS-2"
    REASONS: ClassVar[tuple[str, ...]] = ("窓口での本人確認", "特例転入の本人確認")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "probe", "カード読取", id="card_check.probe"),
        Binding("f6", "check", "照合", id="card_check.check"),
    ]
    DEFAULT_CSS = """
    CardCheckScreen .pin-row { height: 3; margin: 0 1; }
    CardCheckScreen .pin-row Label { width: 30; padding-top: 1; }
    CardCheckScreen .pin-row Input { width: 14; }
    CardCheckScreen .tries { width: 1fr; padding-top: 1; padding-left: 2; }
    CardCheckScreen #card-help { margin: 0 1; color: $text-muted; }
    CardCheckScreen #card-message { margin: 0 1; height: auto; color: $warning;
                                    text-style: bold; }
    CardCheckScreen #card-verdict { margin: 0 1; height: auto; text-style: bold; }
    CardCheckScreen #card-compare { height: 1fr; margin: 0 1; }
    """

    def __init__(self, open_card: CardOpener | None = None) -> None:
        super().__init__()
        self.open_card = open_card or pcsc_card()
        self.serial: str | None = None
        self.tries: dict[PinKind, int] = {}
        self.view: CheckView | None = None
        self._card: CardRead | None = None

    def compose_body(self) -> ComposeResult:
        yield Static(
            "住民の個人番号カードを読取機（スロット1）に置き、F5で読み取ります。"
            "暗証番号は住民本人が入力し、F6（またはEnter）で照合します。",
            id="card-help",
        )
        for kind in PINS:
            with Horizontal(classes="pin-row"):
                yield Label(PIN_LABELS[kind])
                yield Input(
                    password=True,
                    max_length=4,
                    restrict=r"[0-9]*",
                    placeholder="＊＊＊＊",
                    id=f"pin-{kind.value}",
                    classes="personal",
                )
                yield Static("", id=f"tries-{kind.value}", classes="tries")
        yield Static("", id="card-message")
        yield Static("", id="card-verdict")
        yield DataTable(id="card-compare", cursor_type="none")

    def ready(self) -> None:
        self.query_one("#pin-kenhojo", Input).focus()
        self.action_probe()

    # -- card worker ----------------------------------------------------------------------------

    def action_probe(self) -> None:
        if self.task_kind is None:
            return
        self._message("カードを読み取っています…")
        self._probe()

    @work(thread=True, exclusive=True, group="resident-card", exit_on_error=False)
    def _probe(self) -> None:
        try:
            with self.open_card() as t:
                serial = reader.read_card_info(t).serial
                tries = {kind: reader.pin_tries_left(t, kind) for kind in PINS}
        except CardError as exc:
            self.post_message(CardFailed(exc))
            return
        self.post_message(CardProbed(serial, tries))

    def action_check(self) -> None:
        if self.task_kind is None:
            return
        pins = {kind: self.query_one(f"#pin-{kind.value}", Input).value for kind in PINS}
        for kind in PINS:
            if self.tries.get(kind) == 0:
                self._message(describe_card_error(PinBlocked(), kind))
                return
            if len(pins[kind]) != 4:
                self._message(describe_card_error(InvalidPinFormat(), kind))
                self.query_one(f"#pin-{kind.value}", Input).focus()
                return
        self._message("カードを照合しています…")
        self._read(pins)

    @work(thread=True, exclusive=True, group="resident-card", exit_on_error=False)
    def _read(self, pins: dict[PinKind, str]) -> None:
        step: PinKind | None = None
        try:
            with self.open_card() as t:
                serial = reader.read_card_info(t).serial
                step = PinKind.KENHOJO
                data = reader.read_my_number_card(t, pins[PinKind.KENHOJO])
                step = PinKind.JUKI
                code = reader.read_resident_code(t, pins[PinKind.JUKI])
        except CardError as exc:
            self.post_message(CardFailed(exc, step))
            return
        self.post_message(CardRead(serial, code, data))

    @on(Input.Submitted, "#pin-kenhojo")
    def _next_pin(self) -> None:
        self.query_one("#pin-juki", Input).focus()

    @on(Input.Submitted, "#pin-juki")
    def _submit(self) -> None:
        self.action_check()

    @on(CardProbed)
    def _probed(self, message: CardProbed) -> None:
        self.serial = message.serial
        self.tries = dict(message.tries)
        for kind in PINS:
            self._show_tries(kind)
        blocked = [k for k in PINS if self.tries[k] == 0]
        if blocked:
            self._message(describe_card_error(PinBlocked(), blocked[0]))
        else:
            self._message(
                f"カードを読み取りました（製造番号 {message.serial}）。暗証番号を入力してください。"
            )

    @on(CardFailed)
    def _card_failed(self, message: CardFailed) -> None:
        error, pin = message.error, message.pin
        if pin is not None and isinstance(error, WrongPin) and error.tries_left is not None:
            self.tries[pin] = error.tries_left
        elif pin is not None and isinstance(error, PinBlocked):
            self.tries[pin] = 0
        for kind in PINS:
            self._show_tries(kind)
        if pin is not None:
            field = self.query_one(f"#pin-{pin.value}", Input)
            field.value = ""
            field.focus()
        self._message(describe_card_error(error, pin))

    @on(CardRead)
    def _card_read(self, message: CardRead) -> None:
        self._card = message
        for kind in PINS:
            self.query_one(f"#pin-{kind.value}", Input).value = ""
            self.tries[kind] = PIN_MAX_TRIES[kind]  # a right PIN resets the counter
            self._show_tries(kind)
        self._message(
            f"カードを読み取りました（住民票コード {message.resident_code}）。"
            "市町村CSに照会しています…"
        )
        d = message.data
        self.call(
            "check",
            "cs.op.card.check",
            {
                "resident_code": message.resident_code,
                "serial": message.serial,
                "card": {
                    "individual_number": d.individual_number,
                    "name": d.name,
                    "address": d.address,
                    "birth_date": d.birth_date,
                    "sex": d.sex,
                },
            },
        )

    # -- the CS's answer ------------------------------------------------------------------------

    def answered(self, tag: str, data: dict[str, Any]) -> None:
        if tag != "check" or self._card is None:
            return
        card = self._card.data
        record = data.get("record") or {}
        results = {f["field"]: f for f in data["fields"]}
        card_values = {
            "individual_number": mask(card.individual_number),
            "name": card.name,
            "address": card.address,
            "birth_date": _ymd(card.birth_date),
            "sex": SEX_LABELS.get(card.sex, card.sex),
        }
        cs_values = {
            "individual_number": mask(record.get("individual_number")),
            "name": record.get("name_kanji", ""),
            "address": record.get("address", ""),
            "birth_date": _ymd(record.get("birth_date")),
            "sex": SEX_LABELS.get(str(record.get("sex", "")), str(record.get("sex", ""))),
        }
        table = self.query_one("#card-compare", DataTable)
        table.clear(columns=True)
        table.add_columns("項目", "カードの記載", "本人確認情報（市町村CS）", "照合")
        shown: dict[str, str] = {}
        for name, label in FIELD_LABELS.items():
            r = results.get(name)
            if r is None:
                mark = "—"
            elif r["result"] == "match":
                mark = "○ 一致"
            elif r["previous"]:
                mark = "△ 以前の記載"
            else:
                mark = "× 不一致"
            shown[name] = mark
            table.add_row(label, card_values[name], cs_values[name] if record else "", mark)
        state = data.get("card_state")
        if state is None:
            state_text = "カードの状態: 機構で確認できませんでした"
        else:
            usable = "利用可" if data.get("card_usable") else "本人確認に利用できません"
            state_text = f"カードの状態: {CARD_STATE_LABELS[CardState(state)]}（{usable}）"
        self.view = CheckView(data["verdict"], shown, state)
        self.query_one("#card-verdict", Static).update(
            f"照合結果: {VERDICTS[data['verdict']]}\n{state_text}"
        )
        self._message("")

    # -- helpers ----------------------------------------------------------------------------------

    def _message(self, text: str) -> None:
        self.query_one("#card-message", Static).update(text)

    def _show_tries(self, kind: PinKind) -> None:
        tries = self.tries.get(kind)
        text = "" if tries is None else ("ロック中" if tries == 0 else f"残り{tries}回")
        self.query_one(f"#tries-{kind.value}", Static).update(text)

    def blank(self) -> None:
        super().blank()
        self._card = None
        self.view = None
        for wid in ("#card-message", "#card-verdict"):
            self.query_one(wid, Static).update("")
        self.query_one("#card-compare", DataTable).clear(columns=True)
