"""`juki ctl status`: the backlog an operator sees — notices a node could not relay yet (with how
long the oldest has waited) and work waiting for it in RabbitMQ, shown even when it is down."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.amqp import AmqpConnection
from broker.topology import Topology
from juki.config import ApplianceConfig, parse
from juki.ctl import broker_backlog, print_table

from .conftest import default_raw


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
    raw = default_raw()
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
