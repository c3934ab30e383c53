"""The RPC client on the real RabbitMQ: deadlines, unroutable calls, forged replies."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from broker.amqp import AmqpConnection, Delivery
from broker.envelope import Message, Opener, Sealer, reply_header, wire_hash
from broker.errors import RpcTimeout, Unroutable
from broker.replay import MemoryReplayGuard
from broker.service import Context, Service, ServiceConfig, running
from broker.topology import Topology

from .conftest import AMQP_URL, World, client_for

pytestmark = pytest.mark.rabbitmq


def test_call_to_a_stopped_node_times_out_within_its_deadline(
    world: World, topology: Topology
) -> None:
    with client_for(world, topology) as client:
        start = time.monotonic()
        with pytest.raises(RpcTimeout) as info:
            client.call("svc", "ping", {}, timeout=0.5)
        elapsed = time.monotonic() - start
    assert 0.5 <= elapsed < 1.0
    assert info.value.recipient == "svc"


def test_call_to_a_node_without_a_queue_is_unroutable_at_once(
    world: World, topology: Topology, admin: AmqpConnection
) -> None:
    admin.queue_delete(topology.queue("svc"))
    with client_for(world, topology) as client:
        start = time.monotonic()
        with pytest.raises(Unroutable):
            client.call("svc", "ping", {}, timeout=5.0)
        assert time.monotonic() - start < 2.0


class ForgingServer:
    """Answers each request first with forged replies (wrong request hash, wrong correlation id,
    wrong sender), then with the genuine one; the client must take only the last."""

    def __init__(self, world: World, topology: Topology) -> None:
        self.world = world
        self.topology = topology
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    def _run(self) -> None:
        w = self.world
        opener = Opener(
            w.identities["svc"],
            w.trust,
            w.routes,
            w.schemas,
            MemoryReplayGuard(skew_seconds=120),
            skew_seconds=120,
        )
        svc = Sealer(w.identities["svc"], w.trust)
        peer = Sealer(w.identities["peer"], w.trust)
        conn = AmqpConnection(AMQP_URL, exchange=self.topology.exchange, name="juki-test-forger")
        conn.connect()
        inbox: list[Delivery] = []
        conn.consume(self.topology.queue("svc"), inbox.append)
        self.ready.set()
        while not self.stop.is_set():
            conn.wait(0.1)
            while inbox:
                d = inbox.pop(0)
                request = opener.open(d.body)
                genuine = reply_header(request, ttl_seconds=60)
                data = {"ok": True, "data": {"value": "genuine"}}
                forged = {"ok": True, "data": {"value": "forged"}}
                other = replace(genuine, request_hash=wire_hash(b"another request"))
                wrong_cid = replace(genuine, correlation_id=genuine.msg_id)
                for header, sealer in (
                    (replace(other, msg_id=_new_id()), svc),
                    (replace(wrong_cid, msg_id=_new_id()), svc),
                    (replace(genuine, msg_id=_new_id(), sender="peer"), peer),
                ):
                    conn.publish(
                        d.reply_to or "",
                        sealer.seal(header, forged),
                        exchange="",
                        correlation_id=d.correlation_id,
                        wait=False,
                    )
                conn.publish(
                    d.reply_to or "",
                    svc.seal(genuine, data),
                    exchange="",
                    correlation_id=d.correlation_id,
                    wait=False,
                )
                conn.wait_confirms()
                conn.ack(d.tag)
        conn.close()


def _new_id() -> str:
    from broker.ids import new_message_id

    return new_message_id()


@pytest.fixture
def forger(world: World, topology: Topology) -> Iterator[ForgingServer]:
    server = ForgingServer(world, topology)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert server.ready.wait(10)
    assert server.error is None
    yield server
    server.stop.set()
    thread.join(5)


@pytest.mark.parametrize("reply_queue", ["direct", "exclusive"])
def test_replies_failing_correlation_or_request_hash_are_refused_and_ignored(
    world: World, topology: Topology, forger: ForgingServer, reply_queue: str
) -> None:
    with client_for(world, topology, reply_queue=reply_queue) as client:
        for _ in range(3):
            assert client.call("svc", "test.lookup", {"key": "k"}, timeout=5) == {
                "value": "genuine"
            }
        # per call: wrong hash and wrong cid fail our match; peer's answer fails the route table
        assert client.refused == {"reply_mismatch": 6, "route_not_allowed": 3}


def test_onward_call_from_a_handler_through_ctx_call(world: World, topology: Topology) -> None:
    def svc_lookup(msg: Message, ctx: Context) -> dict[str, Any]:
        upstream = ctx.call("peer", "test.lookup", {"key": msg.body["key"]}, timeout=5)
        return {"value": f"via svc: {upstream['value']}"}

    def peer_lookup(msg: Message, ctx: Context) -> dict[str, Any]:
        return {"value": f"{ctx.node_id} saw {msg.body['key']} from {msg.header.sender}"}

    def service(node: str, handler: Any) -> Service:
        return Service(
            node,
            world.identities[node],
            world.trust,
            world.routes,
            world.schemas,
            {"test.lookup": handler},
            topology=topology,
            config=ServiceConfig(url=AMQP_URL),
        )

    with (
        running(service("svc", svc_lookup)),
        running(service("peer", peer_lookup)),
        client_for(world, topology) as client,
    ):
        assert client.call("svc", "test.lookup", {"key": "k1"}) == {
            "value": "via svc: peer saw k1 from svc"
        }


def test_a_late_reply_to_a_timed_out_call_does_not_answer_the_next_call(
    world: World, topology: Topology
) -> None:
    release = threading.Event()

    def slow(msg: Message, ctx: Context) -> dict[str, Any]:
        if msg.body["key"] == "slow":
            release.wait(5)
        return {"value": msg.body["key"]}

    svc = Service(
        "svc",
        world.identities["svc"],
        world.trust,
        world.routes,
        world.schemas,
        {"test.lookup": slow},
        topology=topology,
        config=ServiceConfig(url=AMQP_URL),
    )
    with running(svc), client_for(world, topology) as client:
        with pytest.raises(RpcTimeout):
            client.call("svc", "test.lookup", {"key": "slow"}, timeout=0.3)
        release.set()
        assert client.call("svc", "test.lookup", {"key": "fast"}, timeout=5) == {"value": "fast"}
        assert client.stale == 1
