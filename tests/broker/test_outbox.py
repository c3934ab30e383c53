"""The outbox relay on the real RabbitMQ: sealed at relay time, in order, survives an
unreachable broker, keeps rows for recipients without a queue."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.amqp import AmqpConnection, Backoff
from broker.envelope import Message
from broker.ids import new_message_id
from broker.journal import MemoryJournal
from broker.outbox import OutboxRelay
from broker.service import Context, Service, ServiceConfig, running
from broker.topology import Topology

from .conftest import AMQP_URL, World, eventually, start_thread
from .sqlite_journal import SqliteJournal

pytestmark = pytest.mark.rabbitmq


class Forwarder:
    """A TCP port that refuses connections until `open()`, then forwards to RabbitMQ: a broker
    that is unreachable for a while, seen from the relay's side."""

    def __init__(self) -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._server: socket.socket | None = None
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def open(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(8)
        server.settimeout(0.2)
        self._server = server
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by close()
                return
            upstream = socket.create_connection(("127.0.0.1", 5672))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.close()


@pytest.fixture
def peer_node(world: World, topology: Topology) -> Iterator[list[tuple[int, str, float]]]:
    """`peer` consuming test.relay notices; yields what it applied: (n, msg_id, issued_at)."""
    applied: list[tuple[int, str, float]] = []

    def on_relay(msg: Message, ctx: Context) -> None:
        applied.append((msg.body["n"], msg.header.msg_id, msg.header.issued_at / 1000))

    service = Service(
        "peer",
        world.identities["peer"],
        world.trust,
        world.routes,
        world.schemas,
        {"test.relay": on_relay},
        MemoryJournal(),
        topology=topology,
        config=ServiceConfig(url=AMQP_URL),
    )
    with running(service):
        yield applied


def _queue_notices(journal: Any, count: int, created_at: float) -> None:
    """`count` notices for the peer, numbered 0… in `n`, as a handler would write them."""
    for i in range(count):
        journal.outbox_add(
            new_message_id(), "peer", "test.relay", {"n": i, "text": "t"}, created_at
        )


def _relay(world: World, topology: Topology, journal: Any, **kw: Any) -> OutboxRelay:
    kw.setdefault("topology", topology)
    return OutboxRelay(
        journal,
        world.sealer("svc"),
        node_id="svc",
        backoff=Backoff(initial=0.05, maximum=0.2),
        notice_ttl=60,
        **kw,
    )


def test_rows_are_sealed_at_relay_time_and_delivered_in_order(
    world: World, topology: Topology, peer_node: list[tuple[int, str, float]]
) -> None:
    journal = MemoryJournal()
    long_ago = time.time() - 7 * 24 * 3600  # far beyond the 60 s notice_ttl
    ids = [
        journal.outbox_add(new_message_id(), "peer", "test.relay", {"n": i, "text": "t"}, long_ago)
        for i in range(50)
    ]
    assert ids == sorted(ids)
    stored = [e.msg_id for e in journal.outbox_pending(100)]
    relay = _relay(world, topology, journal, url=AMQP_URL)
    stop, thread = start_thread(relay.run)
    try:
        eventually(lambda: len(peer_node) == 50)
    finally:
        stop.set()
        thread.join(5)
    assert [n for n, _, _ in peer_node] == list(range(50))
    assert [mid for _, mid, _ in peer_node] == stored  # same ids as written
    assert all(iat > long_ago + 3600 for _, _, iat in peer_node)  # issued when relayed
    assert journal.outbox_depth() == 0
    assert relay.health()["relayed"] == 50


def test_relay_survives_an_unreachable_broker_and_delivers_after(
    world: World, topology: Topology, peer_node: list[tuple[int, str, float]]
) -> None:
    journal = MemoryJournal()
    for i in range(20):
        journal.outbox_add(
            new_message_id(), "peer", "test.relay", {"n": i, "text": "t"}, time.time()
        )
    forwarder = Forwarder()
    relay = _relay(world, topology, journal, url=forwarder.url)
    stop, thread = start_thread(relay.run)
    try:
        time.sleep(0.5)
        assert journal.outbox_depth() == 20  # nothing lost, nothing marked sent
        assert relay.health()["connected"] is False
        forwarder.open()
        eventually(lambda: len(peer_node) == 20)
        eventually(lambda: journal.outbox_depth() == 0)
    finally:
        stop.set()
        thread.join(5)
        forwarder.close()
    assert [n for n, _, _ in peer_node] == list(range(20))


def test_rows_for_a_recipient_without_queue_stay_pending_while_others_go(
    world: World, topology: Topology, admin: AmqpConnection, peer_node: list[Any]
) -> None:
    admin.queue_delete(topology.queue("cli"))
    journal = MemoryJournal()
    journal.outbox_add(new_message_id(), "cli", "demo.notice", {"seq": 1, "text": "x"}, time.time())
    journal.outbox_add(new_message_id(), "peer", "test.relay", {"n": 1, "text": "x"}, time.time())
    journal.outbox_add(new_message_id(), "nobody", "test.relay", {"n": 2, "text": "x"}, time.time())
    relay = _relay(world, topology, journal, url=AMQP_URL)
    relay._conn.connect()
    assert relay.relay_once() == (1, 2)
    assert [e.recipient for e in journal.outbox_pending(10)] == ["cli", "nobody"]
    health = relay.health()
    assert (health["unroutable"], health["unsealable"]) == (1, 1)
    eventually(lambda: len(peer_node) == 1)
    relay._conn.close()


def test_service_send_then_relay_reaches_the_next_hop(
    world: World, topology: Topology, admin: AmqpConnection, peer_node: list[Any]
) -> None:
    """Two hops: a notice to svc makes its handler send onward; the relay carries it to peer."""
    journal = MemoryJournal()

    def forward(msg: Message, ctx: Context) -> None:
        ctx.send("peer", "test.relay", {"n": msg.body["n"] + 1, "text": msg.body["text"]})

    relay = _relay(world, topology, journal, url=AMQP_URL)
    svc = Service(
        "svc",
        world.identities["svc"],
        world.trust,
        world.routes,
        world.schemas,
        {"test.relay": forward},
        journal,
        topology=topology,
        config=ServiceConfig(url=AMQP_URL),
        on_commit=relay.wake,
    )
    stop, thread = start_thread(relay.run)
    try:
        with running(svc):
            for i in range(100):
                admin.publish(
                    "svc",
                    world.seal("cli", "svc", "test.relay", {"n": i * 10, "text": "hop"}),
                    persistent=True,
                    wait=False,
                )
            assert admin.wait_confirms() == {}
            eventually(lambda: len(peer_node) == 100)
    finally:
        stop.set()
        thread.join(5)
    assert sorted(n for n, _, _ in peer_node) == [i * 10 + 1 for i in range(100)]


class _FlakyJournal(MemoryJournal):
    """A journal whose store fails a few times (locked too long, a disk error), then recovers."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def outbox_pending(self, limit: int) -> list[Any]:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("database is locked")
        return super().outbox_pending(limit)


def test_relay_survives_a_failing_journal_and_relays_once_it_recovers(
    world: World, topology: Topology, peer_node: list[tuple[int, str, float]]
) -> None:
    journal = _FlakyJournal(failures=3)
    _queue_notices(journal, 5, 0.0)
    relay = _relay(world, topology, journal, url=AMQP_URL)
    stop, thread = start_thread(relay.run)
    try:
        eventually(lambda: len(peer_node) == 5)
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(5)
    assert journal.failures == 0
    assert "database is locked" in (relay.health()["last_error"] or "")
    assert [n for n, _, _ in peer_node] == list(range(5))


def test_an_idle_relay_writes_the_sent_marks_it_kept(
    world: World, topology: Topology, peer_node: list[tuple[int, str, float]], tmp_path: Path
) -> None:
    """On SQLite the marks wait in memory while the relay is busy; once it has nothing to send
    it writes them, so the table says what was sent without another business transaction."""
    journal = SqliteJournal(tmp_path / "relay.db")
    try:
        _queue_notices(journal, 20, 1.0)
        relay = _relay(world, topology, journal, url=AMQP_URL)
        stop, thread = start_thread(relay.run)
        try:
            eventually(lambda: len(peer_node) == 20)
            eventually(
                lambda: (
                    journal.execute('SELECT count(*) FROM "outbox" WHERE "sent_at" IS NULL')
                    == [(0,)]
                )
            )
        finally:
            stop.set()
            thread.join(5)
        assert journal.outbox_depth() == 0
    finally:
        journal.close()
