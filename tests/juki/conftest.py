"""A default appliance config whose RabbitMQ names are the test's own (deleted at teardown)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.amqp import AmqpConnection
from broker.topology import Topology
from juki.config import ApplianceConfig, parse
from tests.broker.conftest import AMQP_URL, declared_topology

ROOT = Path(__file__).resolve().parents[2]
DECLARED = ("pref.04", "cs.041009")
"""The node queues `isolated` declares; national's is left undeclared on purpose."""


def default_raw() -> dict:
    return tomllib.loads((ROOT / "appliance.toml").read_text(encoding="utf-8"))


@pytest.fixture
def isolated(tmp_path: Path) -> Iterator[tuple[ApplianceConfig, Topology, AmqpConnection]]:
    """(config, its topology, a confirm-mode admin connection) under names of the test's own."""
    with declared_topology(list(DECLARED)) as (topology, admin):
        raw = default_raw()
        raw["broker"].update(
            url=AMQP_URL,
            exchange=topology.exchange,
            dead_letter_exchange=topology.dead_letter_exchange,
            dead_letter_queue=topology.dead_letter_queue,
            queue_prefix=topology.queue_prefix,
        )
        yield parse(raw, tmp_path / "appliance.toml"), topology, admin
