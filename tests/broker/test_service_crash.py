"""A notice consumer killed with SIGKILL before its commit: redelivered, applied exactly once.

The node runs in a child process (this module is its entry point) with a file-based SQLite
journal; its handler writes a business effect and then, in the first run, blocks inside the open
transaction until the test kills the process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from broker.amqp import AmqpConnection
from broker.envelope import Message
from broker.keys import Identity, TrustStore
from broker.routes import NodeInfo, RouteTable
from broker.service import Context, Service, ServiceConfig
from broker.topology import Topology

from .conftest import AMQP_URL, ROLES, ROUTES, World, eventually, make_schemas
from .sqlite_journal import SqliteJournal

ROOT = Path(__file__).resolve().parents[2]


def _spec(world: World, topology: Topology, tmp: Path) -> Path:
    spec = {
        "keys": {
            n: [i.signer.seed.hex(), i.box_secret.secret.hex()] for n, i in world.identities.items()
        },
        "exchange_prefix": topology.exchange[: -len(".juki")],
        "db": str(tmp / "svc.db"),
        "marker": str(tmp / "in-handler"),
    }
    path = tmp / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def _child(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    ids = {
        n: Identity.from_seeds(n, bytes.fromhex(seed), bytes.fromhex(box))
        for n, (seed, box) in spec["keys"].items()
    }
    trust = TrustStore([i.public for n, i in ids.items() if n != "mallory"])
    routes = RouteTable(ROUTES, {n: NodeInfo(n, r) for n, r in ROLES.items()})
    journal = SqliteJournal(spec["db"])
    block = os.environ.get("JUKI_TEST_BLOCK") == "1"

    def notice(msg: Message, ctx: Context) -> None:
        journal.execute(
            "INSERT INTO effect (msg_id, value) VALUES (?, ?)",
            (msg.header.msg_id, msg.body["text"]),
        )
        if block and msg.body["text"] == "block":
            Path(spec["marker"]).write_text("inside the transaction")
            time.sleep(600)

    service = Service(
        "svc",
        ids["svc"],
        trust,
        routes,
        make_schemas(),
        {"demo.notice": notice},
        journal,
        topology=Topology.isolated(spec["exchange_prefix"]),
        config=ServiceConfig(url=AMQP_URL),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    service.run(stop)


def _start(spec: Path, block: bool) -> subprocess.Popen[bytes]:
    env = dict(os.environ, JUKI_TEST_BLOCK="1" if block else "0")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.broker.test_service_crash", str(spec)], cwd=ROOT, env=env
    )


@pytest.mark.rabbitmq
def test_sigkill_before_commit_redelivers_and_applies_exactly_once(
    world: World, topology: Topology, admin: AmqpConnection, tmp_path: Path
) -> None:
    spec = _spec(world, topology, tmp_path)
    texts = ["first", "second", "block", "after"]
    ids: dict[str, str] = {}
    for i, text in enumerate(texts):
        wire = world.seal("cli", "svc", "demo.notice", {"seq": i, "text": text})
        admin.publish("svc", wire, persistent=True, mandatory=True)
        ids[text] = _peek_id(wire)

    child = _start(spec, block=True)
    try:
        eventually(lambda: (tmp_path / "in-handler").exists(), timeout=20)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    journal = SqliteJournal(tmp_path / "svc.db")
    assert journal.execute("SELECT msg_id FROM effect WHERE value = 'block'") == []
    assert not journal.inbox_contains(ids["block"])

    child = _start(spec, block=False)
    try:
        eventually(
            lambda: journal.execute("SELECT count(*) FROM effect")[0][0] >= len(texts), timeout=20
        )
        eventually(lambda: admin.queue_depth(topology.queue("svc")) == 0)
        time.sleep(0.3)  # would a second application show up late?
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(10)
    effects = journal.execute("SELECT msg_id, value FROM effect ORDER BY id")
    assert sorted(effects) == sorted((ids[t], t) for t in texts)
    inbox = [row[0] for row in journal.execute("SELECT msg_id FROM inbox")]
    assert sorted(inbox) == sorted(ids.values())
    assert journal.refusals() == []
    assert admin.queue_depth(topology.dead_letter_queue) == 0


def _peek_id(wire: bytes) -> Any:
    from broker.envelope import peek_header

    header = peek_header(wire)
    assert header is not None
    return header.msg_id


if __name__ == "__main__":
    _child(sys.argv[1])
