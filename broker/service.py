"""ノードの受信ループ (a node's service loop): receive → verify → dispatch → commit → reply → ack.

Handlers are plain functions `handler(message, ctx) -> dict | None` with their dependencies in
`ctx`, so they are unit-testable without a broker; this module owns everything around them.

Group commit. A durable notice costs one database transaction and one broker ack; done one at a
time, the disk's fsync rate caps a node at a few hundred notices per second. The loop therefore
takes the deliveries already prefetched (up to `batch_size`), handles each inside its own
savepoint of ONE journal transaction, commits once, publishes whatever the batch produced
(dead letters and retries with confirms, replies) and acks the whole batch with one
`multiple=True` ack. A failing handler rolls back only its own savepoint. Throughput then scales
with the batch, not the fsync rate (bench/propagation.py measures it); latency grows by at most
one batch's handling time. A batch of notices only is first run without the savepoints (they
cost a tenth of a tier's time per update); when a handler fails in that pass, the pass is rolled
back whole and the batch runs again with them. A handler may therefore run twice, its first run
undone: handlers keep their effects in the store, where the rollback reaches them.

Exactly-once. The inbox row, the business change and onward outbox rows commit together. A crash
before the commit leaves the deliveries unacked: RabbitMQ redelivers them and they are handled
as new. A crash after the commit but before the ack makes RabbitMQ redeliver messages whose ids
are in the inbox: these are recognised as redeliveries (the `redelivered` flag + a replay
refusal) and acked silently, counted as `duplicates`, not dead-lettered as replays. A replayed
copy published by someone else is not flagged as redelivered and is refused as `replay`.

Refusals (envelope checks, unknown types, handler business errors on notices, poison) are
recorded in the journal, published to the dead-letter exchange with `x-juki-reason`,
`x-juki-detail` and `x-juki-node` headers plus the original headers, then acked: never dropped.
Refused requests are not answered (the sender may not be who it claims; it sees a timeout).

Bundles. The outbox relay carries several notices for one recipient in one `bundle` envelope
(broker/bundle.py). Each item is handled exactly like a notice of its own — route and schema
checks on its type, its own savepoint and inbox row, its own refusal record and dead letter
(the bundle's bytes, with `x-juki-item`) — and an item already in the inbox (relayed again in a
later bundle after a crash) is skipped as a duplicate. The bundle's own id enters the inbox once
all its items are done.

Onward requests. A request whose handler asks another node (`ctx.call`: a national query relayed
through the prefecture, 住民票コード candidates, card state from 機構) is marked with `onward` and
runs on a worker thread, not on the loop: an upstream that is slow or down (a call waits up to
its deadline) must not stop this node applying notices or answering its own queries meanwhile.
The worker has its own store connection and transaction; it commits before each call and opens
a new transaction after it, so the store's write lock is never held across a call. Its reply is
handed back to the loop, which publishes it. Such a request is acked with its batch at once:
requests are at-most-once anyway (a crash loses the reply and the caller times out).

Stale notices. The inbox cannot keep every applied id for ever (the national server would hold
one row per 異動 in Japan): the node's purge forgets ids made longer ago than `inbox_keep` (plus
a day). A notice whose id was made longer ago than `inbox_keep` could then not be told apart from
one already applied, so it is refused as `stale` (recorded, dead-lettered) instead of being
applied — whether it is a sender's row relayed again after a very long outage or a captured copy
replayed while its deadline still runs. The keep (90 days by default) is far longer than a
notice's validity, so an ordinary outage never makes a notice stale; one that does is in the
dead-letter queue, and `juki consistency run --repair` re-sends the records it carried.

Poison. A handler exception on a notice rolls back its savepoint; the original bytes are
re-published to the node's own queue with `x-juki-attempts` incremented (confirmed before the
original is acked), and after `max_attempts` handler failures the message is dead-lettered with
reason `poison` and the exception text.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

from broker.amqp import AmqpConnection, Backoff, Delivery
from broker.bundle import is_bundle, open_items
from broker.envelope import Header, Kind, Message, Opener, Sealer, peek_header, reply_header
from broker.errors import BrokerError, BrokerUnavailable, Reason, Refused
from broker.ids import first_id_at, id_time_ms, new_message_id
from broker.journal import Journal
from broker.keys import Identity, TrustStore
from broker.replay import CombinedReplayGuard, MemoryReplayGuard
from broker.routes import RouteTable
from broker.schema import SchemaRegistry
from broker.topology import Topology

log = logging.getLogger(__name__)

ATTEMPTS_HEADER = "x-juki-attempts"
REASON_HEADER = "x-juki-reason"
DETAIL_HEADER = "x-juki-detail"
NODE_HEADER = "x-juki-node"
ITEM_HEADER = "x-juki-item"
ITEM_TYPE_HEADER = "x-juki-item-type"
_DONE, _RETRY, _REFUSED = 0, 1, 2
_DETAIL_MAX = 1000


class HandlerError(Exception):
    """A business refusal raised by a handler: an error reply (requests) or a refusal record +
    dead letter (notices). `code` is stable and machine-readable; `title` is shown to operators."""

    def __init__(
        self, code: str, message: str, title: str = "処理できません", *, commit: bool = False
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.title = title
        self.commit = commit
        """Requests only: commit what the handler wrote before refusing (an audit row of the
        refusal must survive it; the seed keeps refused provisions too)."""


Handler = Callable[[Message, "Context"], "dict[str, Any] | None"]


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """What the loop needs from appliance.toml ([broker] and [policy]); built at the edge."""

    url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    """AMQP URL."""
    prefetch: int = 256
    """Unacked deliveries the broker may push ahead; bounds a group commit."""
    batch_size: int = 128
    """Most deliveries handled in one journal transaction (group commit)."""
    max_attempts: int = 5
    """Handler failures before a notice is dead-lettered as poison."""
    heartbeat: int = 30
    """AMQP heartbeat seconds."""
    skew_seconds: float = 120.0
    """Clock tolerance for expiry / from-the-future checks."""
    rpc_timeout: float = 10.0
    """Default deadline of onward calls (`ctx.call`)."""
    notice_ttl: float = 30 * 24 * 3600.0
    """Validity of notices relayed from the outbox."""
    reply_ttl: float = 60.0
    """Validity of a reply; generous, the caller matches it to a pending call anyway."""
    replay_capacity: int = 500_000
    """Most message ids the in-memory replay guard holds (requests, and refusals not to repeat;
    applied notices are in the journal's inbox instead)."""
    onward_workers: int = 4
    """Worker threads for `onward` requests (those that call other nodes)."""
    inbox_keep: float = 90 * 24 * 3600.0
    """How long applied notice ids are remembered; a notice made longer ago is refused as stale
    (see "Stale notices")."""

    def __post_init__(self) -> None:
        if self.inbox_keep < self.notice_ttl + self.skew_seconds:
            # a notice still valid on the wire must still be told apart from an applied one
            raise ValueError("inbox_keep must be at least notice_ttl + skew_seconds")

    @classmethod
    def from_appliance(cls, broker: Any, policy: Any, **overrides: Any) -> ServiceConfig:
        """Build from juki.config's BrokerConfig and PolicyConfig (duck-typed: broker/ imports
        nothing outside itself)."""
        values: dict[str, Any] = {
            "url": broker.url,
            "prefetch": broker.prefetch,
            "batch_size": min(broker.prefetch, 256),
            "max_attempts": broker.max_attempts,
            "heartbeat": broker.heartbeat,
            "skew_seconds": policy.clock_skew_seconds,
            "rpc_timeout": policy.rpc_timeout_seconds,
            "notice_ttl": policy.notice_ttl_seconds,
            "inbox_keep": policy.inbox_keep_days * 86400.0,
        }
        values.update(overrides)
        return cls(**values)


class Context:
    """What a handler may do besides computing its result: know the time, send, call."""

    __slots__ = ("_service", "_tx", "_worker", "message", "node_id")

    def __init__(self, service: Service, message: Message, *, worker: bool = False) -> None:
        self._service = service
        self.node_id = service.node_id
        self.message = message
        self._worker = worker
        self._tx: AbstractContextManager[Any] | None = None

    def now(self) -> float:
        return self._service.clock()

    def send(
        self,
        recipient: str,
        type: str,
        body: dict[str, Any],
        correlation_id: str | None = None,
    ) -> str:
        """Write an onward notice to the outbox in the current transaction; returns its id.

        The body and route are checked now, so a programming error fails the handler (and is
        retried / dead-lettered) instead of leaving an unrelayable row at the outbox's head.
        """
        return self._service.send(recipient, type, body, correlation_id)

    def call(
        self, recipient: str, type: str, body: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """An onward RPC through the service's RpcClient for this thread; raises RpcTimeout /
        RemoteError. On a worker (`onward` handlers) what was written so far commits first and a
        new transaction opens after the call, so no store lock is held while waiting."""
        if not self._worker:
            data: dict[str, Any] = self._service.rpc().call(recipient, type, body, timeout)
            return data
        self._end(None)
        try:
            data = self._service.rpc().call(recipient, type, body, timeout)
        finally:
            self._begin()
        return data

    def _begin(self) -> None:
        journal = self._service.journal
        if journal is not None and self._tx is None:
            tx = journal.atomic()
            tx.__enter__()
            self._tx = tx

    def _end(self, exc: BaseException | None) -> None:
        """Commit (exc None) or roll back the worker's open transaction."""
        tx, self._tx = self._tx, None
        if tx is None:
            return
        if exc is None:
            tx.__exit__(None, None, None)
            self._service.committed()
            return
        try:
            tx.__exit__(type(exc), exc, exc.__traceback__)
        except BaseException as raised:  # a generator-based atomic re-raises what it was given
            if raised is not exc:
                raise


H = TypeVar("H", bound=Callable[..., Any])


def onward(handler: H) -> H:
    """Mark a request handler that calls other nodes: the service runs it on a worker thread
    (see "Onward requests" above) so that waiting for the upstream blocks nothing else."""
    handler.juki_onward = True  # type: ignore[attr-defined]
    return handler


class _InboxGuard:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def seen(self, msg_id: str) -> bool:
        return self._journal.inbox_contains(msg_id)


class _Abort(Exception):
    """A notice failed in a pass without savepoints: roll the pass back, run it carefully."""


class _Batch:
    """What one group commit produced, published after the commit and before the ack."""

    __slots__ = ("dead", "remember", "replies", "retries")

    def __init__(self) -> None:
        self.dead: list[tuple[bytes, dict[str, Any]]] = []
        self.retries: list[tuple[bytes, dict[str, Any]]] = []
        self.replies: list[tuple[str, bytes, str]] = []
        self.remember: list[tuple[str, int]] = []


class Service:
    """One node's consume loop. Construct, then `run(stop)` on a thread of its own.

    Args:
        node_id: the node (its queue is `topology.queue(node_id)`).
        identity, trust, routes, schemas: what the Opener and Sealer need.
        handlers: message type → handler.
        journal: the node's store journal; None for nodes without durable state (then notices
            are de-duplicated in memory only and `ctx.send` is unavailable).
        topology: exchange / queue names.
        config: see ServiceConfig.
        rpc_factory: builds the RpcClient for `ctx.call` (default: broker.rpc.RpcClient).
        on_commit: called after a batch that wrote outbox rows committed (the runtime passes
            `OutboxRelay.wake`, so onward notices leave without waiting for the relay's poll).
    """

    def __init__(
        self,
        node_id: str,
        identity: Identity,
        trust: TrustStore,
        routes: RouteTable,
        schemas: SchemaRegistry,
        handlers: Mapping[str, Handler],
        journal: Journal | None = None,
        *,
        topology: Topology,
        config: ServiceConfig,
        clock: Callable[[], float] = time.time,
        rpc_factory: Callable[[], Any] | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        if identity.node_id != node_id:
            raise ValueError(f"identity is {identity.node_id!r}, not {node_id!r}")
        self.node_id = node_id
        self.identity = identity
        self.trust = trust
        self.routes = routes
        self.schemas = schemas
        self.handlers = dict(handlers)
        self.journal = journal
        self.topology = topology
        self.config = config
        self.clock = clock
        self._rpc_factory = rpc_factory
        self._on_commit = on_commit
        self._sent_in_batch = 0
        self._careful = True  # the current pass has a savepoint per notice (see _process)
        self._stale_below = first_id_at(0)  # set per batch: notices with smaller ids are stale
        self._rpc_local = threading.local()  # one RpcClient per thread (loop and workers)
        self._rpc_clients: list[Any] = []
        self._rpc_lock = threading.Lock()
        self._workers: ThreadPoolExecutor | None = None
        # (reply_to, wire, request id, type) finished by workers, published by the loop
        self._finished: queue.SimpleQueue[tuple[str | None, bytes | None, str, str]] = (
            queue.SimpleQueue()
        )
        self._memory = MemoryReplayGuard(
            skew_seconds=config.skew_seconds, capacity=config.replay_capacity, clock=clock
        )
        guard = (
            CombinedReplayGuard(self._memory, _InboxGuard(journal))
            if journal is not None
            else self._memory
        )
        self._opener = Opener(
            identity, trust, routes, schemas, guard, skew_seconds=config.skew_seconds, clock=clock
        )
        self._sealer = Sealer(identity, trust)
        self._queue = topology.queue(node_id)
        self._conn = AmqpConnection(
            config.url,
            exchange=topology.exchange,
            name=f"juki-svc-{node_id}",
            heartbeat=config.heartbeat,
            confirms=True,
        )
        self._pending: list[Delivery] = []
        # health figures; written by the loop thread only, read by health() from any thread
        self._processed: Counter[str] = Counter()
        self._refused: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._last_error: str | None = None
        self._last_lag: float | None = None
        self._last_batch_at: float | None = None
        self._connected = False
        self.ready = threading.Event()

    # -- public -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; reconnects (with backoff) whenever the broker is lost.

        Sets `ready` once the queue is being consumed (tests and the runtime wait on it).
        """
        delays = Backoff().delays()
        try:
            while not stop.is_set():
                try:
                    self._connect(stop)
                    delays = Backoff().delays()
                    self._loop(stop)
                except (BrokerUnavailable, BrokerError) as exc:
                    self._connected = False
                    self._pending.clear()  # unacked: RabbitMQ redelivers them
                    self._last_error = str(exc)
                    self._counts["disconnects"] += 1
                    log.warning("%s: broker connection lost: %s", self.node_id, exc)
                    self._conn.close()
                    stop.wait(next(delays))
        finally:
            self._connected = False
            if self._workers is not None:
                # calls in flight end by their own deadlines; their replies are not sent
                self._workers.shutdown(wait=False, cancel_futures=True)
            self._conn.close()
            with self._rpc_lock:
                clients, self._rpc_clients = self._rpc_clients, []
            for client in clients:
                client.close()

    def health(self) -> dict[str, Any]:
        """A snapshot for the control plane (`juki ctl health`)."""
        depth: int | None = None
        if self.journal is not None:
            try:
                depth = self.journal.outbox_depth()
            except Exception as exc:  # health must answer even when the store is sick
                depth = None
                self._last_error = f"outbox depth: {exc!r}"
        return {
            "node": self.node_id,
            "connected": self._connected,
            "processed": dict(self._processed.copy()),
            "refused": dict(self._refused.copy()),
            "duplicates": self._counts["duplicates"],
            "bundles": self._counts["bundles"],
            "retried": self._counts["retried"],
            "batches": self._counts["batches"],
            "onward": self._counts["onward"],
            "careful_batches": self._counts["careful_batches"],
            "disconnects": self._counts["disconnects"],
            "prefetched": len(self._pending),
            "outbox_depth": depth,
            "inbox_lag_seconds": self._last_lag,
            "last_batch_at": self._last_batch_at,
            "last_error": self._last_error,
        }

    def rpc(self) -> Any:
        """This thread's RpcClient (its own connection: pika connections are per thread),
        created on first use."""
        client = getattr(self._rpc_local, "client", None)
        if client is None:
            if self._rpc_factory is not None:
                client = self._rpc_factory()
            else:
                from broker.rpc import RpcClient

                client = RpcClient(
                    self.node_id,
                    self.identity,
                    self.trust,
                    self.routes,
                    self.schemas,
                    self.config.url,
                    self.topology,
                    default_timeout=self.config.rpc_timeout,
                    skew_seconds=self.config.skew_seconds,
                    clock=self.clock,
                    name=f"juki-rpc-{self.node_id}-{threading.current_thread().name}",
                )
            self._rpc_local.client = client
            with self._rpc_lock:
                self._rpc_clients.append(client)
        return client

    def committed(self) -> None:
        """A transaction outside the loop's batches committed (a worker's): wake the relay."""
        if self._on_commit is not None:
            self._on_commit()

    def send(
        self, recipient: str, type: str, body: dict[str, Any], correlation_id: str | None
    ) -> str:
        if self.journal is None:
            raise RuntimeError(f"{self.node_id} has no journal: it cannot send durable notices")
        if not self.routes.allows(self.node_id, recipient, type, Kind.NOTICE):
            raise ValueError(f"route does not allow notice {type!r} to {recipient!r}")
        now = self.clock()
        msg_id = new_message_id()
        probe = Header(1, msg_id, Kind.NOTICE, type, self.node_id, recipient, 0, 0, correlation_id)
        self.schemas.validate_body(probe, body)
        self.journal.outbox_add_at_commit(msg_id, recipient, type, body, now, correlation_id)
        self._sent_in_batch += 1
        return msg_id

    # -- the loop -----------------------------------------------------------------------------

    def _connect(self, stop: threading.Event) -> None:
        self._conn.connect(retry_for=float("inf"), stop=stop)
        self._conn.declare_topology(self.topology, [self.node_id])
        self._conn.consume(self._queue, self._pending.append, prefetch=self.config.prefetch)
        self._connected = True
        self.ready.set()
        log.info("%s: consuming %s", self.node_id, self._queue)

    def _loop(self, stop: threading.Event) -> None:
        conn = self._conn
        finished = self._finished
        while not stop.is_set():
            if not finished.empty():
                self._publish_finished()
            if not self._pending:
                conn.wait(0.2)
                continue
            batch = self._pending[: self.config.batch_size]
            del self._pending[: len(batch)]
            self._process(batch)

    def _atomic(self) -> AbstractContextManager[Any]:
        return self.journal.atomic() if self.journal is not None else nullcontext()

    def _savepoint(self) -> AbstractContextManager[Any]:
        return self.journal.savepoint() if self.journal is not None else nullcontext()

    def _process(self, deliveries: list[Delivery]) -> None:
        now = self.clock()
        # Notices only (no reply_to): first without a savepoint per notice, the common case in
        # which every handler succeeds. If one fails, that pass is rolled back whole and the
        # batch runs again with savepoints, so that only the failing notice is undone.
        careful = self.journal is None or any(d.reply_to for d in deliveries)
        out: _Batch | None = None
        if not careful:
            saved = (self._counts.copy(), self._processed.copy(), self._refused.copy())
            try:
                out = self._transact(deliveries, now, careful=False)
            except _Abort:
                self._counts, self._processed, self._refused = saved
                self._counts["careful_batches"] += 1
                careful = True
        if careful:
            out = self._transact(deliveries, now, careful=True)
        if out is None:
            return
        for msg_id, deadline in out.remember:
            self._memory.remember(msg_id, deadline)
        if self._sent_in_batch and self._on_commit is not None:
            self._on_commit()
        conn = self._conn
        if out.dead or out.retries:
            for wire, headers in out.dead:
                conn.publish(
                    self.node_id,
                    wire,
                    exchange=self.topology.dead_letter_exchange,
                    persistent=True,
                    mandatory=True,
                    headers=headers,
                    wait=False,
                )
            for wire, headers in out.retries:
                conn.publish(
                    self.node_id, wire, persistent=True, mandatory=True, headers=headers, wait=False
                )
            failures = conn.wait_confirms()
            if failures:
                # The dead-letter queue or our own queue is gone: keep the batch unacked.
                raise BrokerError(f"could not dead-letter/retry: {next(iter(failures.values()))}")
        with conn.corked():
            for reply_to, wire, cid in out.replies:
                conn.publish(
                    reply_to, wire, exchange="", correlation_id=cid, confirm=False, wait=False
                )
            conn.ack(deliveries[-1].tag, multiple=True, flush=False)
        self._counts["batches"] += 1
        self._last_batch_at = self.clock()

    def _transact(self, deliveries: list[Delivery], now: float, *, careful: bool) -> _Batch | None:
        """Handle the batch in one journal transaction; None when it could not commit (the
        batch is then requeued). Raises _Abort from a pass without savepoints (rolled back)."""
        out = _Batch()
        self._sent_in_batch = 0
        self._careful = careful
        self._stale_below = first_id_at(max(0, int((now - self.config.inbox_keep) * 1000)))
        try:
            with self._atomic():
                for delivery in deliveries:
                    self._handle(delivery, now, out)
        except _Abort:
            raise
        except Exception as exc:
            # The commit itself failed (store unavailable): nothing of the batch happened.
            self._last_error = f"journal commit failed: {exc!r}"
            log.error("%s: journal commit failed; requeueing %d", self.node_id, len(deliveries))
            self._conn.nack(deliveries[-1].tag, multiple=True, requeue=True)
            time.sleep(0.5)
            return None
        return out

    def _handle(self, d: Delivery, now: float, out: _Batch) -> None:
        wire = d.body
        try:
            msg = self._opener.open(wire)
        except Refused as refused:
            if refused.reason is Reason.REPLAY and d.redelivered:
                self._counts["duplicates"] += 1
                return
            self._refuse(d, peek_header(wire), refused.reason, refused.detail, now, out)
            return
        header = msg.header
        self._last_lag = max(0.0, now - header.issued_at / 1000.0)
        if header.kind is Kind.NOTICE and header.msg_id < self._stale_below:
            self._refuse(d, header, Reason.STALE, _stale_detail(header.msg_id), now, out)
            return
        if is_bundle(header):
            self._handle_bundle(d, msg, now, out)
            return
        handler = self.handlers.get(header.type)
        if handler is None:
            self._refuse(d, header, Reason.UNKNOWN_TYPE, f"no handler for {header.type}", now, out)
            return
        if header.kind is Kind.NOTICE:
            if self._handle_notice(d, msg, handler, now, out) == _RETRY:
                self._retry(d, out)
        elif header.kind is Kind.REQUEST:
            if not self._careful:
                raise _Abort  # requests only ever run in a careful pass (a reply_to-less one)
            if getattr(handler, "juki_onward", False):
                self._offload(d, msg, handler)
            else:
                self._handle_request(d, msg, handler, out)
        else:
            self._refuse(d, header, Reason.MALFORMED, "reply delivered to a node queue", now, out)

    def _handle_bundle(self, d: Delivery, bundle: Message, now: float, out: _Batch) -> None:
        """Each item as a notice of its own (broker/bundle.py); the bundle's id is taken into
        the inbox only when no item waits for a retry, so the re-published copy still opens."""
        self._counts["bundles"] += 1
        items = list(open_items(bundle, self.routes.allows, self.schemas.validate_body))
        journal = self.journal
        # what is already done: one inbox question for the whole bundle (and, without
        # savepoints, one insert at its end)
        ids = [i.header.msg_id for i in items]
        applied = {m for m in ids if self._memory.seen(m)}
        if journal is not None:
            applied |= journal.inbox_seen([m for m in ids if m not in applied])
        rows: list[tuple[str, str, str, float]] | None = None if self._careful else []
        retry = False
        for item in items:
            header = item.header
            msg_id = header.msg_id
            if msg_id in applied:
                # Relayed again inside a later bundle (the sender crashed before its confirm),
                # done in an earlier attempt of this bundle, or twice in this one.
                self._counts["duplicates"] += 1
                continue
            applied.add(msg_id)
            if item.message is None:
                refusal = item.refusal
                assert refusal is not None
                self._refuse(d, header, refusal.reason, refusal.detail, now, out, item=True)
                out.remember.append((header.msg_id, header.deadline))  # not again on a retry
                continue
            if msg_id < self._stale_below:
                self._refuse(d, header, Reason.STALE, _stale_detail(msg_id), now, out, item=True)
                out.remember.append((msg_id, header.deadline))
                continue
            handler = self.handlers.get(header.type)
            if handler is None:
                reason, detail = Reason.UNKNOWN_TYPE, f"no handler for {header.type}"
                self._refuse(d, header, reason, detail, now, out, item=True)
                out.remember.append((header.msg_id, header.deadline))
                continue
            outcome = self._handle_notice(d, item.message, handler, now, out, item=True, inbox=rows)
            if outcome == _RETRY:
                retry = True
            elif outcome == _REFUSED:  # not in the inbox: a retry of this bundle must skip it
                out.remember.append((header.msg_id, header.deadline))
        if retry:
            self._retry(d, out)
            return
        header = bundle.header
        if journal is not None:
            if rows is None:
                journal.inbox_add(header.msg_id, header.sender, header.type, now)
            else:
                rows.append((header.msg_id, header.sender, header.type, now))
                try:
                    journal.inbox_add_many(rows)
                except Exception as exc:  # a copy raced in: sort it out item by item
                    raise _Abort from exc
        else:
            out.remember.append((header.msg_id, header.deadline))

    def _handle_notice(
        self,
        d: Delivery,
        msg: Message,
        handler: Handler,
        now: float,
        out: _Batch,
        *,
        item: bool = False,
        inbox: list[tuple[str, str, str, float]] | None = None,
    ) -> int:
        """Applies one notice in its own savepoint; returns _DONE (applied), _REFUSED (recorded
        and dead-lettered), or _RETRY when the handler failed and attempts remain (the caller
        re-publishes the delivery once). `inbox`: in a pass without savepoints, where the caller
        collects inbox rows to insert at once."""
        header = msg.header
        try:
            with self._savepoint() if self._careful else nullcontext():
                if inbox is not None:
                    inbox.append((header.msg_id, header.sender, header.type, now))
                elif self.journal is not None:
                    self.journal.inbox_add(header.msg_id, header.sender, header.type, now)
                handler(msg, Context(self, msg))
        except HandlerError as exc:
            if not self._careful:
                raise _Abort from exc
            self._refuse(d, header, exc.code, exc.message, now, out, item=item)
            return _REFUSED
        except Exception as exc:
            if not self._careful:
                raise _Abort from exc
            attempts = _attempts(d.headers) + 1
            log.warning(
                "%s: handler for %s failed (attempt %d): %s",
                self.node_id,
                header.type,
                attempts,
                type(exc).__name__,
            )
            self._last_error = f"{header.type} handler: {type(exc).__name__}"
            if attempts >= self.config.max_attempts:
                detail = f"after {attempts} attempts: {type(exc).__name__}: {exc}"
                self._refuse(d, header, Reason.POISON, detail, now, out, item=item)
                return _REFUSED
            return _RETRY
        if self.journal is None:
            # With a journal the inbox row is the record (and survives restarts); remembering
            # every applied notice too would fill the memory guard with month-long deadlines and
            # push out the request ids that only it protects.
            out.remember.append((header.msg_id, header.deadline))
        self._processed[header.type] += 1
        return _DONE

    def _retry(self, d: Delivery, out: _Batch) -> None:
        headers = dict(d.headers)
        headers[ATTEMPTS_HEADER] = _attempts(d.headers) + 1
        out.retries.append((d.body, headers))
        self._counts["retried"] += 1

    def _handle_request(self, d: Delivery, msg: Message, handler: Handler, out: _Batch) -> None:
        header = msg.header
        # Remembered at once: a request is never retried, and a copy within this batch must
        # not run twice.
        self._memory.remember(header.msg_id, header.deadline)
        try:
            refusal: HandlerError | None = None
            with self._savepoint():
                try:
                    data = handler(msg, Context(self, msg))
                except HandlerError as exc:
                    if not exc.commit:
                        raise
                    refusal = exc  # answer the refusal, but keep what the handler recorded
            if refusal is not None:
                raise refusal
            body = _ok(data)
        except Exception as exc:
            body = self._error_body(header, exc)
        self._processed[header.type] += 1
        if d.reply_to:
            out.replies.append((d.reply_to, self._seal_reply(msg, body), header.msg_id))

    def _error_body(self, header: Header, exc: Exception) -> dict[str, Any]:
        if isinstance(exc, HandlerError):
            return {"ok": False, "code": exc.code, "message": exc.message, "title": exc.title}
        log.warning("%s: handler for %s raised %s", self.node_id, header.type, type(exc))
        self._last_error = f"{header.type} handler: {type(exc).__name__}"
        return {
            "ok": False,
            "code": "internal",
            "message": f"{type(exc).__name__} in {header.type} handler",
            "title": "相手先の内部エラー",
        }

    def _seal_reply(self, msg: Message, body: dict[str, Any]) -> bytes:
        rh = reply_header(msg, ttl_seconds=self.config.reply_ttl, clock=self.clock)
        try:
            return self._sealer.seal(rh, body)
        except Refused as exc:  # our handler returned data its own schema does not allow
            return self._sealer.seal(
                rh,
                {
                    "ok": False,
                    "code": "bad_reply",
                    "message": exc.detail,
                    "title": "応答形式エラー",
                },
            )

    # -- onward requests (worker threads) -----------------------------------------------------

    def _offload(self, d: Delivery, msg: Message, handler: Handler) -> None:
        self._memory.remember(msg.header.msg_id, msg.header.deadline)
        if self._workers is None:
            self._workers = ThreadPoolExecutor(
                max(1, self.config.onward_workers), thread_name_prefix=f"{self.node_id}-onward"
            )
        self._counts["onward"] += 1
        self._workers.submit(self._run_onward, msg, handler, d.reply_to)

    def _run_onward(self, msg: Message, handler: Handler, reply_to: str | None) -> None:
        """On a worker: the handler in its own transaction(s), then its reply to the loop."""
        header = msg.header
        ctx = Context(self, msg, worker=True)
        try:
            ctx._begin()
            try:
                data = handler(msg, ctx)
            except HandlerError as exc:
                ctx._end(None if exc.commit else exc)
                raise
            except BaseException as exc:
                ctx._end(exc)
                raise
            ctx._end(None)
            body = _ok(data)
        except Exception as exc:
            body = self._error_body(header, exc)
        try:
            wire = self._seal_reply(msg, body) if reply_to else None
        except Exception as exc:  # never lose the worker: the caller times out instead
            log.error("%s: reply to %s not sealed: %r", self.node_id, header.msg_id, exc)
            wire = None
        self._finished.put((reply_to, wire, header.msg_id, header.type))
        self._conn.wake_threadsafe()

    def _publish_finished(self) -> None:
        conn = self._conn
        with conn.corked():
            while True:
                try:
                    reply_to, wire, cid, type_ = self._finished.get_nowait()
                except queue.Empty:
                    break
                self._processed[type_] += 1
                if reply_to and wire is not None:
                    conn.publish(
                        reply_to, wire, exchange="", correlation_id=cid, confirm=False, wait=False
                    )

    def _refuse(
        self,
        d: Delivery,
        header: Header | None,
        reason: Reason | str,
        detail: str,
        now: float,
        out: _Batch,
        *,
        item: bool = False,
    ) -> None:
        """Record and dead-letter `d`. `item`: the refusal is of one notice inside the bundle
        `d` carries; the whole signed bundle is dead-lettered with `x-juki-item` naming it."""
        code = reason.value if isinstance(reason, Reason) else reason
        self._refused[code] += 1
        detail = detail[:_DETAIL_MAX]
        log.info(
            "%s: refused %s from %s (%s)",
            self.node_id,
            header.msg_id if header else "?",
            header.sender if header else "?",
            code,
        )
        if self.journal is not None:
            self.journal.record_refusal(
                header.msg_id if header else None,
                header.sender if header else None,
                header.type if header else None,
                code,
                detail,
                now,
            )
        headers = dict(d.headers)
        headers[REASON_HEADER] = code
        headers[DETAIL_HEADER] = detail
        headers[NODE_HEADER] = self.node_id
        if item and header is not None:
            headers[ITEM_HEADER] = header.msg_id
            headers[ITEM_TYPE_HEADER] = header.type
        out.dead.append((d.body, headers))


def _stale_detail(msg_id: str) -> str:
    made = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(id_time_ms(msg_id) / 1000))
    return f"made {made} UTC, before the inbox's memory of applied ids begins"


def _ok(data: dict[str, Any] | None) -> dict[str, Any]:
    return {"ok": True, "data": {} if data is None else data}


def _attempts(headers: Mapping[str, Any]) -> int:
    value = headers.get(ATTEMPTS_HEADER, 0)
    return value if isinstance(value, int) and value >= 0 else 0


@contextmanager
def running(service: Service, *, timeout: float = 10.0) -> Iterator[threading.Event]:
    """Run `service` on a thread for the duration of a `with` block (tests, benchmarks)."""
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), name=f"svc-{service.node_id}")
    thread.start()
    try:
        if not service.ready.wait(timeout):
            raise BrokerUnavailable(f"{service.node_id} did not start consuming in {timeout}s")
        yield stop
    finally:
        stop.set()
        thread.join(timeout)
