"""業務メニュー (task menu): the tasks the operator's granted permissions open."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Label, OptionList
from textual.widgets.option_list import Option

from tui.widgets import StatusBar

if TYPE_CHECKING:
    from tui.shell import TerminalApp


def _admin() -> Screen[Any]:
    from tui.screens.admin import AdminScreen

    return AdminScreen()


def _search() -> Screen[Any]:
    from tui.screens.search import SearchScreen

    return SearchScreen()


def _national() -> Screen[Any]:
    from tui.screens.national import NationalQueryScreen

    return NationalQueryScreen()


def _tokurei() -> Screen[Any]:
    from tui.screens.tokurei import TokureiScreen

    return TokureiScreen()


def _code_change() -> Screen[Any]:
    from tui.screens.code_change import CodeChangeScreen

    return CodeChangeScreen()


def _statistics() -> Screen[Any]:
    from tui.screens.statistics import StatisticsScreen

    return StatisticsScreen()


def _card_check() -> Screen[Any]:
    from tui.screens.card_check import CardCheckScreen

    return CardCheckScreen()


def _card_events() -> Screen[Any]:
    from tui.screens.card_events import CardEventsScreen

    return CardEventsScreen()


def _destinations() -> Screen[Any]:
    from tui.screens.destinations import DestinationsScreen

    return DestinationsScreen()


def _consistency() -> Screen[Any]:
    from tui.screens.consistency import ConsistencyScreen

    return ConsistencyScreen()


def _correction_propose() -> Screen[Any]:
    from tui.screens.corrections import CorrectionProposeScreen

    return CorrectionProposeScreen()


def _correction_approve() -> Screen[Any]:
    from tui.screens.corrections import CorrectionApproveScreen

    return CorrectionApproveScreen()


def _audit() -> Screen[Any]:
    from tui.screens.audit import AuditScreen

    return AuditScreen()


@dataclass(frozen=True)
class Entry:
    id: str
    label: str
    permission: str
    """The message type the entry's first request needs (the CS checks it again)."""
    help: str
    factory: Callable[[], Screen[Any]] | None = None
    """None: the screen comes with issue 6 (shown, not selectable)."""


MENU: tuple[Entry, ...] = (
    Entry("search", "本人確認情報検索", "cs.op.search", "4情報で本人確認情報を検索", _search),
    Entry(
        "card_check",
        "本人確認（カード）",
        "cs.op.card.check",
        "個人番号カードによる本人確認",
        _card_check,
    ),
    Entry(
        "card_events",
        "カード交付・廃止・回収・一時停止解除・返還",
        "cs.op.card.event",
        "個人番号カードの交付と状態の変更",
        _card_events,
    ),
    Entry("national", "全国サーバ照会", "cs.op.national_query", "全国サーバへの照会", _national),
    Entry("tokurei", "特例転入", "cs.op.pending_moveouts", "転出証明書情報による転入", _tokurei),
    Entry(
        "code_change",
        "住民票コード変更",
        "cs.op.code_candidates",
        "住民票コードの変更",
        _code_change,
    ),
    Entry("statistics", "統計", "cs.op.statistics", "更新件数の集計", _statistics),
    Entry(
        "destinations",
        "送付先情報通知",
        "cs.op.destinations",
        "送付先情報の受信・送付・受領確認・消去の件数",
        _destinations,
    ),
    Entry(
        "consistency",
        "整合性確認",
        "cs.op.consistency.status",
        "都道府県サーバ・全国サーバとの本人確認情報の整合",
        _consistency,
    ),
    Entry(
        "correction_propose",
        "職権修正（入力）",
        "cs.op.correction.propose",
        "本人確認情報の訂正案を入力",
        _correction_propose,
    ),
    Entry(
        "correction_approve",
        "職権修正（承認）",
        "cs.op.correction.approve",
        "別の操作者が入力した訂正案の承認・却下",
        _correction_approve,
    ),
    Entry("admin", "操作者管理", "cs.op.admin.operators", "操作者・権限・生体・カード", _admin),
    Entry(
        "audit", "監査（使用履歴の確認）", "cs.op.audit.usage", "使用履歴と提供記録の確認", _audit
    ),
)


class MenuScreen(Screen[None]):
    """Arrow keys and Enter; entries the session does not allow are not listed."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "開く", id="menu.open", show=False)
    ]

    @property
    def terminal(self) -> TerminalApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        session = self.terminal.session
        yield Label("業務メニュー（↑↓で選択、Enterで開く、Ctrl+Pでコマンド検索）", id="menu-title")
        options = []
        for e in MENU:
            if session is None or not session.allows(e.permission):
                continue
            suffix = "" if e.factory is not None else "（準備中）"
            options.append(
                Option(f"{e.label}{suffix}  — {e.help}", id=e.id, disabled=e.factory is None)
            )
        yield OptionList(*options, id="menu-list")
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self.terminal.refresh_status()
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.terminal.open_task(event.option.id)

    def on_screen_resume(self) -> None:
        self.terminal.refresh_status()
