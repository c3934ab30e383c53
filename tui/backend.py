"""端末の処理系 (the terminal's backend): RPC, card reader and sensor behind one object.

Every method blocks and is meant for a Textual thread worker. Each call opens its own RpcClient
in the calling thread and closes it there: pika connections never cross threads, and a worker
thread lives only as long as its call.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from broker.errors import BrokerUnavailable, RpcTimeout
from tui.sensor import BiometricSensor
from tui.session import CardReader, Session, login


class Client(Protocol):
    def call(
        self, recipient: str, type: str, body: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]: ...


ClientFactory = Callable[[], AbstractContextManager[Client]]


class Backend:
    """What the screens' workers call.

    Args:
        clients: makes a fresh RpcClient (a context manager) acting as this terminal.
        cs: the terminal's municipal CS.
        card_reader: the operator-card slot.
        sensor: the biometric sensor.
    """

    def __init__(
        self,
        clients: ClientFactory,
        cs: str,
        terminal_id: str,
        card_reader: CardReader,
        sensor: BiometricSensor,
    ) -> None:
        self.clients = clients
        self.cs = cs
        self.terminal_id = terminal_id
        self.card_reader = card_reader
        self.sensor = sensor
        self.broker_ok: bool | None = None

    def _track(self, fn: Callable[[Client], Any]) -> Any:
        try:
            with self.clients() as client:
                result = fn(client)
        except (BrokerUnavailable, RpcTimeout):
            self.broker_ok = False
            raise
        self.broker_ok = True
        return result

    def call(self, message_type: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._track(lambda c: c.call(self.cs, message_type, body))  # type: ignore[no-any-return]

    def signed(
        self, session: Session, message_type: str, body: dict[str, Any], *, task: str, reason: str
    ) -> dict[str, Any]:
        return self.call(message_type, session.sign(message_type, body, task=task, reason=reason))

    def login(
        self, *, resume: Session | None = None, on_step: Callable[[str], None] = lambda s: None
    ) -> Session:
        def run(client: Client) -> Session:
            with self.card_reader.open() as card:
                return login(
                    lambda to, t, b: client.call(to, t, b),
                    self.cs,
                    card,
                    self.sensor,
                    resume=resume,
                    on_step=on_step,
                )

        return self._track(run)  # type: ignore[no-any-return]

    def ping(self) -> bool:
        try:
            self._track(lambda c: c.call(self.cs, "ping", {}, 3.0))
        except Exception:
            self.broker_ok = False
        return bool(self.broker_ok)
