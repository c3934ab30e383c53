"""配信基盤のエラー (the wire's error tree).

Every error carries a short human title (shown in the terminal); refusals carry a stable reason
code that is logged, counted in health and attached to dead-lettered messages. Foreign exceptions
(pika, nacl, msgpack, zmq) are translated into these at the seam where they arise.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a received message was refused, in the order the receiver checks."""

    MALFORMED = "malformed"
    UNKNOWN_VERSION = "unknown_version"
    UNKNOWN_SENDER = "unknown_sender"
    NOT_FOR_ME = "not_for_me"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    FROM_FUTURE = "from_future"
    REPLAY = "replay"
    ROUTE_NOT_ALLOWED = "route_not_allowed"
    UNDECRYPTABLE = "undecryptable"
    SCHEMA = "schema"
    # not envelope checks, but refusals the runtime records the same way
    UNKNOWN_TYPE = "unknown_type"
    POISON = "poison"
    STALE = "stale"
    """A notice made longer ago than the inbox remembers applied ids: it can no longer be told
    apart from one already applied (broker/service.py, "Stale notices")."""
    UNROUTABLE = "unroutable"


class BrokerError(Exception):
    """Base of the wire's errors."""

    title = "通信エラー"


class Refused(BrokerError):
    """A received message failed a check; it is not applied and is recorded with `reason`."""

    title = "受信拒否"

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


class KeyStoreError(BrokerError):
    """Keys or the trust file are missing, unreadable or locked."""

    title = "鍵エラー"


class BrokerUnavailable(BrokerError):
    """RabbitMQ cannot be reached. CLI exit code 3."""

    title = "メッセージ基盤に接続できません"


class RpcTimeout(BrokerError):
    """No reply arrived before the request's deadline."""

    title = "応答がありません"

    def __init__(self, recipient: str, message_type: str, seconds: float) -> None:
        super().__init__(f"no reply from {recipient} to {message_type} within {seconds:.1f}s")
        self.recipient = recipient
        self.message_type = message_type
        self.seconds = seconds


class RemoteError(BrokerError):
    """The recipient answered with an error (a refusal or a business rule it enforced)."""

    title = "相手先でエラー"

    def __init__(self, code: str, message: str, title: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        if title:
            self.title = title


class Unroutable(BrokerError):
    """A notice could not be routed to any queue (mandatory publish returned it)."""

    title = "宛先がありません"
