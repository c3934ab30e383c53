"""配信経路の構成 (broker topology): the exchange, the per-node queues and the dead-letter path.

Names live here and nowhere else, so that tests can run a whole isolated topology side by side
with a live appliance just by choosing another `prefix`. `declare()` is idempotent (AMQP declares
are), and `export_definitions()` writes the same topology as a RabbitMQ definitions file for
operators who provision the broker ahead of the nodes (`juki broker export`).

This module never imports pika: `declare()` takes any object with pika's channel method names
(`exchange_declare`, `queue_declare`, `queue_bind`), which in practice is `broker.amqp.Channel`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

QUEUE_TYPES = ("classic", "quorum")


class _Declarer(Protocol):
    def exchange_declare(self, exchange: str, exchange_type: str, *, durable: bool) -> Any: ...

    def queue_declare(self, queue: str, *, durable: bool, arguments: dict[str, Any]) -> Any: ...

    def queue_bind(self, queue: str, exchange: str, routing_key: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class Topology:
    """The names of one appliance's AMQP objects.

    The defaults are the production names of docs/architecture.md; a test passes
    `Topology.isolated("t-<uuid>")` to get its own exchange, dead-letter path and queues.
    """

    exchange: str = "juki"
    dead_letter_exchange: str = "juki.dlx"
    dead_letter_queue: str = "juki.dead"
    queue_prefix: str = "juki.node."
    queue_type: str = "classic"

    def __post_init__(self) -> None:
        if self.queue_type not in QUEUE_TYPES:
            raise ValueError(f"unknown queue_type {self.queue_type!r}; expected {QUEUE_TYPES}")

    @classmethod
    def isolated(cls, prefix: str, queue_type: str = "classic") -> Topology:
        """A topology whose every name starts with `prefix` (tests, side-by-side appliances)."""
        return cls(
            exchange=f"{prefix}.juki",
            dead_letter_exchange=f"{prefix}.juki.dlx",
            dead_letter_queue=f"{prefix}.juki.dead",
            queue_prefix=f"{prefix}.juki.node.",
            queue_type=queue_type,
        )

    def queue(self, node_id: str) -> str:
        """The durable queue a node consumes; bound to the exchange with routing key node_id."""
        return f"{self.queue_prefix}{node_id}"

    def queue_arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {"x-dead-letter-exchange": self.dead_letter_exchange}
        if self.queue_type == "quorum":
            args["x-queue-type"] = "quorum"
        return args


def declare(channel: _Declarer, topology: Topology, node_ids: Iterable[str]) -> None:
    """Declare the exchange, the dead-letter path and one queue per node (idempotent).

    The queues carry `x-dead-letter-exchange` so that anything RabbitMQ itself rejects (a
    consumer's nack without requeue, a quorum queue's delivery limit) still lands in the DLQ
    rather than vanishing; our own refusals are published there explicitly with reason headers.
    """
    channel.exchange_declare(topology.exchange, "direct", durable=True)
    channel.exchange_declare(topology.dead_letter_exchange, "fanout", durable=True)
    dlq_args: dict[str, Any] = {}
    if topology.queue_type == "quorum":
        dlq_args["x-queue-type"] = "quorum"
    channel.queue_declare(topology.dead_letter_queue, durable=True, arguments=dlq_args)
    channel.queue_bind(topology.dead_letter_queue, topology.dead_letter_exchange, "")
    args = topology.queue_arguments()
    for node_id in node_ids:
        queue = topology.queue(node_id)
        channel.queue_declare(queue, durable=True, arguments=args)
        channel.queue_bind(queue, topology.exchange, node_id)


def export_definitions(
    topology: Topology, node_ids: Iterable[str], vhost: str = "/"
) -> dict[str, Any]:
    """The topology in RabbitMQ's definitions-file format (import with
    `rabbitmqctl import_definitions` or the management UI)."""
    nodes = list(node_ids)
    dlq_args: dict[str, Any] = {}
    if topology.queue_type == "quorum":
        dlq_args["x-queue-type"] = "quorum"

    def exchange(name: str, kind: str) -> dict[str, Any]:
        return {
            "name": name,
            "vhost": vhost,
            "type": kind,
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        }

    def queue(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "vhost": vhost,
            "durable": True,
            "auto_delete": False,
            "arguments": dict(arguments),
        }

    def binding(source: str, queue_name: str, key: str) -> dict[str, Any]:
        return {
            "source": source,
            "vhost": vhost,
            "destination": queue_name,
            "destination_type": "queue",
            "routing_key": key,
            "arguments": {},
        }

    return {
        "exchanges": [
            exchange(topology.exchange, "direct"),
            exchange(topology.dead_letter_exchange, "fanout"),
        ],
        "queues": [queue(topology.dead_letter_queue, dlq_args)]
        + [queue(topology.queue(n), topology.queue_arguments()) for n in nodes],
        "bindings": [binding(topology.dead_letter_exchange, topology.dead_letter_queue, "")]
        + [binding(topology.exchange, topology.queue(n), n) for n in nodes],
    }
