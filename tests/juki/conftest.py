"""A default appliance config whose RabbitMQ names are the test's own (deleted at teardown)."""

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

ROOT = Path(__file__).resolve().parents[2]
AMQP_URL = os.environ.get("JUKI_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2F")
DECLARED = ("pref.04", "cs.041009")
"""The node queues `isolated` declares; national's is left undeclared on purpose."""


def default_raw() -> dict:
    return tomllib.loads((ROOT / "appliance.toml").read_text(encoding="utf-8"))


@pytest.fixture
def isolated(tmp_path: Path) -> Iterator[tuple[ApplianceConfig, Topology, AmqpConnection]]:
    """(config, its topology, a confirm-mode admin connection) under names of the test's own."""
    topology = Topology.isolated(f"t{uuid.uuid4().hex[:12]}")
    raw = default_raw()
    raw["broker"].update(
        url=AMQP_URL,
        exchange=topology.exchange,
        dead_letter_exchange=topology.dead_letter_exchange,
        dead_letter_queue=topology.dead_letter_queue,
        queue_prefix=topology.queue_prefix,
    )
    config = parse(raw, tmp_path / "appliance.toml")
    admin = AmqpConnection(AMQP_URL, exchange=topology.exchange, name="juki-test-admin")
    admin.connect()
    admin.declare_topology(topology, list(DECLARED))
    yield config, topology, admin
    admin.connect()
    for node in DECLARED:
        admin.queue_delete(topology.queue(node))
    admin.queue_delete(topology.dead_letter_queue)
    admin.exchange_delete(topology.exchange)
    admin.exchange_delete(topology.dead_letter_exchange)
    admin.close()
