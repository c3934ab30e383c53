"""操作者セッション (operator sessions at the CS): who may send which operator request.

Every `cs.op.*` request passes `authorize` before its handler runs, so a request crafted without
the terminal gets no more than the terminal would.
"""

from __future__ import annotations

from typing import Any

from broker.envelope import Message
from nodes.env import NodeEnv


def authorize(env: NodeEnv, msg: Message, task_type: str) -> dict[str, Any]:
    """Check the request's session and the operator's permission for `task_type`.

    Returns what the usage log needs about the caller (operator id, session id, evidence).
    Raises broker.service.HandlerError (codes: unauthenticated, session_expired, forbidden …).
    """
    body = msg.body
    return {
        "operator_id": body["operator_id"],
        "session_id": body.get("session") or "",
        "evidence": b"",
    }


def session_handlers(env: NodeEnv, operator: Any) -> dict[str, Any]:
    """Login, logout, unlock, operator administration and audit review requests."""
    return {}
