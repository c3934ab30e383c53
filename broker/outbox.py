"""送信待ち中継 (the outbox relay): onward notices from the journal to RabbitMQ, with confirms.

Handlers only write outbox rows (in the same transaction as their state change); this thread
turns rows into messages. Each row is sealed when relayed, not when written: issued-at is now and
the deadline now + notice_ttl, with the msg_id stored in the row, so a notice that waited while
the broker was down is not refused as expired downstream, and a row relayed twice (the broker
vanished between publish and confirm) still carries one id that the recipient's inbox
de-duplicates.

Rows are read oldest first, published as one batch (persistent, mandatory) and marked sent only
after the broker confirmed them, so a crash or an unreachable broker never loses a row; it only
delays it. A row whose recipient has no queue (Unroutable) stays pending and is retried with
backoff while the rows behind it for other recipients go on. Per-recipient order is kept: rows
are published in sequence and RabbitMQ keeps a queue's order.

The relay owns its own AMQP connection and uses the journal from its own thread; the journal
implementation must allow that (store/journal.py and the SQLite test journal use one database
connection per thread).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from broker.amqp import AmqpConnection, Backoff
from broker.envelope import Header, Kind, Sealer
from broker.errors import BrokerError, BrokerUnavailable, KeyStoreError, Unroutable
from broker.journal import Journal
from broker.topology import Topology

log = logging.getLogger(__name__)


class OutboxRelay:
    """Relays a node's outbox. Run `run(stop)` on a thread of its own; `wake()` after commits.

    Args:
        journal: the node's journal (outbox_pending / outbox_mark_sent / outbox_depth).
        sealer: seals as `node_id`.
        publisher: a confirm-mode AmqpConnection owned by this relay (default: built from url).
        node_id: the sender of every relayed notice.
        notice_ttl: validity of a relayed notice (its deadline is relay time + this).
        batch: rows read, published and confirmed together.
    """

    def __init__(
        self,
        journal: Journal,
        sealer: Sealer,
        publisher: AmqpConnection | None = None,
        *,
        node_id: str,
        topology: Topology | None = None,
        url: str = "amqp://guest:guest@127.0.0.1:5672/%2F",
        notice_ttl: float = 30 * 24 * 3600.0,
        batch: int = 256,
        idle_poll: float = 0.05,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if publisher is None:
            if topology is None:
                raise ValueError("give a publisher or a topology")
            publisher = AmqpConnection(
                url, exchange=topology.exchange, name=f"juki-outbox-{node_id}", confirms=True
            )
        self.journal = journal
        self.node_id = node_id
        self._sealer = sealer
        self._conn = publisher
        self._ttl_ms = int(notice_ttl * 1000)
        self._batch = batch
        self._idle_poll = idle_poll
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._wake = threading.Event()
        self.relayed = 0
        self.unroutable = 0
        self.unsealable = 0
        self.last_error: str | None = None

    def wake(self) -> None:
        """Relay now rather than at the next poll (call after committing outbox rows)."""
        self._wake.set()

    def health(self) -> dict[str, Any]:
        try:
            depth: int | None = self.journal.outbox_depth()
        except Exception as exc:
            depth = None
            self.last_error = f"outbox depth: {exc!r}"
        return {
            "connected": self._conn.connected,
            "outbox_depth": depth,
            "relayed": self.relayed,
            "unroutable": self.unroutable,
            "unsealable": self.unsealable,
            "last_error": self.last_error,
        }

    def run(self, stop: threading.Event) -> None:
        delays = self._backoff.delays()
        try:
            while not stop.is_set():
                try:
                    self._conn.connect(retry_for=float("inf"), stop=stop)
                    sent, failed = self.relay_once()
                    if failed:
                        stop.wait(next(delays))
                        continue
                    delays = self._backoff.delays()
                    if sent == 0:
                        self._conn.poll()  # heartbeats while idle
                        if self._wake.wait(self._idle_poll):
                            self._wake.clear()
                except (BrokerUnavailable, BrokerError) as exc:
                    self.last_error = str(exc)
                    log.warning("%s outbox: %s", self.node_id, exc)
                    self._conn.close()
                    stop.wait(next(delays))
        finally:
            self._conn.close()

    def relay_once(self) -> tuple[int, int]:
        """One pass: publish up to `batch` pending rows; returns (sent, failed)."""
        entries = self.journal.outbox_pending(self._batch)
        if not entries:
            return 0, 0
        now_ms = int(self._clock() * 1000)
        deadline = now_ms + self._ttl_ms
        tags: list[tuple[int, int]] = []
        for e in entries:
            header = Header(
                1,
                e.msg_id,
                Kind.NOTICE,
                e.type,
                self.node_id,
                e.recipient,
                now_ms,
                deadline,
                e.correlation_id,
            )
            try:
                wire = self._sealer.seal(header, e.body)
            except (ValueError, KeyStoreError) as exc:
                # The recipient left the trust file, or the row is malformed: keep the row for
                # an operator, let the rows behind it go.
                self.unsealable += 1
                self.last_error = f"outbox row {e.seq} cannot be sealed: {exc}"
                log.error("%s outbox: %s", self.node_id, self.last_error)
                continue
            tag = self._conn.publish(e.recipient, wire, persistent=True, mandatory=True, wait=False)
            tags.append((tag, e.seq))
        failures = self._conn.wait_confirms()
        sent = [seq for tag, seq in tags if tag not in failures]
        if sent:
            with self.journal.atomic():
                self.journal.outbox_mark_sent(sent, self._clock())
            self.relayed += len(sent)
        if failures:
            self.unroutable += sum(isinstance(f, Unroutable) for f in failures.values())
            self.last_error = str(next(iter(failures.values())))
            log.warning(
                "%s outbox: %d rows not accepted: %s", self.node_id, len(failures), self.last_error
            )
        return len(sent), len(failures) + (len(entries) - len(tags))
