"""個人番号カードの交付・廃止・回収・一時停止解除・返還 (T-10 / T-11, CS-8 card events).

交付 identifies the applicant first: the clerk types 氏名 and 生年月日 or 住所 from the documents
shown, the resident chooses the two 4-digit PINs, and ``cs.op.card.issue`` returns the chip's
contents, which this screen saves as a virtual-card image under ``var/cards/`` and shows the
``juki card insert`` line that puts it in the reader. The other events go through
``cs.op.card.event``; the CS checks them against 機構's state of the card first, so an
impossible one (一時停止解除 of a card that is not suspended …) is refused naming the card's
state, and that refusal is shown here as well as in the error dialog.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Input, Label, Select, Static

from store.cards import CARD_STATE_LABELS, CardEvent, CardState
from tui.card.image import image_from_dict, save_image
from tui.errors import ErrorInfo
from tui.screens.card_check import RESIDENT_SLOT
from tui.screens.task_base import TaskScreen

EVENTS = (
    CardEvent.ISSUE,
    CardEvent.SUSPEND,
    CardEvent.RELEASE,
    CardEvent.ABOLISH,
    CardEvent.COLLECT,
    CardEvent.RETURN,
)


def _state(value: str | None) -> str:
    return "不明" if value is None else CARD_STATE_LABELS[CardState(value)]


class CardEventsScreen(TaskScreen):
    """住民票コード, カード製造番号 and the event; for 交付 the documents and the new PINs."""

    TASK: ClassVar[str] = "カード関連事務"
    HEADING: ClassVar[str] = "個人番号カード 交付・一時停止・一時停止解除・廃止・回収・返還 — CS-8"
    REASONS: ClassVar[tuple[str, ...]] = ("窓口での交付", "紛失による一時停止の解除", "転出")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "run", "実行", id="card_events.run"),
    ]
    DEFAULT_CSS = """
    CardEventsScreen .ev-row { height: 3; margin: 0 1; }
    CardEventsScreen .ev-row Label { width: 16; padding-top: 1; }
    CardEventsScreen .ev-row Input { width: 1fr; }
    CardEventsScreen #ev-event { width: 30; }
    CardEventsScreen .ev-section { margin: 0 1; text-style: bold; }
    CardEventsScreen #ev-result { margin: 1 1; height: auto; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.image_path: Path | None = None
        """Where the last 交付's card image was saved (tests read it)."""
        self._issued: dict[str, Any] | None = None
        """A 交付 answer waiting for its output record before the image is written."""
        self.outcome: str = ""

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="ev-row"):
            yield Label("事象")
            yield Select[str](
                [(e.value, e.value) for e in EVENTS],
                value=CardEvent.ISSUE.value,
                allow_blank=False,
                id="ev-event",
            )
        with Horizontal(classes="ev-row"):
            yield Label("住民票コード")
            yield Input(max_length=11, restrict=r"[0-9]*", id="ev-code", classes="personal")
            yield Label("カード製造番号")
            yield Input(max_length=15, restrict=r"[0-9]*", id="ev-serial", classes="personal")
        yield Label("交付のみ: 本人確認書類の記載と、住民が設定する暗証番号", classes="ev-section")
        with Horizontal(classes="ev-row"):
            yield Label("氏名")
            yield Input(id="ev-name", classes="personal")
            yield Label("生年月日")
            yield Input(placeholder="YYYY-MM-DD", max_length=10, id="ev-birth", classes="personal")
        with Horizontal(classes="ev-row"):
            yield Label("住所")
            yield Input(id="ev-address", classes="personal")
        with Horizontal(classes="ev-row"):
            yield Label("券面入力補助用")
            yield Input(
                password=True,
                max_length=4,
                restrict=r"[0-9]*",
                id="ev-pin-kenhojo",
                classes="personal",
            )
            yield Label("住民基本台帳用")
            yield Input(
                password=True,
                max_length=4,
                restrict=r"[0-9]*",
                id="ev-pin-juki",
                classes="personal",
            )
        yield Static("", id="ev-result")

    def ready(self) -> None:
        self.query_one("#ev-code", Input).focus()

    def _value(self, wid: str) -> str:
        return self.query_one(wid, Input).value.strip()

    def _refuse_locally(self, what: str, todo: str) -> None:
        self.show_error(ErrorInfo("入力が不足しています", what, todo, "input"))

    def action_run(self) -> None:
        event = CardEvent(str(self.query_one("#ev-event", Select).value))
        code, serial = self._value("#ev-code"), self._value("#ev-serial")
        if len(code) != 11:
            self._refuse_locally(
                "住民票コード（11桁）が入力されていません。", "住民票コードを入力してください。"
            )
            return
        self._result(f"{event.value}を送信しています…")
        if event is CardEvent.ISSUE:
            pins = {"kenhojo": self._value("#ev-pin-kenhojo"), "juki": self._value("#ev-pin-juki")}
            if any(len(p) != 4 for p in pins.values()):
                self._refuse_locally(
                    "暗証番号（数字4桁）が2つとも入力されていません。",
                    "住民に券面事項入力補助用と住民基本台帳用の暗証番号を入力してもらってください。",
                )
                return
            presented = {
                k: v
                for k, v in (
                    ("name_kanji", self._value("#ev-name")),
                    ("birth_date", self._value("#ev-birth")),
                    ("address", self._value("#ev-address")),
                )
                if v
            }
            body: dict[str, Any] = {"resident_code": code, "pins": pins, "presented": presented}
            if serial:
                body["serial"] = serial
            self.call("issue", "cs.op.card.issue", body)
            return
        if len(serial) != 15:
            self._refuse_locally(
                "カード製造番号（15桁）が入力されていません。", "カード製造番号を入力してください。"
            )
            return
        self.call(
            "event",
            "cs.op.card.event",
            {"event": event.value, "serial": serial, "resident_code": code},
        )

    @on(Select.Changed, "#ev-event")
    def _event_changed(self) -> None:
        self._result("")

    def answered(self, tag: str, data: dict[str, Any]) -> None:
        if tag == "issue":
            # T-16: the card image holds the 個人番号 and PINs; its output is recorded at the CS
            # before the file exists
            self._issued = data
            self.call(
                "output",
                "cs.op.output",
                {"kind": "個人番号カードイメージ", "target": data["serial"], "medium": "media"},
            )
        elif tag == "output" and data.get("recorded") and self._issued is not None:
            data, self._issued = self._issued, None
            image = image_from_dict(data["image"])
            cards_dir = Path(self.terminal.cards_dir)
            cards_dir.mkdir(parents=True, exist_ok=True)
            path = cards_dir / f"card-{data['serial']}.json"
            save_image(path, image)
            self.image_path = path
            for wid in ("#ev-pin-kenhojo", "#ev-pin-juki"):
                self.query_one(wid, Input).value = ""
            self.query_one("#ev-serial", Input).value = data["serial"]
            self._result(
                f"交付しました: カード製造番号 {data['serial']}（{_state(data['state'])}、"
                f"有効期限 {data['expires']}）\n"
                f"カードイメージ: {path}\n"
                f"読取機に挿入: juki card insert {path} --slot {RESIDENT_SLOT}"
            )
        elif tag == "event":
            event = str(self.query_one("#ev-event", Select).value)
            if data["checked"]:
                self._result(
                    f"{event}を受け付けました: {_state(data['state_before'])} → "
                    f"{_state(data['state_after'])}（機構へ通知済み）"
                )
            else:
                self._result(
                    f"{event}を受け付けました。機構がカードの状態を返さなかったため、"
                    "状態を確認しないまま通知しました（機構側で再検査されます）。"
                )

    def failed(self, tag: str, error: ErrorInfo) -> None:
        if tag in ("issue", "event"):
            self._result(f"拒否されました（{error.code}）: {error.title}")
        super().failed(tag, error)

    def _result(self, text: str) -> None:
        self.outcome = text
        self.query_one("#ev-result", Static).update(text)

    def blank(self) -> None:
        super().blank()
        self._issued = None  # the image (個人番号, PINs) must not outlive a lock
        self._result("")
