"""操作者セッション（端末側）(the terminal's side of an operator session): login and signing.

Headless on purpose (no Textual): the app's workers call it, and so do tests that log in without
a screen. Login, in order (nodes/cs_sessions.py checks each step):

1. read the 操作者ID from the operator card (free read);
2. ask the CS for a one-time challenge (``cs.op.login_challenge``);
3. make a fresh Ed25519 session key; the card signs challenge + session public key (INTERNAL
   AUTHENTICATE), which is both proof of possession and a certificate for the session key;
4. capture a biometric sample;
5. ``cs.op.login`` → a session id. Every later request carries the session and the session key's
   signature over ``store.operators.command_message``.

The private session key lives only in this process's memory and is dropped at logout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from broker.crypto import Signer
from store.operators import card_certified_message, command_message
from tui.sensor import BiometricSensor

Call = Callable[[str, str, dict[str, Any]], dict[str, Any]]
"""(recipient, message type, body) → reply data; raises broker.errors.RemoteError on refusal."""

OPERATOR_SLOT = 1
"""The operator card goes into the second reader slot (the first is for residents' cards)."""
LOGIN_TASK = "操作者認証"


class LoginRefused(Exception):
    """The CS refused the login; ``title`` and ``hint`` go on the screen, ``code`` is stable."""

    def __init__(self, code: str, title: str, hint: str, locked_until: float | None = None):
        super().__init__(f"{code}: {title}")
        self.code = code
        self.title = title
        self.hint = hint
        self.locked_until = locked_until


class OperatorCard(Protocol):
    """An operator card in a reader (``tui.card.operator`` over a transport)."""

    def operator_id(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


class CardReader(Protocol):
    """The operator-card slot. Every method may block (call from a worker thread)."""

    name: str

    def present(self) -> bool: ...

    def wait_removed(self, timeout: float) -> bool: ...

    def open(self) -> AbstractContextManager[OperatorCard]: ...


# --- card implementations ------------------------------------------------------------------------


class _TransportCard:
    def __init__(self, transport: Any) -> None:
        self._t = transport

    def operator_id(self) -> str:
        from tui.card.operator import operator_card_id

        return operator_card_id(self._t)

    def sign(self, data: bytes) -> bytes:
        from tui.card.operator import sign_challenge

        return sign_challenge(self._t, data)


class PcscCardReader:
    """The operator card through pcscd (the real path; a vpcd virtual card in the emulation)."""

    def __init__(self, slot: int = OPERATOR_SLOT, *, connect_timeout: float = 2.0) -> None:
        from tui.card.constants import vpcd_reader_name

        self.slot = slot
        self.name = vpcd_reader_name(slot)
        self._timeout = connect_timeout

    def present(self) -> bool:
        from tui.card import pcsc
        from tui.card.errors import NoCard

        try:
            pcsc.wait_for_card(self.slot, 0.05)
        except NoCard:
            return False
        return True

    def wait_removed(self, timeout: float) -> bool:
        from tui.card import pcsc
        from tui.card.errors import CardError, ReaderUnavailable

        try:
            pcsc.wait_for_removal(self.slot, timeout)
        except ReaderUnavailable:
            return True  # no reader, no card: the session must lock
        except CardError:
            return False
        return True

    @contextmanager
    def open(self) -> Iterator[OperatorCard]:
        from tui.card.pcsc import PcscTransport

        with PcscTransport(self.slot, timeout=self._timeout) as transport:
            yield _TransportCard(transport)


class KeyCard:
    """An operator card held in memory (tests and scripted logins): the card's key, no reader."""

    name = "in-memory operator card"

    def __init__(self, operator_id: str, seed: bytes) -> None:
        self._id = operator_id
        self._seed = seed
        self.inserted = True

    def operator_id(self) -> str:
        return self._id

    def sign(self, data: bytes) -> bytes:
        from tui.card.operator import card_sign

        return card_sign(self._seed, data)

    def present(self) -> bool:
        return self.inserted

    def wait_removed(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.inserted and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self.inserted

    @contextmanager
    def open(self) -> Iterator[OperatorCard]:
        if not self.inserted:
            from tui.card.errors import NoCard

            raise NoCard()
        yield self


# --- the session ----------------------------------------------------------------------------------


@dataclass
class Session:
    """An open operator session as the terminal holds it."""

    cs: str
    operator_id: str
    session_id: str
    name: str
    tasks: tuple[str, ...]
    permissions: tuple[str, ...]
    expires_at: float
    idle_lock_seconds: float
    signer: Signer = field(repr=False)

    def sign(
        self, message_type: str, body: dict[str, Any], *, task: str = "", reason: str = ""
    ) -> dict[str, Any]:
        """``body`` with the OPERATOR fields and the session key's signature added."""
        out = dict(body)
        out.setdefault("task", task)
        out.setdefault("reason", reason)
        out["operator_id"] = self.operator_id
        out["session"] = self.session_id
        out.pop("signature", None)
        out["signature"] = self.signer.sign(command_message(message_type, out))
        return out

    def allows(self, message_type: str) -> bool:
        from store.operators import allows

        return allows(self.permissions, message_type)


def login(
    call: Call,
    cs: str,
    card: OperatorCard,
    sensor: BiometricSensor,
    *,
    resume: Session | None = None,
    on_step: Callable[[str], None] = lambda _step: None,
) -> Session:
    """Run the whole login (or unlock, with ``resume``) and return the session.

    Raises:
        LoginRefused: the CS said no (wrong card or biometric, locked out, revoked …).
        CardError, SensorError, BrokerError: a device or the network failed.
    """
    on_step("card")
    operator_id = card.operator_id()
    if resume is not None and operator_id != resume.operator_id:
        raise LoginRefused(
            "not_same_operator",
            "ロックした操作者本人ではありません",
            "ロックした操作者のカードを挿入してください。",
        )
    on_step("challenge")
    ch = call(cs, "cs.op.login_challenge", {"operator_id": operator_id})
    signer = Signer.generate()
    on_step("sign")
    card_signature = card.sign(card_certified_message(ch["challenge"], signer.verify_key))
    on_step("biometric")
    sample = sensor.capture(operator_id)
    on_step("verify")
    body: dict[str, Any] = {
        "operator_id": operator_id,
        "challenge_id": ch["challenge_id"],
        "session_key": signer.verify_key,
        "card_signature": card_signature,
        "features": [float(x) for x in sample.features],
    }
    if resume is not None:
        body["resume"] = resume.session_id
    answer = call(cs, "cs.op.login", body)
    if not answer.get("accepted"):
        raise LoginRefused(
            answer.get("code") or "refused",
            answer.get("title") or "ログインできません",
            answer.get("message") or "",
            answer.get("locked_until"),
        )
    return Session(
        cs=cs,
        operator_id=operator_id,
        session_id=answer["session"],
        name=answer.get("name") or operator_id,
        tasks=tuple(answer.get("tasks") or ()),
        permissions=tuple(answer.get("permissions") or ()),
        expires_at=float(answer.get("expires_at") or 0.0),
        idle_lock_seconds=float(answer.get("idle_lock_seconds") or 300.0),
        signer=signer,
    )
