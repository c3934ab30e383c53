"""Bundles on the real RabbitMQ: each item is a notice of its own — applied once, in order,
route- and schema-checked on its own type, refused and dead-lettered alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import bundle
from broker.amqp import AmqpConnection, Backoff
from broker.envelope import Message
from broker.ids import new_message_id
from broker.journal import MemoryJournal, OutboxEntry
from broker.outbox import OutboxRelay
from broker.service import Context, Service, ServiceConfig, running
from broker.topology import Topology

from .conftest import AMQP_URL, World, drain, eventually, id_made_days_ago, start_thread

pytestmark = pytest.mark.rabbitmq


class Applied:
    def __init__(self, journal: MemoryJournal) -> None:
        self.journal = journal
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def notice(self, msg: Message, ctx: Context) -> None:
        text = msg.body["text"]
        with self.lock:
            self.calls.append(text)
        if text == "boom":
            raise RuntimeError("cannot apply boom")
        self.journal.effects.append((msg.header.msg_id, msg.body["seq"], text))


@pytest.fixture
def node(world: World, topology: Topology) -> Iterator[tuple[Service, MemoryJournal, Applied]]:
    journal = MemoryJournal()
    applied = Applied(journal)
    service = Service(
        "svc",
        world.identities["svc"],
        world.trust,
        world.routes,
        world.schemas,
        {"demo.notice": applied.notice},
        journal,
        topology=topology,
        config=ServiceConfig(url=AMQP_URL, max_attempts=3),
    )
    with running(service):
        yield service, journal, applied


def item(seq: int, text: str = "ok", **extra: Any) -> dict[str, Any]:
    return {
        "id": extra.pop("id", new_message_id()),
        "type": extra.pop("type", "demo.notice"),
        "cid": None,
        "body": {"seq": seq, "text": text, **extra},
    }


def publish(admin: AmqpConnection, wire: bytes, recipient: str = "svc") -> None:
    admin.publish(recipient, wire, persistent=True, mandatory=True)


def test_items_are_applied_in_order_each_under_its_own_id(
    node: Any, admin: AmqpConnection, world: World
) -> None:
    service, journal, _applied = node
    items = [item(i) for i in range(5)]
    publish(admin, world.seal("cli", "svc", "bundle", {"items": items}))
    eventually(lambda: len(journal.effects) == 5)
    assert journal.effects == [(it["id"], i, "ok") for i, it in enumerate(items)]
    health = service.health()
    assert health["processed"] == {"demo.notice": 5}
    assert health["bundles"] == 1
    # every item id and the bundle's own id are in the inbox
    assert set(journal.inbox_ids()) >= {it["id"] for it in items}
    assert len(journal.inbox_ids()) == 6


def test_items_relayed_again_in_another_bundle_apply_once(
    node: Any, admin: AmqpConnection, world: World, topology: Topology
) -> None:
    service, journal, _applied = node
    first = [item(i) for i in range(3)]
    publish(admin, world.seal("cli", "svc", "bundle", {"items": first}))
    eventually(lambda: len(journal.effects) == 3)
    # the sender crashed before its confirm: the same rows again, with one more, in a new bundle
    again = [*first, item(3)]
    publish(admin, world.seal("cli", "svc", "bundle", {"items": again}))
    eventually(lambda: len(journal.effects) == 4)
    eventually(lambda: service.health()["duplicates"] == 3)
    assert [seq for _, seq, _ in journal.effects] == [0, 1, 2, 3]
    assert service.health()["refused"] == {}
    assert admin.queue_depth(topology.dead_letter_queue) == 0


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (item(9, type="secret.notice"), "route_not_allowed"),  # no route carries this type
        (item(9, extra_field="x"), "schema"),
        (item(9, id="not-a-message-id"), "malformed"),
        (item(9, type="bundle"), "malformed"),  # no bundle inside a bundle
        (item(9, type="test.relay"), "unknown_type"),  # allowed and valid, but no handler here
        (item(9, id=id_made_days_ago(91)), "stale"),  # made before the inbox's memory begins
    ],
)
def test_a_refused_item_is_dead_lettered_alone_and_the_others_apply(
    node: Any,
    admin: AmqpConnection,
    world: World,
    topology: Topology,
    bad: dict[str, Any],
    reason: str,
) -> None:
    service, journal, _applied = node
    bad = dict(bad)
    if bad["type"] == "test.relay":
        bad["body"] = {"n": 1, "text": "x"}
    if bad["type"] == "bundle":
        bad["body"] = {"items": []}
    items = [item(0), bad, item(1)]
    wire = world.seal("cli", "svc", "bundle", {"items": items})
    publish(admin, wire)
    [dead] = drain(admin, topology.dead_letter_queue, 1)
    assert dead.body == wire  # the signed bundle itself: verifiable evidence
    assert dead.headers["x-juki-reason"] == reason
    assert dead.headers["x-juki-item"] == bad["id"]
    assert dead.headers["x-juki-item-type"] == bad["type"]
    eventually(lambda: len(journal.effects) == 2)
    assert [seq for _, seq, _ in journal.effects] == [0, 1]
    assert service.health()["refused"] == {reason: 1}
    [refusal] = journal.refusals
    assert (refusal.msg_id, refusal.reason) == (bad["id"], reason)
    assert bad["id"] not in journal.inbox_ids()


def test_a_failing_item_is_retried_without_reapplying_the_others_then_poison(
    node: Any, admin: AmqpConnection, world: World, topology: Topology
) -> None:
    service, journal, applied = node
    boom, bad = item(1, "boom"), item(3, extra_field="x")
    items = [item(0), boom, item(2), bad]
    publish(admin, world.seal("cli", "svc", "bundle", {"items": items}))
    dead = drain(admin, topology.dead_letter_queue, 2)
    # the refused item is dead-lettered once, not once per retry of the bundle
    assert [(d.headers["x-juki-reason"], d.headers["x-juki-item"]) for d in dead] == [
        ("schema", bad["id"]),
        ("poison", boom["id"]),
    ]
    assert admin.queue_depth(topology.dead_letter_queue) == 0
    # Each attempt first runs without savepoints; the failure rolls that pass back and the batch
    # runs again with them. So boom runs twice per attempt (max_attempts = 3), and the good
    # items run in the first attempt only (item 0 in both passes, item 2 in the careful one):
    # later attempts skip them as already applied. Their effects count once.
    assert applied.calls.count("boom") == 2 * 3
    assert applied.calls.count("ok") == 3
    assert [seq for _, seq, _ in journal.effects] == [0, 2]
    health = service.health()
    assert health["retried"] == 2 and health["refused"] == {"poison": 1, "schema": 1}


def test_an_item_without_cid_is_taken_as_having_none(
    node: Any, admin: AmqpConnection, world: World
) -> None:
    _service, journal, _applied = node
    bare = item(0)
    del bare["cid"]
    publish(admin, world.seal("cli", "svc", "bundle", {"items": [bare]}))
    eventually(lambda: journal.effects == [(bare["id"], 0, "ok")])


def test_a_bundle_from_a_node_without_a_route_is_refused_whole(
    node: Any, admin: AmqpConnection, world: World, topology: Topology
) -> None:
    _service, journal, applied = node
    publish(admin, world.seal("rogue", "svc", "bundle", {"items": [item(0)]}))
    [dead] = drain(admin, topology.dead_letter_queue, 1)
    assert dead.headers["x-juki-reason"] == "route_not_allowed"
    assert "x-juki-item" not in dead.headers
    assert applied.calls == [] and journal.inbox_ids() == []


def test_a_replayed_bundle_is_refused_as_replay(
    node: Any, admin: AmqpConnection, world: World, topology: Topology
) -> None:
    _service, journal, applied = node
    wire = world.seal("cli", "svc", "bundle", {"items": [item(0)]})
    publish(admin, wire)
    eventually(lambda: len(journal.effects) == 1)
    publish(admin, wire)
    [dead] = drain(admin, topology.dead_letter_queue, 1)
    assert dead.headers["x-juki-reason"] == "replay"
    assert applied.calls == ["ok"]


def test_the_relay_bundles_rows_splits_big_bundles_and_keeps_order(
    world: World, topology: Topology
) -> None:
    got: list[tuple[int, str]] = []

    def on_relay(msg: Message, ctx: Context) -> None:
        got.append((msg.body["n"], msg.header.msg_id))

    peer = Service(
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
    journal = MemoryJournal()
    for i in range(120):
        journal.outbox_add(new_message_id(), "peer", "test.relay", {"n": i, "text": "t" * 50}, 0.0)
    stored = [e.msg_id for e in journal.outbox_pending(500)]
    relay = OutboxRelay(
        journal,
        world.sealer("svc"),
        node_id="svc",
        topology=topology,
        url=AMQP_URL,
        backoff=Backoff(initial=0.05, maximum=0.2),
        bundle_items=50,
        bundle_bytes=2500,  # about 20 rows: every 50-row group is split
    )
    with running(peer):
        stop, thread = start_thread(relay.run)
        try:
            eventually(lambda: len(got) == 120)
        finally:
            stop.set()
            thread.join(5)
    assert got == list(zip(range(120), stored, strict=True))
    bundles = peer.health()["bundles"]
    assert 120 / 25 <= bundles < 120 / 2  # bundled, and split below 50 rows
    assert relay.health()["bundled"] == 120
    assert journal.outbox_depth() == 0


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
_bodies = st.dictionaries(
    st.text(max_size=6), _scalars | st.lists(_scalars, max_size=3), max_size=6
)


@settings(max_examples=200)
@given(st.lists(st.tuples(_bodies, st.none() | st.text(min_size=1, max_size=10)), max_size=20))
def test_a_bundle_spliced_from_stored_bodies_is_byte_for_byte_the_packed_bundle(
    rows: list[tuple[dict[str, Any], str | None]],
) -> None:
    # the relay seals the stored msgpack of each row as it is; it must be exactly what encoding
    # the bundle's map would give, whatever the bodies hold (and whether a row has its bytes)
    entries = [
        OutboxEntry(
            i,
            new_message_id(),
            "peer",
            "test.relay",
            body,
            0.0,
            cid,
            msgpack.packb(body, use_bin_type=True) if i % 2 else None,
        )
        for i, (body, cid) in enumerate(rows)
    ]
    assert bundle.pack_wire(entries) == msgpack.packb(bundle.pack(entries))
