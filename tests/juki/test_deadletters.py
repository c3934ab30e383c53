"""`juki broker dead-letters` / `requeue` on the real RabbitMQ: refused messages are read without
being taken, and a notice is handed back to its node only once the broker has confirmed it."""

from __future__ import annotations

import time
from typing import Any

import pytest

from broker.amqp import AmqpConnection
from broker.envelope import Header, Kind, Sealer
from broker.ids import new_message_id
from broker.keys import Identity, TrustStore
from broker.topology import Topology
from juki.config import ApplianceConfig
from juki.deadletters import list_dead, requeue

pytestmark = pytest.mark.rabbitmq

Isolated = tuple[ApplianceConfig, Topology, AmqpConnection]
IDS = {n: Identity.generate(n) for n in ("pref.04", "national", "cs.041009")}
TRUST = TrustStore([i.public for i in IDS.values()])


def sealed(sender: str, recipient: str, type: str, kind: Kind = Kind.NOTICE) -> tuple[str, bytes]:
    now = int(time.time() * 1000)
    msg_id = new_message_id()
    header = Header(1, msg_id, kind, type, sender, recipient, now, now + 60_000)
    return msg_id, Sealer(IDS[sender], TRUST).seal(header, {"n": 1})


def dead_letter(admin: AmqpConnection, topology: Topology, wire: bytes, **headers: Any) -> None:
    names = {k: f"x-juki-{k.replace('_', '-')}" for k in headers}
    admin.publish(
        "",
        wire,
        exchange=topology.dead_letter_exchange,
        persistent=True,
        headers={"x-origin": "test", **{names[k]: v for k, v in headers.items()}},
    )


def test_dead_letters_are_listed_in_order_and_left_in_the_queue(isolated: Isolated) -> None:
    config, topology, admin = isolated
    poison, wire = sealed("cs.041009", "pref.04", "pref.cs.identity_update")
    dead_letter(
        admin,
        topology,
        wire,
        reason="poison",
        node="pref.04",
        detail="after 5 attempts",
        attempts=4,
    )
    bundle, bundle_wire = sealed("pref.04", "national", "bundle")
    item = new_message_id()
    dead_letter(
        admin,
        topology,
        bundle_wire,
        reason="stale",
        node="national",
        item=item,
        item_type="national.pref.identity_update",
    )
    dead_letter(admin, topology, b"\x93not an envelope", reason="malformed", node="national")

    total, first = list_dead(config, limit=2)
    assert total == 3
    a, b = first
    assert (a.msg_id, a.item, a.type, a.kind, a.sender, a.node) == (
        poison,
        None,
        "pref.cs.identity_update",
        "notice",
        "cs.041009",
        "pref.04",
    )
    assert (a.reason, a.detail, a.attempts) == ("poison", "after 5 attempts", 4)
    assert a.issued_at is not None and a.issued_at.startswith(time.strftime("%Y-"))
    assert (b.msg_id, b.item, b.type, b.reason) == (
        bundle,
        item,
        "national.pref.identity_update",
        "stale",
    )

    total, everything = list_dead(config, limit=10)
    assert total == 3
    assert [d.reason for d in everything] == ["poison", "stale", "malformed"]
    assert everything[2].msg_id is None and everything[2].sender is None  # unreadable, still shown
    assert admin.queue_depth(topology.dead_letter_queue) == 3


def test_requeue_hands_a_notice_back_without_its_refusal_and_keeps_the_rest(
    isolated: Isolated,
) -> None:
    config, topology, admin = isolated
    fixed, fixed_wire = sealed("cs.041009", "pref.04", "pref.cs.identity_update")
    dead_letter(admin, topology, fixed_wire, reason="poison", node="pref.04", attempts=4)
    bundle, bundle_wire = sealed("cs.041009", "pref.04", "bundle")
    item = new_message_id()
    dead_letter(admin, topology, bundle_wire, reason="poison", node="pref.04", item=item)
    request, request_wire = sealed("cs.041009", "pref.04", "pref.cs.query", Kind.REQUEST)
    dead_letter(admin, topology, request_wire, reason="expired", node="pref.04")
    other, other_wire = sealed("cs.041009", "pref.04", "pref.cs.identity_update")
    dead_letter(admin, topology, other_wire, reason="poison", node="pref.04")
    absent = new_message_id()

    report = requeue(config, [fixed, item, request, absent])

    assert report.requeued == [fixed]
    assert set(report.skipped) == {item, request}
    assert "consistency run --repair" in report.skipped[item]
    assert report.not_found == [absent]
    back = admin.get(topology.queue("pref.04"))
    assert back is not None and back.body == fixed_wire
    assert back.headers == {"x-origin": "test"}  # no reason, no attempts: judged afresh
    assert admin.get(topology.queue("pref.04")) is None
    _total, left = list_dead(config, limit=10)
    assert [d.msg_id for d in left] == [bundle, request, other]


def test_a_notice_whose_node_has_no_queue_stays_a_dead_letter(isolated: Isolated) -> None:
    config, topology, admin = isolated
    msg_id, wire = sealed("pref.04", "national", "national.pref.identity_update")
    dead_letter(admin, topology, wire, reason="poison", node="national")  # national: no queue

    report = requeue(config, [msg_id])

    assert report.requeued == []
    assert "not handed back" in report.skipped[msg_id]
    _total, left = list_dead(config, limit=10)
    assert [d.msg_id for d in left] == [msg_id]
