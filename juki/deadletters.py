"""受信拒否の確認 (dead letters): what the nodes refused, read from the dead-letter queue, and
handed back to its node once the cause is fixed.

Every refusal is recorded in the refusing node's ``refusal`` table, and the message itself goes to
the dead-letter queue with ``x-juki-reason``, ``x-juki-detail`` and ``x-juki-node`` (and
``x-juki-item`` when one notice of a bundle was refused). This is how operators read them without
RabbitMQ's management UI — the queue is left as it was — and how a notice refused for a cause since
fixed (a handler bug that made it poison, a route or handler missing before an upgrade) is
re-run: it goes back to its node's queue, confirmed by the broker before it leaves the dead-letter
queue, and the node judges it again. Refused again, it comes back with its new reason.

A refused item cannot be re-run by handing its bundle back: the bundle's other items are applied
and its own id is in the node's inbox, so the node would refuse the copy as a replay. What such an
item carried is re-sent by `juki consistency run --repair`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from broker.amqp import AmqpConnection, Delivery
from broker.envelope import peek_header
from broker.service import (
    ATTEMPTS_HEADER,
    DETAIL_HEADER,
    ITEM_HEADER,
    ITEM_TYPE_HEADER,
    NODE_HEADER,
    REASON_HEADER,
)
from juki.config import ApplianceConfig

_OURS = (ATTEMPTS_HEADER, DETAIL_HEADER, ITEM_HEADER, ITEM_TYPE_HEADER, NODE_HEADER, REASON_HEADER)


@dataclass(frozen=True)
class DeadLetter:
    """One refused message as an operator reads it."""

    msg_id: str | None
    """The envelope's id (the bundle's, for a refused item)."""
    item: str | None
    """The refused notice inside the bundle, if it was one."""
    type: str | None
    kind: str | None
    """notice or request (a request's caller has long stopped waiting: never re-run)."""
    sender: str | None
    node: str | None
    """The node that refused it."""
    reason: str
    detail: str
    issued_at: str | None
    """When the sender sealed it (UTC), from the signed header."""
    attempts: int

    @property
    def ids(self) -> set[str]:
        return {i for i in (self.msg_id, self.item) if i}


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None if value is None else str(value)


def describe(d: Delivery) -> DeadLetter:
    """Read a dead letter: the reason headers the refusing node attached, and the envelope's
    clear header (unverified here: the node checked it, or refused it for failing)."""
    header = peek_header(d.body)
    h = d.headers
    item = _text(h.get(ITEM_HEADER))
    issued = None
    if header is not None:
        issued = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(header.issued_at / 1000))
    attempts = h.get(ATTEMPTS_HEADER, 0)
    return DeadLetter(
        msg_id=header.msg_id if header else None,
        item=item,
        type=_text(h.get(ITEM_TYPE_HEADER)) if item else (header.type if header else None),
        kind=header.kind.value if header else None,
        sender=header.sender if header else None,
        node=_text(h.get(NODE_HEADER)),
        reason=_text(h.get(REASON_HEADER)) or "?",
        detail=_text(h.get(DETAIL_HEADER)) or "",
        issued_at=issued,
        attempts=attempts if isinstance(attempts, int) else 0,
    )


def _connect(config: ApplianceConfig) -> tuple[AmqpConnection, str, str]:
    from nodes.runtime import topology_for

    topology = topology_for(config)
    conn = AmqpConnection(config.broker.url, exchange=topology.exchange, name="juki-dead-letters")
    conn.connect()
    return conn, topology.dead_letter_queue, topology.exchange


def list_dead(config: ApplianceConfig, limit: int) -> tuple[int, list[DeadLetter]]:
    """How many dead letters wait, and the first `limit` of them, oldest first. Each is taken
    unacked and all are handed back before returning, so the queue keeps them in their order."""
    conn, queue, _exchange = _connect(config)
    taken: list[Delivery] = []
    try:
        total = conn.queue_depth(queue)
        while len(taken) < min(limit, total):
            d = conn.get(queue, auto_ack=False)
            if d is None:
                break
            taken.append(d)
        if taken:
            conn.nack(taken[-1].tag, multiple=True, requeue=True)
    finally:
        conn.close()  # anything still unacked goes back by itself
    return total, [describe(d) for d in taken]


@dataclass
class RequeueReport:
    requeued: list[str]
    """Ids handed back to their node's queue (confirmed) and removed from the dead letters."""
    skipped: dict[str, str]
    """Ids found but kept as dead letters, with why."""
    not_found: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def requeue(config: ApplianceConfig, ids: list[str]) -> RequeueReport:
    """Hand the dead letters with these message ids back to the nodes that refused them.

    The copy is published to the node's queue (persistent, mandatory, confirmed) without the
    refusal headers and with its attempt count reset; only then is the dead letter acked, so a
    failure at any point leaves it where it was.
    """
    wanted = set(ids)
    report = RequeueReport([], {}, [])
    conn, queue, exchange = _connect(config)
    taken: list[tuple[Delivery, DeadLetter]] = []
    try:
        total = conn.queue_depth(queue)
        while len(taken) < total:
            d = conn.get(queue, auto_ack=False)
            if d is None:
                break
            taken.append((d, describe(d)))
        chosen: list[tuple[Delivery, DeadLetter, str]] = []
        for d, dead in taken:
            hit = dead.ids & wanted
            if not hit:
                continue
            key = sorted(hit)[0]
            wanted -= hit
            if dead.item:
                report.skipped[key] = (
                    "one refused notice of a bundle: the node would refuse its bundle again as a "
                    "replay; re-send what it carried with `juki consistency run --repair`"
                )
            elif dead.kind != "notice":
                report.skipped[key] = "not a notice: only durable notices are re-run"
            elif not dead.node:
                report.skipped[key] = "the dead letter does not name the node that refused it"
            else:
                chosen.append((d, dead, key))
        acked: set[int] = set()
        tags: dict[int, tuple[Delivery, str]] = {}
        for d, dead, key in chosen:
            headers = {k: v for k, v in d.headers.items() if k not in _OURS}
            tag = conn.publish(
                dead.node or "",
                d.body,
                exchange=exchange,
                persistent=True,
                mandatory=True,
                headers=headers,
                reply_to=d.reply_to,
                correlation_id=d.correlation_id,
                wait=False,
            )
            tags[tag] = (d, key)
        failures = conn.wait_confirms() if tags else {}
        for tag, (d, key) in tags.items():
            if tag in failures:
                report.skipped[key] = f"not handed back: {failures[tag]}"
                continue
            conn.ack(d.tag, flush=False)
            acked.add(d.tag)
            report.requeued.append(key)
        rest = [d.tag for d, _dead in taken if d.tag not in acked]
        if rest:
            conn.nack(rest[-1], multiple=True, requeue=True)  # they stay, in their places
        else:
            conn.flush()
    finally:
        conn.close()
    report.not_found = sorted(wanted)
    return report
