"""市町村CSのカード関連処理 (the CS's card functions): CS-7, CS-8 and the card identity check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nodes.env import NodeEnv


def card_handlers(env: NodeEnv, operator: Callable[..., Any]) -> dict[str, Any]:
    """Handlers the CS adds for cards; `operator(type, fn)` wraps an operator request so that
    it is usage-logged (fn returns (reply data, usage-log target))."""
    return {}
