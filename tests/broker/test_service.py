"""The node service loop on the real RabbitMQ: round trips, refusals, poison, group commit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from broker.amqp import AmqpConnection
from broker.envelope import Kind, Message
from broker.errors import RemoteError, Unroutable
from broker.journal import MemoryJournal
from broker.rpc import RpcClient
from broker.service import Context, HandlerError, Service, ServiceConfig, running
from broker.topology import Topology

from .conftest import (
    AMQP_URL,
    World,
    close_connection_named,
    drain,
    eventually,
    id_made_days_ago,
    make_service,
)

pytestmark = pytest.mark.rabbitmq


class Handlers:
    """The handlers of the node under test, recording what they were asked to do."""

    def __init__(self, journal: MemoryJournal) -> None:
        self.journal = journal
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def table(self) -> dict[str, Any]:
        return {
            "ping": self.ping,
            "echo": self.echo,
            "test.lookup": self.lookup,
            "demo.notice": self.notice,
            "test.relay": self.relay,
        }

    def ping(self, msg: Message, ctx: Context) -> dict[str, Any]:
        return {"node": ctx.node_id, "time": ctx.now()}

    def echo(self, msg: Message, ctx: Context) -> dict[str, Any]:
        return {"payload": msg.body["payload"]}

    def lookup(self, msg: Message, ctx: Context) -> dict[str, Any]:
        if msg.body["key"] == "missing":
            raise HandlerError("not_found", "no such key", "該当なし")
        if msg.body["key"] == "crash":
            raise RuntimeError("handler bug")
        return {"value": msg.body["key"].upper()}

    def notice(self, msg: Message, ctx: Context) -> None:
        text = msg.body["text"]
        with self.lock:
            self.calls.append(text)
        if text == "boom":
            raise RuntimeError("cannot apply boom")
        if text == "refuse":
            raise HandlerError("business_rule", "notice breaks a rule")
        self.journal.effects.append((msg.header.msg_id, msg.body["seq"], text))

    def relay(self, msg: Message, ctx: Context) -> None:
        ctx.send("peer", "test.relay", {"n": msg.body["n"] + 1, "text": msg.body["text"]})


@pytest.fixture
def node(
    world: World, topology: Topology
) -> Iterator[tuple[Service, MemoryJournal, Handlers, RpcClient]]:
    journal = MemoryJournal()
    handlers = Handlers(journal)
    service = Service(
        "svc",
        world.identities["svc"],
        world.trust,
        world.routes,
        world.schemas,
        handlers.table(),
        journal,
        topology=topology,
        config=ServiceConfig(url=AMQP_URL, max_attempts=3, prefetch=64, batch_size=32),
    )
    client = RpcClient(
        "cli",
        world.identities["cli"],
        world.trust,
        world.routes,
        world.schemas,
        AMQP_URL,
        topology,
        default_timeout=5.0,
    )
    with running(service):
        yield service, journal, handlers, client
    client.close()


def test_request_reply_round_trip(node: Any) -> None:
    service, _journal, _handlers, client = node
    assert client.call("svc", "ping", {})["node"] == "svc"
    payload = bytes(range(256)) * 40
    assert client.call("svc", "echo", {"payload": payload}) == {"payload": payload}
    assert client.call("svc", "test.lookup", {"key": "abc"}) == {"value": "ABC"}
    assert service.health()["processed"] == {"ping": 1, "echo": 1, "test.lookup": 1}


def test_handler_error_becomes_remote_error_with_code_and_title(node: Any) -> None:
    _service, _journal, _handlers, client = node
    with pytest.raises(RemoteError) as info:
        client.call("svc", "test.lookup", {"key": "missing"})
    assert info.value.code == "not_found"
    assert info.value.title == "該当なし"
    with pytest.raises(RemoteError) as crash:
        client.call("svc", "test.lookup", {"key": "crash"})
    assert crash.value.code == "internal"
    # the loop survived both
    assert client.call("svc", "test.lookup", {"key": "ok"}) == {"value": "OK"}


def test_notice_is_applied_once_and_recorded_in_inbox(node: Any) -> None:
    service, journal, _handlers, client = node
    msg_id = client.notify("svc", "demo.notice", {"seq": 1, "text": "hello"})
    eventually(lambda: journal.effects)
    assert journal.effects == [(msg_id, 1, "hello")]
    assert journal.inbox_ids() == [msg_id]
    assert service.health()["processed"] == {"demo.notice": 1}


def test_many_notices_are_group_committed(node: Any, admin: AmqpConnection, world: World) -> None:
    service, journal, _handlers, _client = node
    n = 400
    for i in range(n):
        admin.publish(
            "svc",
            world.seal("cli", "svc", "demo.notice", {"seq": i, "text": "bulk"}),
            persistent=True,
            mandatory=True,
            wait=False,
        )
    assert admin.wait_confirms() == {}
    eventually(lambda: len(journal.effects) == n)
    assert sorted(seq for _, seq, _ in journal.effects) == list(range(n))
    assert service.health()["batches"] < n


def test_handler_send_writes_outbox_row_in_the_same_transaction(node: Any) -> None:
    service, journal, _handlers, client = node
    client.notify("svc", "test.relay", {"n": 1, "text": "onward"})
    eventually(lambda: journal.outbox_depth() == 1)
    health = service.health()
    assert health["connected"] is True
    assert health["outbox_depth"] == 1
    assert 0 <= health["inbox_lag_seconds"] < 5
    [entry] = journal.outbox_pending(10)
    assert (entry.recipient, entry.type, entry.body) == (
        "peer",
        "test.relay",
        {"n": 2, "text": "onward"},
    )


def _dead(admin: AmqpConnection, topology: Topology, n: int = 1) -> list[Any]:
    return drain(admin, topology.dead_letter_queue, n)


def test_poison_notice_is_dead_lettered_after_max_attempts(
    node: Any, admin: AmqpConnection, topology: Topology
) -> None:
    service, journal, handlers, client = node
    client.notify("svc", "demo.notice", {"seq": 7, "text": "boom"})
    [dead] = _dead(admin, topology)
    assert dead.headers["x-juki-reason"] == "poison"
    assert "cannot apply boom" in dead.headers["x-juki-detail"]
    assert dead.headers["x-juki-node"] == "svc"
    assert dead.headers["x-juki-attempts"] == 2  # the third failure dead-letters it
    # each of the 3 attempts runs the handler twice: in the pass without savepoints (rolled
    # back when it fails) and in the careful pass that records the failure
    assert handlers.calls.count("boom") == 2 * 3
    assert journal.effects == [] and journal.inbox_ids() == []
    assert service.health()["refused"] == {"poison": 1}
    assert [r.reason for r in journal.refusals] == ["poison"]
    # the loop goes on
    client.notify("svc", "demo.notice", {"seq": 8, "text": "fine"})
    eventually(lambda: journal.effects)


def test_business_refusal_of_a_notice_is_recorded_and_dead_lettered_once(
    node: Any, admin: AmqpConnection, topology: Topology
) -> None:
    _service, journal, handlers, client = node
    client.notify("svc", "demo.notice", {"seq": 1, "text": "refuse"})
    [dead] = _dead(admin, topology)
    assert dead.headers["x-juki-reason"] == "business_rule"
    assert handlers.calls == ["refuse", "refuse"]  # rolled-back pass, then the careful one
    assert journal.refusals[0].detail == "notice breaks a rule"


def test_unroutable_notice_is_an_error_not_a_loss(
    node: Any, admin: AmqpConnection, topology: Topology
) -> None:
    _service, _journal, _handlers, client = node
    admin.queue_delete(topology.queue("peer"))  # a trusted node whose queue does not exist
    with pytest.raises(Unroutable):
        client.notify("peer", "demo.notice", {"seq": 1, "text": "to nobody"})


# -- refusals: each reason produced by a crafted message arriving through the broker ------------


def _resign(wire: bytes, edit: Any) -> bytes:
    outer = msgpack.unpackb(wire)
    edit(outer)
    return msgpack.packb(outer)


def _flip_in_header_type(outer: list[Any]) -> None:
    outer[1] = outer[1].replace(b"demo.notice", b"demo.notica")


def _flip_body_byte(outer: list[Any]) -> None:
    ct = bytearray(outer[3])
    ct[-1] ^= 0x01
    outer[3] = bytes(ct)


def _readdress(outer: list[Any]) -> None:
    header = msgpack.unpackb(outer[1])
    header["to"] = "svc"
    outer[1] = msgpack.packb(header)


REFUSALS = {
    "tampered_header": "bad_signature",
    "tampered_body": "bad_signature",
    "wrong_recipient": "not_for_me",
    "readdressed": "bad_signature",
    "unknown_sender": "unknown_sender",
    "expired": "expired",
    "forbidden_route": "route_not_allowed",
    "extra_field": "schema",
    "garbage": "malformed",
    "stale": "stale",
}


def _craft(case: str, world: World) -> bytes:
    good = {"seq": 1, "text": "crafted"}
    if case == "tampered_header":
        return _resign(world.seal("cli", "svc", "demo.notice", good), _flip_in_header_type)
    if case == "tampered_body":
        return _resign(world.seal("cli", "svc", "demo.notice", good), _flip_body_byte)
    if case == "wrong_recipient":
        return world.seal("svc", "peer", "demo.notice", good)
    if case == "readdressed":
        return _resign(world.seal("svc", "peer", "demo.notice", good), _readdress)
    if case == "unknown_sender":
        return world.seal("mallory", "svc", "demo.notice", good)
    if case == "expired":
        return world.seal("cli", "svc", "demo.notice", good, issued_at=1_000_000.0, ttl=60)
    if case == "forbidden_route":
        return world.seal("rogue", "svc", "demo.notice", good)
    if case == "extra_field":
        return world.seal("cli", "svc", "demo.notice", {**good, "extra": 1})
    if case == "garbage":
        return b"\x93not an envelope"
    if case == "stale":  # signed and valid now, but made before the inbox's memory begins
        return world.seal("cli", "svc", "demo.notice", good, msg_id=id_made_days_ago(91))
    raise AssertionError(case)


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusal_reaches_dlq_with_reason_and_is_counted(
    case: str, node: Any, admin: AmqpConnection, topology: Topology, world: World
) -> None:
    service, journal, handlers, _client = node
    wire = _craft(case, world)
    admin.publish("svc", wire, persistent=True, mandatory=True, headers={"x-origin": "test"})
    [dead] = _dead(admin, topology)
    reason = REFUSALS[case]
    assert dead.body == wire
    assert dead.headers["x-juki-reason"] == reason
    assert dead.headers["x-juki-node"] == "svc"
    assert dead.headers["x-origin"] == "test"  # original headers kept
    assert service.health()["refused"] == {reason: 1}
    assert [r.reason for r in journal.refusals] == [reason]
    assert handlers.calls == [] and journal.effects == []


def test_replayed_notice_is_refused_and_applied_once(
    node: Any, admin: AmqpConnection, topology: Topology, world: World
) -> None:
    service, journal, handlers, _client = node
    wire = world.seal("cli", "svc", "demo.notice", {"seq": 1, "text": "once"})
    admin.publish("svc", wire, persistent=True, mandatory=True)
    eventually(lambda: journal.effects)
    admin.publish("svc", wire, persistent=True, mandatory=True)
    [dead] = _dead(admin, topology)
    assert dead.headers["x-juki-reason"] == "replay"
    assert len(journal.effects) == 1 and handlers.calls == ["once"]
    assert service.health()["refused"] == {"replay": 1}


def test_replayed_notice_is_refused_after_a_restart_through_the_inbox(
    world: World, topology: Topology, admin: AmqpConnection
) -> None:
    journal = MemoryJournal()
    handlers = Handlers(journal)
    wire = world.seal("cli", "svc", "demo.notice", {"seq": 1, "text": "durable"})

    def service() -> Service:
        return Service(
            "svc",
            world.identities["svc"],
            world.trust,
            world.routes,
            world.schemas,
            handlers.table(),
            journal,
            topology=topology,
            config=ServiceConfig(url=AMQP_URL),
        )

    with running(service()):
        admin.publish("svc", wire, persistent=True, mandatory=True)
        eventually(lambda: journal.effects)
    second = service()  # fresh memory guard: only the inbox remembers
    with running(second):
        admin.publish("svc", wire, persistent=True, mandatory=True)
        [dead] = _dead(admin, topology)
    assert dead.headers["x-juki-reason"] == "replay"
    assert len(journal.effects) == 1


def test_service_reconnects_after_its_connection_is_closed_and_loses_nothing(
    node: Any, admin: AmqpConnection, world: World
) -> None:
    service, journal, _handlers, client = node
    n = 300
    wires = [world.seal("cli", "svc", "demo.notice", {"seq": i, "text": "x"}) for i in range(n)]
    for w in wires[:150]:
        admin.publish("svc", w, persistent=True, wait=False)
    admin.wait_confirms()
    assert close_connection_named("juki-svc-svc") >= 1
    for w in wires[150:]:
        admin.publish("svc", w, persistent=True, wait=False)
    admin.wait_confirms()
    eventually(lambda: len(journal.effects) >= n, timeout=20)
    seqs = [seq for _, seq, _ in journal.effects]
    assert sorted(seqs) == list(range(n))  # all applied, none twice
    health = eventually(lambda: service.health()["connected"] and service.health())
    assert health["disconnects"] >= 1
    assert client.call("svc", "ping", {})["node"] == "svc"


def test_send_on_a_route_the_table_forbids_fails_the_handler_not_the_relay(
    world: World, topology: Topology, admin: AmqpConnection
) -> None:
    journal = MemoryJournal()

    def misroute(msg: Message, ctx: Context) -> None:
        ctx.send("cli", "test.relay", {"n": 1, "text": "national may not notify a terminal"})

    service = Service(
        "svc",
        world.identities["svc"],
        world.trust,
        world.routes,
        world.schemas,
        {"test.relay": misroute},
        journal,
        topology=topology,
        config=ServiceConfig(url=AMQP_URL, max_attempts=2),
    )
    with running(service):
        admin.publish("svc", world.seal("cli", "svc", "test.relay", {"n": 0, "text": "x"}))
        [dead] = _dead(admin, topology)
    assert dead.headers["x-juki-reason"] == "poison"
    assert "route does not allow" in dead.headers["x-juki-detail"]
    assert journal.outbox_depth() == 0


def test_a_notice_failing_inside_a_batch_undoes_only_its_own_writes(
    world: World, topology: Topology, admin: AmqpConnection
) -> None:
    # Twenty notices wait in the queue, so the node takes them as one batch. The batch first runs
    # without a savepoint per notice; the one that writes and then fails makes that pass roll
    # back, and the batch runs again with savepoints: its write is undone, the others kept once.
    journal = MemoryJournal()

    def notice(msg: Message, ctx: Context) -> None:
        journal.effects.append(msg.body["seq"])
        if msg.body["text"] == "half":
            raise HandlerError("business_rule", "wrote, then found a rule broken")

    service = make_service(
        world, topology, "svc", {"demo.notice": notice}, journal, prefetch=64, batch_size=64
    )
    admin.declare_topology(topology, ["svc"])
    for i in range(20):
        text = "half" if i == 7 else "fine"
        admin.publish(
            "svc",
            world.seal("cli", "svc", "demo.notice", {"seq": i, "text": text}),
            persistent=True,
        )
    with running(service):
        eventually(lambda: len(journal.effects) == 19)
        health = service.health()
    assert journal.effects == [i for i in range(20) if i != 7]
    assert health["refused"] == {"business_rule": 1}
    assert health["careful_batches"] >= 1
    assert health["processed"] == {"demo.notice": 19}
    assert len(journal.inbox_ids()) == 19


def test_a_stream_of_notices_does_not_push_a_request_out_of_the_replay_guard(
    world: World, topology: Topology, admin: AmqpConnection
) -> None:
    # Applied notices are in the inbox; remembering them in memory as well (with month-long
    # deadlines) filled the guard and evicted first the short-lived request ids only it holds,
    # so a replayed request ran again.
    journal = MemoryJournal()
    lookups: list[str] = []

    def lookup(msg: Message, ctx: Context) -> dict[str, Any]:
        lookups.append(msg.body["key"])
        return {"value": msg.body["key"]}

    def notice(msg: Message, ctx: Context) -> None:
        journal.effects.append(msg.body["seq"])

    handlers = {"test.lookup": lookup, "demo.notice": notice}
    service = make_service(world, topology, "svc", handlers, journal, replay_capacity=8)
    request = world.seal("cli", "svc", "test.lookup", {"key": "k"}, kind=Kind.REQUEST, ttl=60)
    with running(service):
        admin.publish("svc", request)
        eventually(lambda: lookups == ["k"])
        for i in range(30):
            admin.publish("svc", world.seal("cli", "svc", "demo.notice", {"seq": i, "text": "x"}))
        eventually(lambda: len(journal.effects) == 30)
        admin.publish("svc", request)  # the same request again, well within its deadline
        [dead] = _dead(admin, topology)
    assert dead.headers["x-juki-reason"] == "replay"
    assert lookups == ["k"]


def test_an_inbox_keep_shorter_than_a_notices_validity_is_refused() -> None:
    # a notice still valid on the wire must still be told apart from one already applied
    with pytest.raises(ValueError, match="inbox_keep"):
        ServiceConfig(notice_ttl=3600.0, skew_seconds=60.0, inbox_keep=3659.0)
    assert ServiceConfig(notice_ttl=3600.0, skew_seconds=60.0, inbox_keep=3660.0).inbox_keep


def test_a_node_whose_queue_was_deleted_declares_it_again_and_goes_on(
    node: Any, admin: AmqpConnection, topology: Topology
) -> None:
    service, journal, _handlers, client = node
    admin.queue_delete(topology.queue("svc"))
    eventually(lambda: service.health()["disconnects"] >= 1)
    assert "cancelled by the broker" in (service.health()["last_error"] or "")
    eventually(lambda: service.health()["connected"])
    msg_id = client.notify("svc", "demo.notice", {"seq": 1, "text": "after"})
    eventually(lambda: journal.effects)
    assert journal.effects == [(msg_id, 1, "after")]
