"""Onward requests (handlers that call another node) run on worker threads: while one waits for a
slow upstream, the node keeps applying notices and answering other requests; the answer still
comes back through the loop, and what the worker wrote commits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from broker.envelope import Message
from broker.errors import RemoteError
from broker.journal import MemoryJournal
from broker.rpc import RpcClient
from broker.service import Context, HandlerError, onward, running
from broker.topology import Topology

from .conftest import World, client_for, eventually, make_service

pytestmark = pytest.mark.rabbitmq


class Upstream:
    """The `peer` node: its echo waits until the test releases it (a slow prefecture, say)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.asked = threading.Event()

    def echo(self, msg: Message, ctx: Context) -> dict[str, Any]:
        self.asked.set()
        self.release.wait(20)
        return {"payload": msg.body["payload"]}


_CONFIG = {"prefetch": 64, "batch_size": 32, "rpc_timeout": 15.0}


@pytest.fixture
def nodes(world: World, topology: Topology) -> Iterator[tuple[MemoryJournal, Upstream, RpcClient]]:
    journal = MemoryJournal()
    upstream = Upstream()

    @onward
    def relayed_lookup(msg: Message, ctx: Context) -> dict[str, Any]:
        key = msg.body["key"]
        journal.effects.append(("before call", key))
        try:
            answer = ctx.call("peer", "echo", {"payload": key.encode()})
        except RemoteError as exc:
            raise HandlerError("upstream", exc.message, commit=True) from None
        journal.effects.append(("after call", key))
        ctx.send("peer", "test.relay", {"n": 1, "text": key})
        if key == "refuse":
            raise HandlerError("refused", "after the call", commit=False)
        return {"value": answer["payload"].decode().upper()}

    def notice(msg: Message, ctx: Context) -> None:
        journal.effects.append(("notice", msg.body["text"]))

    def echo(msg: Message, ctx: Context) -> dict[str, Any]:
        return {"payload": msg.body["payload"]}

    handlers = {"test.lookup": relayed_lookup, "demo.notice": notice, "echo": echo}
    svc = make_service(world, topology, "svc", handlers, journal, **_CONFIG)
    peer = make_service(
        world, topology, "peer", {"echo": upstream.echo}, MemoryJournal(), **_CONFIG
    )
    client = client_for(world, topology, default_timeout=20.0)
    with running(peer), running(svc):
        yield journal, upstream, client
        upstream.release.set()
    client.close()


def test_a_waiting_onward_request_blocks_neither_notices_nor_other_requests(
    nodes: Any, world: World, topology: Topology
) -> None:
    journal, upstream, client = nodes
    answers: list[Any] = []
    caller = threading.Thread(
        target=lambda: answers.append(client.call("svc", "test.lookup", {"key": "abc"}))
    )
    caller.start()
    assert upstream.asked.wait(10)  # the worker is inside ctx.call, waiting for the upstream
    # meanwhile the loop goes on: a notice is applied and another request answered
    other = client_for(world, topology, default_timeout=5.0)
    try:
        other.notify("svc", "demo.notice", {"seq": 1, "text": "while waiting"})
        eventually(lambda: ("notice", "while waiting") in journal.effects)
        assert other.call("svc", "echo", {"payload": b"x"}) == {"payload": b"x"}
    finally:
        other.close()
    assert caller.is_alive() and not answers  # the relayed lookup is still waiting
    upstream.release.set()
    caller.join(15)
    assert answers == [{"value": "ABC"}]
    # the worker's writes after the call committed: the onward notice is in the outbox
    assert [e.body for e in journal.outbox_pending(10)] == [{"n": 1, "text": "abc"}]
    assert journal.effects.index(("notice", "while waiting")) < journal.effects.index(
        ("after call", "abc")
    )


def test_a_refusal_after_the_call_rolls_back_what_followed_the_call(nodes: Any) -> None:
    journal, upstream, client = nodes
    upstream.release.set()
    with pytest.raises(RemoteError) as refused:
        client.call("svc", "test.lookup", {"key": "refuse"})
    assert refused.value.code == "refused"
    assert journal.outbox_pending(10) == []  # ctx.send after the call was rolled back
    assert ("after call", "refuse") not in journal.effects
    # what was written before the call had committed before the call was made
    assert ("before call", "refuse") in journal.effects
