"""コマンドパレット (command palette): every menu entry the session allows, plus lock/logout."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from tui.shell import TerminalApp


class TerminalCommands(Provider):
    """Search the tasks open to the logged-in operator."""

    def _entries(self) -> list[tuple[str, Any, str]]:
        from tui.screens.menu import MENU

        app: TerminalApp = self.app  # type: ignore[assignment]
        session = app.session
        if session is None or app.locked:
            return []
        out: list[tuple[str, Any, str]] = [
            (e.label, partial(app.open_task, e.id), e.help)
            for e in MENU
            if e.factory is not None and session.allows(e.permission)
        ]
        out.append(("画面ロック", app.action_lock, "画面をロックします"))
        out.append(("ログアウト", app.action_logout, "セッションを終了します"))
        return out

    async def discover(self) -> Hits:
        for label, callback, help_text in self._entries():
            yield DiscoveryHit(label, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for label, callback, help_text in self._entries():
            score = matcher.match(label)
            if score > 0:
                yield Hit(score, matcher.highlight(label), callback, help=help_text)
