"""窓口事務の画面の共通部分 (counter-task screen base): 事務種別 and 処理事由 first, then requests.

Every counter task asks why before it runs (seed-digest §4.3: the usage log keeps user ID, time,
事務種別 and 処理事由 for ever). `TaskScreen` asks for both in `TaskReasonDialog` as soon as it
is mounted — cancelling returns to the menu — keeps them, and sends every request with them
through ``self.call``. Refusals come back as `Failed` and are shown in the error dialog with the
CS's title and, for a seed rule such as V-7, what the rule says and what to do, in Japanese.

The CS decides: screens may check a rule on the client to explain it early, but they still send
the request, so what the CS refuses (and logs) is the truth.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import Button, DataTable, Footer, Input, Label, Select, Static

from tui.errors import SESSION_CODES, ErrorInfo
from tui.messages import Answered, Failed
from tui.widgets import StatusBar

if TYPE_CHECKING:
    from tui.shell import TerminalApp

CODE_RE = r"[0-9]{11}"
"""住民票コード on the wire (nodes/messages.py CODE)."""
NUMBER_RE = r"[0-9]{12}"
"""個人番号 on the wire."""
DATE_RE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
"""Dates on the wire (YYYY-MM-DD)."""

BUSY = "問合せ中…"

RULES: dict[str, tuple[str, str]] = {
    "V-1": (
        "入力した項目の形式が正しくありません（フォーマットチェック）。",
        "日付は YYYY-MM-DD、ふりがなはかなで入力してください。",
    ),
    "V-7": (
        "本人確認情報の検索には、性別を除く2情報以上の指定が必要です"
        "（氏名と住所、または氏名と生年月日）。不正な目的でのデータベース構築を防ぐための規則です。",
        "氏名に加えて、住所または生年月日を入力してください。性別は絞り込みにだけ使えます。",
    ),
    "V-12": (
        "職権修正は、入力した操作者以外の者が確認しなければ反映されません。",
        "本人確認情報管理責任者の権限を持つ別の操作者に承認を依頼してください。",
    ),
    "not_found": (
        "指定された住民票コードの住民は、この市町村CSに見つかりませんでした。",
        "住民票コードを確認してください。",
    ),
    "not_offered": (
        "指定された住民票コードは、機構からこの住民のために指定されたコードではありません。",
        "候補を取得し直し、一覧から選んでください。",
    ),
    "no_certificate": (
        "この住民の転出証明書情報を受け取っていません（または消去されています）。",
        "転出証明書情報の一覧を再読込し、転出地に確認してください。",
    ),
    "upstream_timeout": (
        "都道府県サーバまたは全国サーバが時間内に応答しませんでした。",
        "しばらく待ってから再度お試しください。",
    ),
}
"""Rule id or refusal code → (what it means, what to do), shown in the error dialog."""


def explain(error: ErrorInfo) -> ErrorInfo:
    """``error`` with the rule's explanation when its code is a rule we know (V-7 …)."""
    rule = RULES.get(error.code)
    if rule is None:
        return error
    what, todo = rule
    label = f"（{error.code}）" if error.code.startswith("V-") else ""
    return replace(error, what=f"{what}{label}", todo=todo)


