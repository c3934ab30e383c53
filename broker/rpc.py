"""照会の呼出し (the RPC client): sealed request → sealed reply, with a deadline.

One `RpcClient` per thread: it owns a pika connection, and pika connections are never shared
across threads. The terminal's workers, a node's service loop (for `ctx.call`) and each benchmark
thread build their own.

Replies come back on RabbitMQ's direct reply-to pseudo-queue (`amq.rabbitmq.reply-to`) by
default. bench/rpc.py (`--reply-queue direct|exclusive`) found no difference between it and an
exclusive auto-delete queue beyond the noise of a shared 2-core host, so the choice rests on
what direct reply-to saves: no queue declared per client, nothing left behind by a crashed one.
`reply_queue="exclusive"` remains available (e.g. for a broker with direct reply-to disabled).

A reply is accepted only when all of these hold, else it is refused (counted) and ignored, and
the call keeps waiting for the genuine one until its deadline:
- the envelope opens (signature, recipient = us, not expired, not a replay, route, schema);
- it is a reply, from the node we called, whose correlation id is our request's id;
- its request hash is the BLAKE2b of the exact request bytes we sent (binds the answer to the
  question, so a reply to another request of the same node cannot be substituted).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from broker.amqp import DIRECT_REPLY_TO, AmqpConnection, Delivery
from broker.envelope import Header, Kind, Message, Opener, Sealer, wire_hash
from broker.errors import BrokerUnavailable, Refused, RemoteError, RpcTimeout, Unroutable
from broker.ids import new_message_id
from broker.keys import Identity, TrustStore
from broker.replay import MemoryReplayGuard
from broker.routes import RouteTable
from broker.schema import SchemaRegistry
from broker.topology import Topology

log = logging.getLogger(__name__)


class RpcClient:
    """Calls other nodes. Not thread-safe: one per thread.

    Args:
        node_id, identity, trust, routes, schemas: who we are and what we accept.
        url: AMQP URL.
        topology: the exchange requests are published to.
        default_timeout: a call's deadline when none is given.
        reply_queue: "direct" (amq.rabbitmq.reply-to) or "exclusive" (a private queue).
    """

    def __init__(
        self,
        node_id: str,
        identity: Identity,
        trust: TrustStore,
        routes: RouteTable,
        schemas: SchemaRegistry,
        url: str,
        topology: Topology,
        *,
        default_timeout: float = 10.0,
        skew_seconds: float = 120.0,
        reply_queue: str = "direct",
        clock: Callable[[], float] = time.time,
        name: str | None = None,
    ) -> None:
        if reply_queue not in ("direct", "exclusive"):
            raise ValueError("reply_queue must be 'direct' or 'exclusive'")
        self.node_id = node_id
        self.default_timeout = default_timeout
        self._clock = clock
        self._sealer = Sealer(identity, trust)
        self._replay = MemoryReplayGuard(skew_seconds=skew_seconds, clock=clock)
        self._opener = Opener(
            identity, trust, routes, schemas, self._replay, skew_seconds=skew_seconds, clock=clock
        )
        self._url = url
        self._topology = topology
        self._reply_mode = reply_queue
        self._name = name or f"juki-rpc-{node_id}"
        self._conn = AmqpConnection(
            url, exchange=topology.exchange, name=self._name, confirms=False
        )
        self._notifier: AmqpConnection | None = None
        self._reply_to = ""
        # the call in flight: (request id, recipient, request hash) and its outcome
        self._expect: tuple[str, str, bytes] | None = None
        self._result: Message | None = None
        self.refused: Counter[str] = Counter()
        self.stale = 0

    def close(self) -> None:
        self._conn.close()
        if self._notifier is not None:
            self._notifier.close()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _ensure(self) -> AmqpConnection:
        conn = self._conn
        if not conn.connected:
            conn.connect()
            if self._reply_mode == "direct":
                self._reply_to = DIRECT_REPLY_TO
                conn.consume(DIRECT_REPLY_TO, self._on_reply, auto_ack=True)
            else:
                self._reply_to = conn.declare_reply_queue()
                conn.consume(self._reply_to, self._on_reply, auto_ack=True, exclusive=True)
        return conn

    def call(
        self,
        recipient: str,
        type: str,
        body: dict[str, Any],
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send a request and wait for its reply's data.

        Raises:
            RpcTimeout: no acceptable reply before the deadline (node stopped, slow, refused us).
            RemoteError: the node answered with an error reply.
            Unroutable: no queue exists for `recipient`.
            BrokerUnavailable: RabbitMQ cannot be reached.
        """
        seconds = self.default_timeout if timeout is None else timeout
        now = self._clock()
        msg_id = new_message_id()
        now_ms = int(now * 1000)
        header = Header(
            1,
            msg_id,
            Kind.REQUEST,
            type,
            self.node_id,
            recipient,
            now_ms,
            now_ms + int(seconds * 1000),
        )
        wire = self._sealer.seal(header, body)
        conn = self._ensure()
        self._expect = (msg_id, recipient, wire_hash(wire))
        self._result = None
        try:
            conn.publish(
                recipient,
                wire,
                mandatory=True,
                reply_to=self._reply_to,
                correlation_id=msg_id,
                message_id=msg_id,
                wait=False,  # written by the wait below: one I/O loop pass per call
            )
            deadline = time.monotonic() + seconds
            while self._result is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RpcTimeout(recipient, type, seconds)
                conn.wait_for(
                    lambda: self._result is not None or conn.was_returned(msg_id), remaining
                )
                why = conn.take_return(msg_id)
                if why is not None:
                    raise Unroutable(f"no queue for {recipient!r}: {why}")
        except BrokerUnavailable:
            self._conn.close()
            raise
        finally:
            self._expect = None
        result = self._result
        self._result = None
        reply = result.body
        if reply.get("ok") is True:
            data: dict[str, Any] = reply["data"]
            return data
        raise RemoteError(reply["code"], reply["message"], reply.get("title", ""))

    def _on_reply(self, d: Delivery) -> None:
        expect = self._expect
        if expect is None or d.correlation_id != expect[0]:
            self.stale += 1  # a late reply to a call that already timed out
            return
        try:
            msg = self._opener.open(d.body)
        except Refused as exc:
            self.refused[exc.reason.value] += 1
            log.info("%s: refused a reply: %s", self.node_id, exc.reason.value)
            return
        h = msg.header
        if (
            h.kind is not Kind.REPLY
            or h.correlation_id != expect[0]
            or h.sender != expect[1]
            or h.request_hash != expect[2]
        ):
            self.refused["reply_mismatch"] += 1
            log.info("%s: refused a reply not matching request %s", self.node_id, expect[0])
            return
        self._replay.remember(h.msg_id, h.deadline)
        self._result = msg

    def notify(
        self, recipient: str, type: str, body: dict[str, Any], *, ttl: float = 3600.0
    ) -> str:
        """Publish a notice directly (persistent, mandatory, confirmed); returns its id.

        For callers without an outbox (tests, tools). Nodes send through `ctx.send` instead, so
        the notice commits with their state change.
        """
        now_ms = int(self._clock() * 1000)
        msg_id = new_message_id()
        header = Header(
            1, msg_id, Kind.NOTICE, type, self.node_id, recipient, now_ms, now_ms + int(ttl * 1000)
        )
        wire = self._sealer.seal(header, body)
        if self._notifier is None:
            self._notifier = AmqpConnection(
                self._url, exchange=self._topology.exchange, name=f"{self._name}-notify"
            )
        notifier = self._notifier
        notifier.connect()
        try:
            notifier.publish(recipient, wire, persistent=True, mandatory=True)
        except BrokerUnavailable:
            notifier.close()
            raise
        return msg_id
