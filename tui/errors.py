"""エラー表示 (error texts): every failure a terminal meets, as what happened and what to do.

Headless: workers turn exceptions into `ErrorInfo` in their thread and post it; the error
dialog only renders it. Codes come from the CS's refusals (nodes/cs_sessions.py and the node
handlers), the card error tree and the broker error tree.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.errors import BrokerError, BrokerUnavailable, RemoteError, RpcTimeout
from tui.card.errors import CardError
from tui.sensor import SensorError
from tui.session import LoginRefused

HINTS: dict[str, str] = {
    "unauthenticated": "操作者カードを挿入し、生体認証でログインし直してください。",
    "session_expired": "セッションの有効期間が過ぎました。ログインし直してください。",
    "session_locked": "操作者カードと生体認証でロックを解除してください。",
    "revoked": "操作権限が失効しています。操作者管理者に確認してください。",
    "forbidden": "この事務を行うには、操作者管理者に操作権限の付与を依頼してください。",
    "bad_signature": "ログインし直してください。続く場合は管理者に連絡してください。",
    "task_reason": "事務種別と処理事由を入力してから実行してください。",
    "duplicate": "別の操作者IDを指定してください。",
    "unknown_operator": "操作者IDを確認してください。",
    "unknown_task": "操作権限と事務の対応表にある事務を選んでください。",
    "bad_operator_id": "操作者IDは英数字と . _ - の32文字以内で指定してください。",
    "internal": "システム管理者に連絡してください。",
}
DEFAULT_HINT = "内容を確認して、もう一度お試しください。"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What the error dialog shows; ``code`` is for tests and logs."""

    title: str
    what: str
    todo: str
    code: str = "error"


def describe(exc: BaseException) -> ErrorInfo:
    """The operator-facing description of ``exc`` (never a PIN, sample or 個人番号)."""
    if isinstance(exc, LoginRefused):
        return ErrorInfo(
            exc.title, "ログインが拒否されました。", exc.hint or DEFAULT_HINT, exc.code
        )
    if isinstance(exc, RemoteError):
        return ErrorInfo(
            exc.title or "処理できません",
            f"市町村CSが要求を受け付けませんでした（{exc.code}）。",
            HINTS.get(exc.code, DEFAULT_HINT),
            exc.code,
        )
    if isinstance(exc, RpcTimeout):
        return ErrorInfo(
            "市町村CSが応答しません",
            f"{exc.seconds:.0f}秒以内に応答がありませんでした。",
            "しばらく待ってから再度お試しください。続く場合はシステム管理者に連絡してください。",
            "timeout",
        )
    if isinstance(exc, BrokerUnavailable):
        return ErrorInfo(
            "ネットワークに接続できません",
            "メッセージ基盤（RabbitMQ）に接続できませんでした。",
            "juki up でアプライアンスが起動しているか確認してください。",
            "broker_unavailable",
        )
    if isinstance(exc, BrokerError):
        return ErrorInfo(
            getattr(exc, "title", "通信エラー"), str(exc)[:200], DEFAULT_HINT, "broker_error"
        )
    if isinstance(exc, CardError):
        return ErrorInfo(
            exc.title,
            exc.message,
            "操作者カードを読取機（スロット2）に挿入し直してください。",
            exc.code,
        )
    if isinstance(exc, SensorError):
        return ErrorInfo(exc.title, "生体センサーから読み取れませんでした。", exc.hint, "sensor")
    return ErrorInfo(
        "予期しないエラー",
        f"{type(exc).__name__} が発生しました。",
        "システム管理者に連絡してください。",
        "internal",
    )


SESSION_CODES = frozenset(
    {"session_locked", "revoked", "unauthenticated", "session_expired", "bad_signature"}
)
"""Refusals about the session itself: the shell handles them (lock or back to login)."""