class TaskReasonDialog(ModalScreen[tuple[str, str] | None]):
    """事務種別 and 処理事由 — both required; Escape cancels (the task screen then closes)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "取消", id="reason.cancel"),
        Binding("ctrl+s", "submit", "開始", id="reason.submit"),
    ]
    DEFAULT_CSS = """
    TaskReasonDialog { align: center middle; }
    #reason-box { width: 70; height: auto; padding: 1 2; border: round $primary;
                  background: $surface; }
    #reason-title { text-style: bold; }
    #reason-help { color: $text-muted; margin-bottom: 1; }
    #reason-error { color: $error; height: auto; }
    #reason-ok { margin-top: 1; }
    """

    def __init__(
        self, title: str, tasks: Sequence[str], default_task: str, reasons: Sequence[str] = ()
    ) -> None:
        super().__init__()
        self.title_text = title
        self.tasks = list(dict.fromkeys([default_task, *tasks])) if default_task else list(tasks)
        self.default_task = default_task
        self.reasons = tuple(reasons)

    def compose(self) -> ComposeResult:
        with Vertical(id="reason-box"):
            yield Label(f"{self.title_text} — 事務種別と処理事由", id="reason-title")
            yield Static(
                "使用履歴に操作者・端末とともに記録されます。どちらも必須です。", id="reason-help"
            )
            yield Label("事務種別")
            yield Select[str](
                [(t, t) for t in self.tasks],
                value=self.default_task if self.default_task in self.tasks else Select.BLANK,
                prompt="事務種別を選択",
                id="reason-task",
            )
            yield Label("処理事由")
            hint = "、".join(self.reasons[:3])
            yield Input(
                placeholder=f"例: {hint}" if hint else "処理事由（例: 窓口での届出）",
                id="reason-text",
                max_length=200,
            )
            yield Static("", id="reason-error")
            yield Button("開始 (Enter)", id="reason-ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#reason-text", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
        task = self.query_one("#reason-task", Select).value
        reason = self.query_one("#reason-text", Input).value.strip()
        missing = []
        if not isinstance(task, str) or not task.strip():
            missing.append("事務種別")
        if not reason:
            missing.append("処理事由")
        if missing:
            self.query_one("#reason-error", Static).update(
                "・".join(missing) + "を入力してください。"
            )
            return
        assert isinstance(task, str)
        self.dismiss((task, reason))

    @on(Input.Submitted, "#reason-text")
    @on(Button.Pressed, "#reason-ok")
    def _submit(self) -> None:
        self.action_submit()


class TaskScreen(Screen[None]):
    """Base of every counter-task screen.

    Subclasses set ``TASK`` (the 事務 of the 対応表 offered first), ``HEADING`` (the heading),
    optionally ``REASONS`` (suggested 処理事由), compose their widgets in ``compose_body`` and
    override ``ready`` (reasons given), ``answered`` (a reply) and, rarely, ``failed``.
    ``blank`` clears personal data on lock and logout; subclasses extend it with ``super()``.
    """

    TASK: ClassVar[str] = ""
    HEADING: ClassVar[str] = ""
    REASONS: ClassVar[tuple[str, ...]] = ()
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "戻る", id="task.back"),
    ]
    DEFAULT_CSS = """
    TaskScreen #task-head { height: 1; margin: 0 1; text-style: bold; }
    TaskScreen #task-why { height: 1; margin: 0 1; color: $text-muted; }
    TaskScreen #task-state { height: 1; margin: 0 1; color: $accent; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.task_kind: str | None = None
        """事務種別, set by the dialog (None until given)."""
        self.reason: str | None = None
        """処理事由, set by the dialog (None until given)."""
        self.pending: set[str] = set()
        """Tags of requests sent and not yet answered."""
        self.state_text = ""
        """What the status line says (tests read it)."""

    @property
    def terminal(self) -> TerminalApp:
        return self.app  # type: ignore[return-value]

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Label(self.HEADING, id="task-head")
        yield Static("", id="task-why")
        yield from self.compose_body()
        yield Static("", id="task-state")
        yield StatusBar()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        """The task's own widgets (between the heading and the status line)."""
        yield from ()

    def on_mount(self) -> None:
        self.terminal.refresh_status()
        self.ask_reason()

    def on_screen_resume(self) -> None:
        self.terminal.refresh_status()

    # -- 事務種別 / 処理事由 ----------------------------------------------------------------------

    def ask_reason(self) -> None:
        """Open the dialog; the screen works only once both are given."""
        session = self.terminal.session
        tasks = session.tasks if session is not None else ()
        self.app.push_screen(
            TaskReasonDialog(self.HEADING, tasks, self.TASK, self.REASONS), self._reason_given
        )

    def _reason_given(self, answer: tuple[str, str] | None) -> None:
        if answer is None:
            self.dismiss()
            return
        self.task_kind, self.reason = answer
        self.query_one("#task-why", Static).update(
            f"事務種別: {self.task_kind} ／ 処理事由: {self.reason}"
        )
        self.ready()

    def ready(self) -> None:
        """事務種別 and 処理事由 are known: load what the screen starts with, focus its input."""

    # -- requests -----------------------------------------------------------------------------

    def call(
        self,
        tag: str,
        message_type: str,
        body: dict[str, Any],
        *,
        requester: Widget | None = None,
    ) -> None:
        """Send a signed request with this screen's 事務種別 and 処理事由.

        The answer arrives as `Answered` / `Failed` with ``tag`` at ``requester`` (default: the
        screen, where it goes to ``answered`` / ``failed``; messages from a widget bubble up to
        the screen unless the widget stops them).
        """
        if self.task_kind is None or self.reason is None:
            self.show_error(
                ErrorInfo(
                    "事務種別・処理事由がありません",
                    "事務種別と処理事由が入力されていません。",
                    "事務種別と処理事由を入力してから実行してください。",
                    "task_reason",
                )
            )
            return
        self.pending.add(tag)
        self.set_state(BUSY)
        self.terminal.request(
            requester or self, tag, message_type, body, task=self.task_kind, reason=self.reason
        )

    def valid(self, value: str, pattern: str, label: str, example: str) -> bool:
        """Whether ``value`` has the wire format ``pattern`` (a regex); if not, say so (V-1).

        Formats are checked before sending because the wire schema refuses a malformed body
        outright; rules about content (V-7 …) are left to the CS.
        """
        if re.fullmatch(pattern, value):
            return True
        self.show_error(
            ErrorInfo(
                f"{label}の形式が正しくありません",
                f"「{label}」に入力された値は形式チェック（V-1）を通りません。",
                f"{example} の形式で入力してください。",
                "V-1",
            )
        )
        return False

    def set_state(self, text: str) -> None:
        """The one-line status under the task's widgets (progress, counts, outcome)."""
        self.state_text = text
        for state in self.query("#task-state"):
            if isinstance(state, Static):
                state.update(text)

    @on(Answered)
    def _on_answered(self, message: Answered) -> None:
        message.stop()
        self.pending.discard(message.tag)
        if not self.pending and self.state_text == BUSY:
            self.set_state("")  # what the answer says replaces it; nothing else is left waiting
        self.answered(message.tag, message.data)

    @on(Failed)
    def _on_failed(self, message: Failed) -> None:
        message.stop()
        self.pending.discard(message.tag)
        self.set_state(f"処理できません: {message.error.title}")
        self.failed(message.tag, message.error)

    def answered(self, tag: str, data: dict[str, Any]) -> None:
        """A reply for the request sent with ``tag``."""

    def failed(self, tag: str, error: ErrorInfo) -> None:
        """A refusal or failure: shown in the error dialog (session refusals: the shell's job)."""
        if error.code in SESSION_CODES:
            return  # the shell locks or ends the session and says why
        self.show_error(explain(error))

    def show_error(self, error: ErrorInfo) -> None:
        self.terminal.show_error(error)

    # -- lock, navigation ---------------------------------------------------------------------

    def blank(self) -> None:
        """Clear personal data (lock, logout): every task widget that can blank itself, every
        table and every input marked ``personal``."""
        for widget in self.query("*"):
            blank = getattr(widget, "blank", None)
            if blank is not None and widget is not self:
                blank()
            elif isinstance(widget, DataTable):
                widget.clear()
        for field in self.query("Input.personal"):
            if isinstance(field, Input):
                field.value = ""

    def action_back(self) -> None:
        self.dismiss()
