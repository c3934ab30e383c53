"""`juki ctl status`: the backlog an operator sees — notices a node could not relay yet (with how
long the oldest has waited) and work waiting for it in RabbitMQ, shown even when it is down."""

from __future__ import annotations

import os
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.amqp import AmqpConnection
from broker.topology import Topology
from juki.config import ApplianceConfig, parse
from juki.ctl import broker_backlog, print_table

ROOT = Path(__file__).resolve().parents[2]
AMQP_URL = os.environ.get("JUKI_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2F")


@pytest.fixture
def isolated(tmp_path: Path) -> Iterator[tuple[ApplianceConfig, Topology, AmqpConnection]]:
    """The default topology under names of its own; national's queue is never declared."""
    topology = Topology.isolated(f"t{uuid.uuid4().hex[:12]}")
    raw = tomllib.loads((ROOT / "appliance.toml").read_text(encoding="utf-8"))
    raw["broker"].update(
        url=AMQP_URL,
        exchange=topology.exchange,
        dead_letter_exchange=topology.dead_letter_exchange,
        dead_letter_queue=topology.dead_letter_queue,
        queue_prefix=topology.queue_prefix,
    )
    config = parse(raw, tmp_path / "appliance.toml")
    admin = AmqpConnection(AMQP_URL, exchange=topology.exchange, name="juki-test-ctl")
    admin.connect()
    admin.declare_topology(topology, ["pref.04", "cs.041009"])
    yield config, topology, admin
    admin.connect()
    for node in ("pref.04", "cs.041009"):
        admin.queue_delete(topology.queue(node))
    admin.queue_delete(topology.dead_letter_queue)
    admin.exchange_delete(topology.exchange)
    admin.exchange_delete(topology.dead_letter_exchange)
    admin.close()


@pytest.mark.rabbitmq
def test_backlog_counts_what_waits_for_each_node_and_in_the_dead_letter_queue(
    isolated: tuple[ApplianceConfig, Topology, AmqpConnection],
) -> None:
    config, topology, admin = isolated
    for _ in range(3):  # nobody consumes pref.04: as if it were down
        admin.publish("pref.04", b"x", persistent=True, mandatory=True)
    admin.publish("", b"refused", exchange=topology.dead_letter_exchange, persistent=True)

    queued, dead = broker_backlog(config, ["pref.04", "national", "cs.041009"])

    assert queued == {"pref.04": 3, "national": None, "cs.041009": 0}
    assert dead == 1


def test_backlog_is_empty_when_the_broker_cannot_be_reached(tmp_path: Path) -> None:
    raw = tomllib.loads((ROOT / "appliance.toml").read_text(encoding="utf-8"))
    raw["broker"]["url"] = "amqp://guest:guest@127.0.0.1:1/%2F"  # nothing listens there
    config = parse(raw, tmp_path / "appliance.toml")
    assert broker_backlog(config, ["pref.04"]) == ({"pref.04": None}, None)


def test_the_table_shows_the_backlog_of_a_node_up_or_down(
    capsys: pytest.CaptureFixture[str],
) -> None:
    up = {
        "node": "cs.041009",
        "up": True,
        "healthy": True,
        "broker_connected": True,
        "outbox_depth": 12,
        "outbox_oldest_seconds": 7300.0,
        "queued": 0,
    }
    down = {"node": "pref.04", "up": False, "error": "no answer", "queued": 3}
    print_table([up, down], dead=2)
    lines = capsys.readouterr().out.splitlines()
    head = lines[0].split()
    assert head[:6] == ["node", "state", "broker", "store", "outbox", "queued"]
    assert "12 (oldest 2h)" in lines[1]
    assert lines[2].split()[:6] == ["pref.04", "DOWN", "-", "-", "-", "3"]
    assert lines[-1].startswith("dead-letter queue: 2 ")
