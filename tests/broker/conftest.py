"""Fixtures for the wire's tests on the real RabbitMQ: a topology with names unique to each test
(deleted at teardown), a small world of node identities, routes and schemas."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from broker.amqp import AmqpConnection
from broker.envelope import Header, Kind, Sealer
from broker.ids import first_id_at, new_message_id
from broker.keys import Identity, TrustStore
from broker.routes import NodeInfo, Route, RouteTable
from broker.rpc import RpcClient
from broker.schema import Int, MessageType, Obj, SchemaRegistry, Str, plumbing_types
from broker.service import Service, ServiceConfig
from broker.topology import Topology

AMQP_URL = os.environ.get("JUKI_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2F")

# svc: the node under test; cli: an allowed caller; peer: another node; rogue: trusted but with
# no route to svc; mallory: not in svc's trust file at all.
ROLES = {
    "svc": "national",
    "cli": "terminal",
    "peer": "prefecture",
    "rogue": "card_management",
    "mallory": "terminal",
}
ROUTES = (
    Route("terminal", "national", "any", ("ping", "echo", "demo.*", "test.*")),
    Route("national", "prefecture", "any", ("ping", "echo", "demo.*", "test.*")),
    Route("prefecture", "national", "any", ("ping", "echo", "demo.*", "test.*")),
)


def make_schemas() -> SchemaRegistry:
    registry = plumbing_types()
    registry.register(
        MessageType(
            "test.lookup",
            frozenset({Kind.REQUEST}),
            Obj({"key": Str(100)}),
            reply=Obj({"value": Str(100)}),
        )
    )
    registry.register(
        MessageType("test.relay", frozenset({Kind.NOTICE}), Obj({"n": Int(0), "text": Str(100)}))
    )
    return registry


@dataclass
class World:
    identities: dict[str, Identity]
    trust: TrustStore
    routes: RouteTable
    schemas: SchemaRegistry = field(default_factory=make_schemas)

    def sealer(self, node: str) -> Sealer:
        return Sealer(self.identities[node], self.trust_for(node))

    def trust_for(self, node: str) -> TrustStore:
        """Everyone trusts everyone except mallory, whom only mallory knows."""
        if node == "mallory":
            return TrustStore([i.public for i in self.identities.values()])
        return self.trust

    def seal(
        self,
        sender: str,
        recipient: str,
        type: str,
        body: dict[str, Any],
        *,
        kind: Kind = Kind.NOTICE,
        issued_at: float | None = None,
        ttl: float = 600.0,
        msg_id: str | None = None,
    ) -> bytes:
        now = time.time() if issued_at is None else issued_at
        header = Header(
            1,
            msg_id or new_message_id(),
            kind,
            type,
            sender,
            recipient,
            int(now * 1000),
            int((now + ttl) * 1000),
        )
        return self.sealer(sender).seal(header, body)


def id_made_days_ago(days: float) -> str:
    """A message id made `days` ago, as an outbox row written then carries when relayed now
    (new_message_id itself never goes back in time within a process)."""
    made = int((time.time() - days * 86400) * 1000)
    return first_id_at(made)[:10] + new_message_id()[10:]


def make_world() -> World:
    identities = {name: Identity.generate(name) for name in ROLES}
    trust = TrustStore([i.public for n, i in identities.items() if n != "mallory"])
    nodes = {n: NodeInfo(n, role) for n, role in ROLES.items()}
    return World(identities, trust, RouteTable(ROUTES, nodes))


@pytest.fixture(scope="session")
def world() -> World:
    return make_world()


@contextmanager
def declared_topology(nodes: list[str]) -> Iterator[tuple[Topology, AmqpConnection]]:
    """A topology under names of its own with `nodes`' queues declared, and the confirm-mode
    connection that declared it; everything is deleted on the way out."""
    topo = Topology.isolated(f"t{uuid.uuid4().hex[:12]}")
    admin = AmqpConnection(AMQP_URL, exchange=topo.exchange, name="juki-test-setup")
    admin.connect()
    admin.declare_topology(topo, nodes)
    try:
        yield topo, admin
    finally:
        admin.connect()
        for node in nodes:
            admin.queue_delete(topo.queue(node))
        admin.queue_delete(topo.dead_letter_queue)
        admin.exchange_delete(topo.exchange)
        admin.exchange_delete(topo.dead_letter_exchange)
        admin.close()


@pytest.fixture
def topology() -> Iterator[Topology]:
    """An isolated topology; its queues and exchanges are deleted after the test."""
    with declared_topology(list(ROLES)) as (topo, _setup):
        yield topo


@pytest.fixture
def admin(topology: Topology) -> Iterator[AmqpConnection]:
    """A confirm-mode connection for the test itself (crafting messages, reading the DLQ)."""
    conn = AmqpConnection(AMQP_URL, exchange=topology.exchange, name="juki-test-admin")
    conn.connect()
    yield conn
    conn.close()


def client_for(world: World, topology: Topology, node: str = "cli", **kw: Any) -> RpcClient:
    return RpcClient(
        node,
        world.identities[node],
        world.trust,
        world.routes,
        world.schemas,
        AMQP_URL,
        topology,
        **kw,
    )


def make_service(
    world: World,
    topology: Topology,
    node: str,
    handlers: dict[str, Any],
    journal: Any = None,
    **config: Any,
) -> Service:
    """A Service for `node` of the world, on the test's topology (config: ServiceConfig fields)."""
    return Service(
        node,
        world.identities[node],
        world.trust,
        world.routes,
        world.schemas,
        handlers,
        journal,
        topology=topology,
        config=ServiceConfig(url=AMQP_URL, **config),
    )


def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll `check` until it returns something truthy; fail with its last value otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(interval)


def drain(conn: AmqpConnection, queue: str, expect: int, timeout: float = 10.0) -> list[Any]:
    """Take `expect` messages from `queue` (waiting for them to arrive)."""
    got: list[Any] = []

    def more() -> bool:
        while (d := conn.get(queue)) is not None:
            got.append(d)
        return len(got) >= expect

    eventually(more, timeout)
    return got


def close_connection_named(name: str) -> int:
    """Close our own named AMQP connection(s) from the broker side, as a network failure would.

    Uses rabbitmqctl on exactly the connections with this name, never close_all_connections
    (other people's tests share this broker).
    """
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    closed = 0
    for line in out.splitlines():
        if f'"{name}"' in line or f'<<"{name}">>' in line:
            pid = line.split("\t", 1)[0]
            subprocess.run(
                ["rabbitmqctl", "-q", "close_connection", pid, "test: simulated network failure"],
                capture_output=True,
                check=True,
                timeout=60,
            )
            closed += 1
    return closed


def start_thread(
    target: Callable[[threading.Event], None],
) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=target, args=(stop,), daemon=True)
    thread.start()
    return stop, thread
