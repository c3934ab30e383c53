"""送信待ち中継 (the outbox relay): onward notices from the journal to RabbitMQ, with confirms.

Handlers only write outbox rows (in the same transaction as their state change); this thread
turns rows into messages. Each row is sealed when relayed, not when written: issued-at is now and
the deadline now + notice_ttl, with the msg_id stored in the row, so a notice that waited while
the broker was down is not refused as expired downstream, and a row relayed twice (the broker
vanished between publish and confirm) still carries one id that the recipient's inbox
de-duplicates.

Rows are read oldest first, published as one batch (persistent, mandatory) and marked sent only
after the broker confirmed them, so a crash or an unreachable broker never loses a row; it only
delays it. Consecutive rows for one recipient travel as one `bundle` envelope (broker/bundle.py:
one signature, one publish and one confirm for up to `bundle_items` rows, each row keeping its
own id for the recipient's inbox). A row whose recipient has no queue (Unroutable) stays
pending and is retried with backoff while the rows behind it for other recipients go on.
Per-recipient order is kept: rows are published in sequence and RabbitMQ keeps a queue's order.

The relay owns its own AMQP connection and uses the journal from its own thread; the journal
implementation must allow that (store/journal.py and the SQLite test journal use one database
connection per thread).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from broker import bundle
from broker.amqp import AmqpConnection, Backoff
from broker.envelope import Header, Kind, Sealer
from broker.errors import BrokerError, BrokerUnavailable, KeyStoreError, Unroutable
from broker.ids import new_message_id
from broker.journal import Journal, OutboxEntry
from broker.schema import BUNDLE
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
        bundle_items: most rows for one recipient sealed into one `bundle` (1: never bundle).
        bundle_bytes: a bundle's largest wire; a bigger one is split in halves.
        idle_poll: how often an idle relay looks for rows nobody woke it for (written by
            another process, e.g. `juki consistency run --repair`); the node's own commits
            wake it at once. Every idle node polls, so this is a quarter second, not less.
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
        bundle_items: int = 256,
        bundle_bytes: int = 1 << 20,
        idle_poll: float = 0.25,
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
        self._bundle_items = max(1, min(bundle_items, bundle.BUNDLE_MAX_ITEMS))
        self._bundle_bytes = bundle_bytes
        self._idle_poll = idle_poll
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._wake = threading.Event()
        self.relayed = 0
        self.bundled = 0
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
            "bundled": self.bundled,
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
                        self.journal.outbox_write_marks()  # nothing to send: write them now
                        self._conn.poll()  # heartbeats while idle
                        if self._wake.wait(self._idle_poll):
                            self._wake.clear()
                except (BrokerUnavailable, BrokerError) as exc:
                    self.last_error = str(exc)
                    log.warning("%s outbox: %s", self.node_id, exc)
                    self._conn.close()
                    stop.wait(next(delays))
                except Exception as exc:
                    # The journal failed (store locked too long, disk error): the rows are still
                    # there, so back off and try again; a relay thread that died here would
                    # leave the node running with its onward notices silently stuck.
                    self.last_error = f"journal: {type(exc).__name__}: {exc}"
                    log.exception("%s outbox: journal failed; retrying", self.node_id)
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
        tags: list[tuple[int, list[int]]] = []
        for group in _groups(entries, self._bundle_items):
            for wire, seqs in self._seal(group, now_ms, deadline):
                tag = self._conn.publish(
                    group[0].recipient, wire, persistent=True, mandatory=True, wait=False
                )
                tags.append((tag, seqs))
        failures = self._conn.wait_confirms()
        sent = [seq for tag, seqs in tags if tag not in failures for seq in seqs]
        if sent:
            self.journal.outbox_mark_sent(sent, self._clock())
            self.relayed += len(sent)
        failed = sum(len(seqs) for tag, seqs in tags if tag in failures)
        if failures:
            self.unroutable += sum(isinstance(f, Unroutable) for f in failures.values())
            self.last_error = str(next(iter(failures.values())))
            log.warning(
                "%s outbox: %d rows not accepted: %s", self.node_id, failed, self.last_error
            )
        return len(sent), len(entries) - len(sent)  # not sent: unroutable or unsealable

    def _seal(
        self, group: list[OutboxEntry], now_ms: int, deadline: int
    ) -> Iterator[tuple[bytes, list[int]]]:
        """Wires for one recipient's consecutive rows: a plain notice for a single row, else a
        bundle — halved until it fits `bundle_bytes` — under a fresh id of its own."""
        first = group[0]
        if len(group) == 1:
            header = Header(
                1,
                first.msg_id,
                Kind.NOTICE,
                first.type,
                self.node_id,
                first.recipient,
                now_ms,
                deadline,
                first.correlation_id,
            )
            plaintext = bundle.packed_body(first)
        else:
            header = Header(
                1,
                new_message_id(),
                Kind.NOTICE,
                BUNDLE,
                self.node_id,
                first.recipient,
                now_ms,
                deadline,
            )
            plaintext = bundle.pack_wire(group)
        try:
            wire = self._sealer.seal_plaintext(header, plaintext)
        except (ValueError, TypeError, KeyStoreError) as exc:
            if len(group) > 1:  # find the row at fault; the others go on
                for e in group:
                    yield from self._seal([e], now_ms, deadline)
                return
            # The recipient left the trust file, or the row is malformed: keep the row for an
            # operator, let the rows behind it go.
            self.unsealable += 1
            self.last_error = f"outbox row {first.seq} cannot be sealed: {exc}"
            log.error("%s outbox: %s", self.node_id, self.last_error)
            return
        if len(group) > 1 and len(wire) > self._bundle_bytes:
            half = len(group) // 2
            yield from self._seal(group[:half], now_ms, deadline)
            yield from self._seal(group[half:], now_ms, deadline)
            return
        self.bundled += len(group) if len(group) > 1 else 0
        yield wire, [e.seq for e in group]


def _groups(entries: list[OutboxEntry], most: int) -> Iterator[list[OutboxEntry]]:
    """Rows grouped by recipient, each group in outbox order and at most `most` long.

    Rows for different recipients are independent, so grouping across them keeps every
    recipient's own order (its groups are published in sequence on one channel).
    """
    by_recipient: dict[str, list[OutboxEntry]] = {}
    for e in entries:
        group = by_recipient.setdefault(e.recipient, [])
        if len(group) >= most:
            yield group
            group = by_recipient[e.recipient] = []
        group.append(e)
    yield from by_recipient.values()
