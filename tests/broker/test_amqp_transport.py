"""The AMQP transport and topology on the real RabbitMQ."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from broker.amqp import AmqpConnection, Backoff
from broker.errors import BrokerError, BrokerUnavailable, Unroutable
from broker.topology import Topology, export_definitions

from .conftest import AMQP_URL, drain

pytestmark = pytest.mark.rabbitmq


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_export_definitions_has_every_node_queue_bound_and_dead_lettered() -> None:
    topo = Topology.isolated("x", queue_type="quorum")
    defs = export_definitions(topo, ["cs.1", "pref.2"])
    exchanges = {e["name"]: e for e in defs["exchanges"]}
    assert exchanges["x.juki"]["type"] == "direct" and exchanges["x.juki"]["durable"]
    assert exchanges["x.juki.dlx"]["type"] == "fanout"
    queues = {q["name"]: q for q in defs["queues"]}
    node_q = queues["x.juki.node.cs.1"]
    assert node_q["durable"] is True
    assert node_q["arguments"] == {
        "x-dead-letter-exchange": "x.juki.dlx",
        "x-queue-type": "quorum",
    }
    assert "x.juki.dead" in queues
    bindings = {(b["source"], b["destination"], b["routing_key"]) for b in defs["bindings"]}
    assert bindings == {
        ("x.juki", "x.juki.node.cs.1", "cs.1"),
        ("x.juki", "x.juki.node.pref.2", "pref.2"),
        ("x.juki.dlx", "x.juki.dead", ""),
    }


def test_classic_topology_has_no_queue_type_argument() -> None:
    assert Topology().queue_arguments() == {"x-dead-letter-exchange": "juki.dlx"}
    with pytest.raises(ValueError):
        Topology(queue_type="stream")


def test_declared_queue_receives_by_node_id_and_dead_letters_a_rejection(
    admin: AmqpConnection, topology: Topology
) -> None:
    admin.publish("svc", b"hello", persistent=True, mandatory=True)
    got = drain(admin, topology.queue("svc"), 1)
    assert got[0].body == b"hello"
    # a consumer's reject without requeue lands in the DLQ through x-dead-letter-exchange
    admin.publish("svc", b"rejected", persistent=True)
    seen: list = []
    admin.consume(topology.queue("svc"), seen.append)
    admin.wait_for(lambda: bool(seen), 5)
    admin.nack(seen[0].tag, requeue=False)
    dead = drain(admin, topology.dead_letter_queue, 1)
    assert dead[0].body == b"rejected"


def test_quorum_queues_can_be_declared(admin: AmqpConnection) -> None:
    topo = Topology.isolated(f"q{time.monotonic_ns()}", queue_type="quorum")
    try:
        admin.declare_topology(topo, ["n1"])
        admin.publish("n1", b"q", exchange=topo.exchange, persistent=True, mandatory=True)
        assert drain(admin, topo.queue("n1"), 1)[0].body == b"q"
        # redeclaring the same queue as classic is refused by the broker: proof it is quorum
        with pytest.raises(BrokerError):
            admin.declare_topology(Topology.isolated(topo.exchange[:-5], "classic"), ["n1"])
    finally:
        admin.connect()
        admin.queue_delete(topo.queue("n1"))
        admin.queue_delete(topo.dead_letter_queue)
        admin.exchange_delete(topo.exchange)
        admin.exchange_delete(topo.dead_letter_exchange)


def test_mandatory_publish_to_no_queue_raises_unroutable(admin: AmqpConnection) -> None:
    with pytest.raises(Unroutable):
        admin.publish("nobody-home", b"x", persistent=True, mandatory=True)
    # the channel stays usable after a return
    admin.publish("svc", b"after", persistent=True, mandatory=True)


def test_batch_confirms_cover_every_message_and_name_the_returned_ones(
    admin: AmqpConnection, topology: Topology
) -> None:
    tags = [admin.publish("svc", b"%d" % i, persistent=True, wait=False) for i in range(300)]
    bad = admin.publish("nobody", b"lost?", persistent=True, mandatory=True, wait=False)
    failures = admin.wait_confirms()
    assert set(failures) == {bad}
    assert isinstance(failures[bad], Unroutable)
    assert len(set(tags)) == 300
    assert admin.queue_depth(topology.queue("svc")) == 300


def test_unreachable_broker_is_broker_unavailable_and_backoff_is_bounded() -> None:
    conn = AmqpConnection(f"amqp://guest:guest@127.0.0.1:{closed_port()}/%2F", name="juki-nowhere")
    with pytest.raises(BrokerUnavailable):
        conn.connect()
    start = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        conn.connect(retry_for=0.6)
    elapsed = time.monotonic() - start
    assert 0.2 < elapsed < 3.0
    with pytest.raises(BrokerUnavailable):
        conn.publish("svc", b"x")


def test_backoff_grows_to_its_bound_with_jitter() -> None:
    delays = Backoff(initial=0.1, maximum=1.0, factor=2.0, jitter=0.25).delays()
    values = [next(delays) for _ in range(8)]
    assert 0.075 <= values[0] <= 0.125
    assert all(0.75 <= v <= 1.25 for v in values[4:])
    assert values[3] > values[0]


def test_password_never_appears_in_unavailable_error() -> None:
    conn = AmqpConnection(f"amqp://guest:s3cret@127.0.0.1:{closed_port()}/%2F")
    with pytest.raises(BrokerUnavailable) as info:
        conn.connect()
    assert "s3cret" not in str(info.value)


@pytest.fixture
def sender(topology: Topology) -> Iterator[AmqpConnection]:
    """An unconfirmed publisher, as RPC clients and reply publishers are."""
    conn = AmqpConnection(
        AMQP_URL, exchange=topology.exchange, name="juki-test-sender", confirms=False
    )
    conn.connect()
    yield conn
    conn.close()


def test_a_publish_leaves_without_another_pass_of_the_io_loop(
    admin: AmqpConnection, sender: AmqpConnection, topology: Topology
) -> None:
    """Written at once (write-through): the receiver has it although the publisher's loop never
    ran again — an RPC's request no longer waits for the caller's next poll to be sent."""
    sender.publish("svc", b"at once", wait=False)
    assert drain(admin, topology.queue("svc"), 1)[0].body == b"at once"


def test_a_message_larger_than_the_socket_buffer_arrives_whole(
    admin: AmqpConnection, sender: AmqpConnection, topology: Topology
) -> None:
    """What the socket does not take at once is queued behind what it took, in order."""
    big = bytes(range(256)) * (6 * 4096)  # 6 MiB: several socket buffers
    sender.publish("svc", big, wait=False)
    sender.publish("svc", b"after", wait=False)
    sender.flush()
    got = drain(admin, topology.queue("svc"), 2, timeout=30)
    assert [d.body for d in got] == [big, b"after"]


def test_a_consumer_cancelled_by_the_broker_is_a_clear_error(
    admin: AmqpConnection, topology: Topology
) -> None:
    # the queue deleted under its consumer (an operator, a lost cluster node): RabbitMQ cancels
    # the consumer; the next wait says so, instead of the connection dying inside pika
    queue = f"{topology.queue_prefix}cancelled"
    consumer = AmqpConnection(AMQP_URL, name="juki-test-cancelled", confirms=False)
    consumer.connect()
    consumer.queue_declare(queue)
    consumer.consume(queue, lambda _d: None)
    admin.queue_delete(queue)
    with pytest.raises(BrokerError, match="cancelled by the broker"):
        for _ in range(50):
            consumer.wait(0.1)
    assert not consumer.connected
    consumer.connect()  # and it comes back
    consumer.queue_declare(queue)
    consumer.consume(queue, lambda _d: None)
    consumer.queue_delete(queue)  # deleting the queue one consumes: no error either
    consumer.close()
