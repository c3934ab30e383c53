"""統合端末 (the integrated terminal's shell): session life cycle, locks, requests, status bar.

The shell owns what every screen shares: the operator session, the idle timer (screen-saver
rule, seed-digest §4.5), the operator-card watch, the status bar and the one way screens talk to
the CS — `request`, which signs the body with the session key and runs the blocking call in a
thread worker that posts `Answered` / `Failed` back to the asking screen.

Locking blanks every screen's personal data (screens implement ``blank()``) before the lock
screen covers them, and tells the CS, so a request made while locked is refused there as well.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widget import Widget
from textual.worker import get_current_worker

from tui.backend import Backend
from tui.commands import TerminalCommands
from tui.errors import SESSION_CODES, ErrorInfo, describe
from tui.messages import Answered, CardRemoved, Failed, LoginStep
from tui.session import Session
from tui.widgets import Status, StatusBar

JST = timezone(timedelta(hours=9))
SESSION_ENDING = SESSION_CODES - {"session_locked"}


class TerminalApp(App[None]):
    """The 統合端末. Build it with `tui.app.build_app` (the CLI and the tests share it)."""

    CSS_PATH = "terminal.tcss"
    TITLE = "住基ネット 統合端末"
    COMMANDS = App.COMMANDS | {TerminalCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+l", "lock", "ロック", id="lock"),
        Binding("f12", "logout", "ログアウト", id="logout"),
        Binding("ctrl+q", "quit", "終了", id="quit", priority=True),
    ]

    def __init__(
        self,
        backend: Backend,
        *,
        terminal_id: str,
        municipality: tuple[str, str],
        idle_lock_seconds: float,
        cards_dir: Any,
        clock: Callable[[], float] = time.time,
        watch_card: bool = True,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.terminal_id = terminal_id
        self.municipality = municipality
        self.idle_lock_seconds = idle_lock_seconds
        self.cards_dir = cards_dir
        self.clock = clock
        self.watch_card = watch_card
        self.session: Session | None = None
        self.locked = False
        self.last_activity = clock()
        self.status = Status(terminal=terminal_id)
        self.errors: list[ErrorInfo] = []
        """Every error shown, newest last (tests assert on it)."""

    # -- life cycle ---------------------------------------------------------------------------

    def on_mount(self) -> None:
        from tui.screens.login import LoginScreen

        self.push_screen(LoginScreen())
        self.set_interval(1.0, self.tick)
        self.refresh_status()
        self._ping()

    @work(thread=True, exit_on_error=False, group="ping")
    def _ping(self) -> None:
        self.backend.ping()
        self.call_from_thread(self.refresh_status)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.MouseDown | events.Paste):
            self.last_activity = self.clock()
        await super().on_event(event)

    def tick(self) -> None:
        """Every second: the clock on the status bar and the idle lock."""
        self.refresh_status()
        if (
            self.session is not None
            and not self.locked
            and self.clock() - self.last_activity >= self.idle_lock_seconds
        ):
            self.lock("idle")

    def refresh_status(self) -> None:
        s = self.status
        if self.session is None:
            s.operator = "未ログイン"
        else:
            s.operator = f"{self.session.name}（{self.session.operator_id}）" + (
                " ロック中" if self.locked else ""
            )
        s.broker = {True: "接続", False: "未接続", None: "未確認"}[self.backend.broker_ok]
        s.clock = datetime.fromtimestamp(self.clock(), JST).strftime("%Y-%m-%d %H:%M")
        for screen in self.screen_stack:
            for bar in screen.query(StatusBar):
                bar.show(s)

    def set_card_status(self, text: str) -> None:
        self.status.cards = f"操作者カード: {text}"
        self.refresh_status()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # hidden, not just disabled, when there is no session to lock or end
        if action == "lock":
            return self.session is not None and not self.locked
        if action == "logout":
            return self.session is not None
        return True

    # -- errors -------------------------------------------------------------------------------

    def show_error(self, info: ErrorInfo) -> None:
        from tui.screens.error import ErrorDialog

        self.errors.append(info)
        self.push_screen(ErrorDialog(info))

    # -- requests -----------------------------------------------------------------------------

    def request(
        self,
        requester: Widget,
        tag: str,
        message_type: str,
        body: dict[str, Any],
        *,
        task: str,
        reason: str,
    ) -> None:
        """Send a signed operator request; the answer comes back to ``requester`` as a message."""
        if self.session is None or self.locked:
            requester.post_message(
                Failed(
                    tag,
                    ErrorInfo(
                        "ログインしていません", "セッションがありません。", "ログインしてください。"
                    ),
                )
            )
            return
        self._request(self.session, requester, tag, message_type, body, task, reason)

    @work(thread=True, exit_on_error=False, group="rpc")
    def _request(
        self,
        session: Session,
        requester: Widget,
        tag: str,
        message_type: str,
        body: dict[str, Any],
        task: str,
        reason: str,
    ) -> None:
        try:
            data = self.backend.signed(session, message_type, body, task=task, reason=reason)
        except Exception as exc:
            info = describe(exc)
            self.call_from_thread(self._request_failed, requester, tag, info)
            return
        requester.post_message(Answered(tag, data))
        self.call_from_thread(self.refresh_status)

    def _request_failed(self, requester: Widget, tag: str, info: ErrorInfo) -> None:
        requester.post_message(Failed(tag, info))
        self.refresh_status()
        if info.code == "session_locked":
            self.lock("cs")
        elif info.code in SESSION_ENDING:
            self.end_session(send_logout=False)
            self.show_error(info)

    # -- login, lock, unlock, logout ----------------------------------------------------------

    def start_login(self, screen: Screen[Any], *, resume: bool = False) -> None:
        self._login(screen, self.session if resume else None)

    @work(thread=True, exit_on_error=False, exclusive=True, group="login")
    def _login(self, screen: Screen[Any], resume: Session | None) -> None:
        try:
            session = self.backend.login(
                resume=resume, on_step=lambda step: screen.post_message(LoginStep(step))
            )
        except Exception as exc:
            screen.post_message(Failed("login", describe(exc)))
            self.call_from_thread(self.refresh_status)
            return
        self.call_from_thread(self._logged_in, session, resume is not None)

    def _logged_in(self, session: Session, resumed: bool) -> None:
        from tui.screens.menu import MenuScreen

        self.session = session
        self.last_activity = self.clock()
        self.set_card_status("挿入中")
        if resumed:
            self.locked = False
            self.pop_screen()  # the lock screen
        else:
            self.switch_screen(MenuScreen())
        if self.watch_card:
            self._watch_card()
        self.refresh_status()

    @work(thread=True, exit_on_error=False, exclusive=True, group="card-watch")
    def _watch_card(self) -> None:
        worker = get_current_worker()
        reader = self.backend.card_reader
        while not worker.is_cancelled:
            if reader.wait_removed(0.5):
                if not worker.is_cancelled:
                    self.post_message(CardRemoved())
                return

    @on(CardRemoved)
    def _card_removed(self) -> None:
        self.set_card_status("なし")
        self.lock("card")

    def action_lock(self) -> None:
        self.lock("manual")

    def lock(self, why: str) -> None:
        """Blank every screen's personal data, cover them with the lock screen, tell the CS."""
        from tui.screens.lock import LockScreen

        if self.session is None or self.locked:
            return
        self.locked = True
        self.workers.cancel_group(self, "card-watch")
        for screen in self.screen_stack:
            blank = getattr(screen, "blank", None)
            if blank is not None:
                blank()
        self.push_screen(LockScreen(why))
        self._tell_cs(self.session, "cs.op.lock", "画面ロック")
        self.refresh_status()

    def action_logout(self) -> None:
        if self.session is not None:
            self.end_session(send_logout=True)

    def end_session(self, *, send_logout: bool) -> None:
        """Back to the login screen; the session key is dropped with the session."""
        from tui.screens.login import LoginScreen

        session, self.session = self.session, None
        self.locked = False
        self.workers.cancel_group(self, "card-watch")
        for screen in self.screen_stack:
            blank = getattr(screen, "blank", None)
            if blank is not None:
                blank()
        if session is not None and send_logout:
            self._tell_cs(session, "cs.op.logout", "ログアウト")
        while len(self.screen_stack) > 2:
            self.pop_screen()
        self.switch_screen(LoginScreen())
        self.refresh_status()

    @work(thread=True, exit_on_error=False, group="session")
    def _tell_cs(self, session: Session, message_type: str, reason: str) -> None:
        # best effort: the CS locks an idle session by itself, and refuses a closed one
        with contextlib.suppress(Exception):
            self.backend.signed(session, message_type, {}, task="操作者認証", reason=reason)
        self.call_from_thread(self.refresh_status)

    # -- navigation ---------------------------------------------------------------------------

    def open_task(self, task_id: str) -> None:
        """Open a menu entry (also what the command palette calls)."""
        from tui.screens.menu import MENU

        if self.session is None or self.locked:
            return
        for entry in MENU:
            if entry.id == task_id and entry.factory is not None:
                if not self.session.allows(entry.permission):
                    self.show_error(
                        ErrorInfo(
                            "操作権限がありません",
                            f"「{entry.label}」の操作権限が付与されていません。",
                            "操作者管理者に操作権限の付与を依頼してください。",
                            "forbidden",
                        )
                    )
                    return
                self.push_screen(entry.factory())
                return
