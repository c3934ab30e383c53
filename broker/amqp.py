"""AMQP 接続 (the AMQP transport): the only module that imports pika.

One `AmqpConnection` is one TCP connection with one channel, owned by one thread. pika
connections are not thread-safe and are never shared: a service's consume loop, its outbox relay
and every RPC client thread each own a connection.

Why not plain `BlockingChannel`: its publisher-confirm mode waits for the broker's ack after every
single publish, which caps durable throughput at one fsync round trip per message. Here the
channel's confirm mode is driven directly (the adapter's `_impl`, pinned by `pika>=1.3,<2`), so a
caller can publish a batch and wait once for all its confirms, and consumer deliveries are taken
straight off the I/O loop without the adapter's event queue. Everything private to pika that this
relies on is used in `_open()`, `_pump()`, `_enable_confirms()`, `_CoalescingConnection` and
`_LeanTransport` only.

Foreign exceptions are translated here, in one place:

- connection lost / refused / heartbeat timeout → `BrokerUnavailable` (connection marked closed;
  `connect()` again, consumers must be re-registered);
- a mandatory publish returned by the broker → `Unroutable`;
- a broker nack, a channel closed by the broker (missing exchange, argument mismatch) →
  `BrokerError` (the channel is reopened on the next `connect()`);
- a consumer the broker cancelled (its queue deleted, the queue's cluster node lost) →
  `BrokerError` naming it, on the next wait (the connection is closed; `connect()` again and
  consume again). The consumers are registered on the channel's `_impl`, so pika's blocking
  layer, which would look them up among its own and fail on a KeyError that kills the
  connection, is taken off that notice in `_open()`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
import pika.spec
from pika.adapters.select_connection import SelectConnection
from pika.adapters.utils.io_services_utils import _AsyncPlaintextTransport as _PlaintextTransport

from broker.errors import BrokerError, BrokerUnavailable, Unroutable
from broker.topology import Topology, declare

log = logging.getLogger(__name__)

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ConnectionWrongStateError,
    ConnectionError,
    OSError,
)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Bounded, jittered exponential backoff between reconnect attempts.

    Jitter keeps a dozen nodes that lost the broker at the same instant from reconnecting in
    lock-step when it comes back.
    """

    initial: float = 0.1
    maximum: float = 5.0
    factor: float = 2.0
    jitter: float = 0.25

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay * (1.0 + random.uniform(-self.jitter, self.jitter))
            delay = min(self.maximum, delay * self.factor)


class Delivery:
    """One message taken from a queue. `tag` is what `ack()` takes."""

    __slots__ = (
        "body",
        "correlation_id",
        "exchange",
        "headers",
        "redelivered",
        "reply_to",
        "routing_key",
        "tag",
    )

    def __init__(
        self,
        tag: int,
        body: bytes,
        headers: dict[str, Any],
        reply_to: str | None,
        correlation_id: str | None,
        redelivered: bool,
        routing_key: str,
        exchange: str,
    ) -> None:
        self.tag = tag
        self.body = body
        self.headers = headers
        self.reply_to = reply_to
        self.correlation_id = correlation_id
        self.redelivered = redelivered
        self.routing_key = routing_key
        self.exchange = exchange


_RECV_BYTES = 128 * 1024  # RabbitMQ's default frame_max


class _LeanTransport(_PlaintextTransport):  # type: ignore[misc]
    """pika's plaintext transport, reading once per readiness event, up to a whole frame.

    pika reads 4 KiB per `recv()` and then reads again until the socket says EAGAIN, so every
    readable event ends in a failed syscall and a raised and caught exception, and a 100 kB
    bundle arrives in 25 reads, each appended to pika's frame buffer. One read of up to 128 KiB
    (RabbitMQ's default frame_max) per event is enough: the poller is level-triggered, so
    whatever is left makes the next poll return at once.
    """

    def _consume(self) -> None:
        if self._state != self._STATE_ACTIVE:
            return
        data = self._sock.recv(_RECV_BYTES)
        if not data:
            raise self.RxEndOfFile()
        self._protocol.data_received(data)


class _CoalescingConnection(SelectConnection):  # type: ignore[misc]  # pika is untyped here
    """pika's connection, writing one message's frames (method, header, body) as one buffer,
    and writing it at once.

    pika queues each frame as its own buffer and sends each with its own `send()`; under load
    every extra syscall wakes the broker for a partial message. Joining them halves the
    syscalls of a request/reply round trip (bench/rpc.py).

    pika also never writes from `write()`: it turns on a writability watcher and sends on the
    next I/O loop pass, then turns the watcher off again — two poller updates and a poll per
    message, on the critical path of every RPC and every relayed batch. When nothing is queued
    ahead, `_adapter_emit_data` sends straight away and leaves only what the socket did not take
    to pika's buffered path (which also meets, and handles, any socket error).
    """

    _corked: list[bytes] | None = None

    def _proto_connection_made(self, transport: Any) -> None:
        if type(transport) is _PlaintextTransport:  # TLS keeps pika's own transport
            transport.__class__ = _LeanTransport
        super()._proto_connection_made(transport)

    def cork(self) -> None:
        """Hold every frame written from now on until `uncork()` (one send for a batch)."""
        self._corked = []

    def uncork(self) -> None:
        held, self._corked = self._corked, None
        if held:
            data = b"".join(held)
            self.bytes_sent += len(data)
            self._adapter_emit_data(data)

    def _adapter_emit_data(self, data: bytes) -> None:
        transport = self._transport
        if (
            type(transport) is _LeanTransport  # TLS keeps pika's own path
            and transport._state == transport._STATE_ACTIVE
            and not transport._tx_buffers
        ):
            try:
                sent = transport._sock.send(data)
            except OSError:  # EAGAIN, or an error the buffered path will meet and report
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        super()._adapter_emit_data(data)

    def _output_marshaled_frames(self, marshaled_frames: Any) -> None:
        if self._corked is not None:
            self._corked.extend(marshaled_frames)
            self.frames_sent += len(marshaled_frames)
            return
        if len(marshaled_frames) > 1:
            data = b"".join(marshaled_frames)
            self.bytes_sent += len(data)
            self.frames_sent += len(marshaled_frames)
            self._adapter_emit_data(data)
        else:
            super()._output_marshaled_frames(marshaled_frames)


class AmqpConnection:
    """A connection + channel with reconnect, batched publisher confirms and direct consumers.

    Args:
        url: AMQP URL.
        exchange: default exchange for `publish()` (the topology's direct exchange).
        name: connection name shown by RabbitMQ (`rabbitmqctl list_connections name`); tests
            use it to close exactly their own connection.
        heartbeat: AMQP heartbeat seconds.
        confirms: put the channel in publisher-confirm mode (durable publishers); RPC clients
            and reply publishers turn it off, their messages are transient by design.
        backoff: reconnect policy for `connect(retry_for=...)`.
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str = "",
        name: str = "juki",
        heartbeat: int = 30,
        confirms: bool = True,
        backoff: Backoff | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.exchange = exchange
        self.name = name
        self._heartbeat = heartbeat
        self._confirms = confirms
        self._backoff = backoff or Backoff()
        self._connect_timeout = connect_timeout
        self._conn: Any = None
        self._channel: Any = None
        self._impl: Any = None
        self._plain: Any = None
        self._next_tag = 1
        self._outstanding: set[int] = set()
        self._returned: dict[str, str] = {}
        self._nacked: set[int] = set()
        self._woken = False
        self._cancelled: str | None = None  # a consumer tag the broker cancelled
        self.reconnects = 0

    # -- connection ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return (
            self._conn is not None
            and self._conn.is_open
            and self._channel is not None
            and self._channel.is_open
        )

    def connect(
        self, *, retry_for: float | None = None, stop: threading.Event | None = None
    ) -> None:
        """Open the connection and channel; no-op when already open.

        With `retry_for`, keep trying with backoff for that many seconds (None: one attempt),
        giving up early when `stop` is set. Raises BrokerUnavailable when it gives up.
        """
        if self.connected:
            return
        deadline = None if retry_for is None else time.monotonic() + retry_for
        delays = self._backoff.delays()
        while True:
            try:
                self._open()
                return
            except BrokerUnavailable:
                if deadline is None:
                    raise
                delay = next(delays)
                if time.monotonic() + delay > deadline or (stop is not None and stop.is_set()):
                    raise
                log.info("broker unreachable (%s); retrying in %.2fs", self.name, delay)
                if stop is not None:
                    if stop.wait(delay):
                        raise
                else:
                    time.sleep(delay)

    def _open(self) -> None:
        self._discard()
        params = pika.URLParameters(self.url)
        params.heartbeat = self._heartbeat
        params.connection_attempts = 1
        params.socket_timeout = self._connect_timeout
        params.blocked_connection_timeout = 60
        params.client_properties = {"connection_name": self.name}
        try:
            conn = pika.BlockingConnection(params, _impl_class=_CoalescingConnection)
        except _CONNECTION_ERRORS as exc:
            raise BrokerUnavailable(f"cannot connect to {_safe_url(self.url)}: {exc!r}") from exc
        try:
            channel = conn.channel()
        except _CONNECTION_ERRORS as exc:
            _close_quietly(conn)
            raise BrokerUnavailable(f"cannot open a channel: {exc!r}") from exc
        self._conn = conn
        self._channel = channel
        self._impl = channel._impl
        self._plain = self._impl
        self._impl.add_on_return_callback(self._on_return)
        self._impl.callbacks.remove(
            self._impl.channel_number,
            pika.spec.Basic.Cancel,
            channel._on_consumer_cancelled_by_broker,
        )
        self._impl.add_on_cancel_callback(self._on_broker_cancel)
        self._cancelled = None
        self._next_tag = 1
        self._outstanding.clear()
        self._returned.clear()
        self._nacked.clear()
        if self._confirms:
            self._enable_confirms()
            try:
                self._plain = conn.channel()._impl
            except _CONNECTION_ERRORS as exc:
                raise self._lost(exc) from exc

    def _enable_confirms(self) -> None:
        done: list[bool] = []
        self._impl.confirm_delivery(
            ack_nack_callback=self._on_confirm, callback=lambda _frame: done.append(True)
        )
        self._pump(lambda: bool(done), timeout=self._connect_timeout)
        if not done:
            raise BrokerUnavailable("broker did not confirm Confirm.Select")

    def close(self) -> None:
        """Close cleanly; safe to call twice or on a dead connection."""
        conn = self._conn
        self._discard()
        if conn is not None:
            _close_quietly(conn)

    def _discard(self) -> None:
        self._conn = None
        self._channel = None
        self._impl = None
        self._plain = None

    def _lost(self, exc: BaseException) -> BrokerUnavailable:
        conn = self._conn
        self._discard()
        if conn is not None:
            _close_quietly(conn)
        return BrokerUnavailable(f"connection to broker lost ({self.name}): {exc!r}")

    def __enter__(self) -> AmqpConnection:
        self.connect()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the I/O pump -------------------------------------------------------------------------

    def _pump(self, until: Callable[[], bool] | None, timeout: float | None) -> None:
        """Run the I/O loop until `until()` is true or `timeout` passes (both None: until the
        output buffer is written). Callbacks (deliveries, confirms, returns) run inside."""
        conn = self._conn
        if conn is None:
            raise BrokerUnavailable(f"not connected ({self.name})")
        impl = conn._impl
        if until is None and timeout is None:
            try:
                conn._flush_output()
            except _CONNECTION_ERRORS as exc:
                raise self._lost(exc) from exc
            self._check_channel()
            return
        fired: list[bool] = []
        timer = None
        if timeout is not None:
            timer = impl.ioloop.call_later(max(0.0, timeout), lambda: fired.append(True))
        waiters: list[Callable[[], bool]] = [lambda: bool(fired), self._channel_closed]
        if until is not None:
            waiters.append(until)
        try:
            conn._flush_output(*waiters)
        except _CONNECTION_ERRORS as exc:
            raise self._lost(exc) from exc
        finally:
            if timer is not None and not fired and self._conn is not None:
                impl.ioloop.remove_timeout(timer)
        self._check_channel()

    def _check_channel(self) -> None:
        if self._impl is not None and self._impl.is_closed:
            reason = getattr(self._channel, "_closing_reason", None)
            self.close()
            raise BrokerError(f"channel closed by broker ({self.name}): {reason!r}")
        if self._cancelled is not None:
            tag = self._cancelled
            self.close()
            raise BrokerError(
                f"consumer {tag} cancelled by the broker ({self.name}): its queue was deleted "
                "or became unavailable"
            )

    def _channel_closed(self) -> bool:
        return self._impl is None or self._impl.is_closed or self._cancelled is not None

    def _on_broker_cancel(self, frame: Any) -> None:
        self._cancelled = str(frame.method.consumer_tag)

    def wait(self, timeout: float) -> None:
        """Block for up to `timeout` seconds, returning early when a delivery arrives."""
        self._woken = False
        self._pump(lambda: self._woken, timeout)

    def wake_threadsafe(self) -> None:
        """From any thread: make a `wait` on this connection return now (the one method of
        this class that other threads may call; pika queues the callback for the I/O loop)."""
        conn = self._conn
        if conn is None:
            return

        def woken() -> None:
            self._woken = True

        try:
            conn.add_callback_threadsafe(woken)
        except Exception:  # closed meanwhile: nobody is waiting on it
            log.debug("%s: wake on a closed connection", self.name)

    def poll(self) -> None:
        """Handle whatever I/O is ready (heartbeats, confirms) without blocking."""
        self._pump(None, 0.0)

    def wait_for(self, done: Callable[[], bool], timeout: float) -> None:
        """Block until `done()` (checked after each I/O event) or `timeout` passes."""
        self._pump(done, timeout)

    def was_returned(self, message_id: str) -> bool:
        return message_id in self._returned

    def take_return(self, message_id: str) -> str | None:
        """Why the broker returned the mandatory message `message_id` (None: not returned)."""
        return self._returned.pop(message_id, None)

    @contextmanager
    def corked(self) -> Iterator[None]:
        """Publishes and acks inside the block leave in one write when it ends.

        The service answers a batch of requests and acks it with a single `send()`; under load
        every extra syscall on loopback is a wake-up of the broker.
        """
        impl = self._conn._impl if self._conn is not None else None
        if impl is None:
            raise BrokerUnavailable(f"not connected ({self.name})")
        impl.cork()
        try:
            yield
        finally:
            impl.uncork()
        self.flush()

    def flush(self) -> None:
        """Write buffered frames (acks, unconfirmed publishes) to the socket."""
        self._pump(None, None)

    # -- publishing ---------------------------------------------------------------------------

    def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        exchange: str | None = None,
        persistent: bool = False,
        mandatory: bool = False,
        headers: dict[str, Any] | None = None,
        reply_to: str | None = None,
        correlation_id: str | None = None,
        message_id: str | None = None,
        wait: bool = True,
        confirm: bool = True,
        timeout: float = 30.0,
    ) -> int:
        """Publish one message; returns its confirm tag (0 without confirm mode).

        With confirms and `wait=True`, returns after the broker confirmed it (for a persistent
        message on a durable queue: written to disk), raising Unroutable when `mandatory` and no
        queue took it. With `wait=False` the message is only queued; call `wait_confirms()`.
        `confirm=False` sends on a second, unconfirmed channel of the same connection (replies:
        transient by design; a confirm per reply would only cost the broker and us a frame).
        """
        confirmed = self._confirms and confirm
        impl = self._impl if confirmed else self._plain
        if impl is None or impl.is_closed:
            raise BrokerUnavailable(f"not connected ({self.name})")
        tag = 0
        if confirmed:
            tag = self._next_tag
            self._next_tag += 1
            self._outstanding.add(tag)
            message_id = str(tag)
        props = pika.spec.BasicProperties(
            delivery_mode=2 if persistent else None,
            headers=headers,
            reply_to=reply_to,
            correlation_id=correlation_id,
            message_id=message_id,
        )
        try:
            impl.basic_publish(
                self.exchange if exchange is None else exchange,
                routing_key,
                body,
                props,
                mandatory,
            )
        except _CONNECTION_ERRORS as exc:
            raise self._lost(exc) from exc
        except pika.exceptions.ChannelWrongStateError as exc:
            raise self._lost(exc) from exc
        if not confirmed:
            if wait:
                self.flush()
        elif wait:
            failures = self.wait_confirms(timeout)
            if tag in failures:
                raise failures[tag]
        return tag

    def wait_confirms(self, timeout: float = 30.0) -> dict[int, BrokerError]:
        """Wait until every published message is confirmed.

        Returns the failures by confirm tag: `Unroutable` for mandatory messages the broker
        returned, `BrokerError` for nacks. Raises BrokerUnavailable when the connection is lost
        or confirms do not arrive in time (unconfirmed messages must be treated as not sent).
        """
        if self._outstanding:
            self._pump(lambda: not self._outstanding, timeout)
            if self._outstanding:
                raise self._lost(TimeoutError(f"{len(self._outstanding)} confirms outstanding"))
        failures: dict[int, BrokerError] = {}
        for key, why in self._returned.items():
            if key.isdigit():
                failures[int(key)] = Unroutable(why)
        for tag in self._nacked:
            failures[tag] = BrokerError(f"broker nacked message {tag}")
        self._returned = {k: v for k, v in self._returned.items() if not k.isdigit()}
        self._nacked.clear()
        return failures

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag = method.delivery_tag
        done = {t for t in self._outstanding if t <= tag} if method.multiple else {tag}
        self._outstanding -= done
        if isinstance(method, pika.spec.Basic.Nack):
            self._nacked |= done

    def _on_return(self, _channel: Any, method: Any, props: Any, _body: bytes) -> None:
        if props.message_id is None:
            return
        self._returned[str(props.message_id)] = (
            f"{method.reply_code} {method.reply_text}: exchange={method.exchange!r} "
            f"routing_key={method.routing_key!r}"
        )

    # -- consuming ----------------------------------------------------------------------------

    def consume(
        self,
        queue: str,
        on_delivery: Callable[[Delivery], None],
        *,
        prefetch: int = 0,
        auto_ack: bool = False,
        exclusive: bool = False,
    ) -> str:
        """Register a consumer; `on_delivery` runs inside `wait()`/`wait_confirms()`.

        The callback must not call back into this connection (it only collects deliveries):
        the caller processes them after `wait()` returns.
        """
        if self._impl is None:
            raise BrokerUnavailable(f"not connected ({self.name})")

        def on_message(_ch: Any, method: Any, props: Any, body: bytes) -> None:
            self._woken = True
            on_delivery(
                Delivery(
                    method.delivery_tag,
                    body,
                    props.headers or {},
                    props.reply_to,
                    props.correlation_id,
                    method.redelivered,
                    method.routing_key,
                    method.exchange,
                )
            )

        try:
            if prefetch:
                self._channel.basic_qos(prefetch_count=prefetch)
            ok: list[bool] = []
            tag = self._impl.basic_consume(
                queue,
                on_message,
                auto_ack=auto_ack,
                exclusive=exclusive,
                callback=lambda _frame: ok.append(True),
            )
            self._pump(lambda: bool(ok), self._connect_timeout)
        except _CONNECTION_ERRORS as exc:
            raise self._lost(exc) from exc
        except pika.exceptions.ChannelClosed as exc:
            self.close()
            raise BrokerError(f"cannot consume {queue!r}: {exc!r}") from exc
        if not ok:
            raise BrokerError(f"consume on {queue!r} not confirmed")
        return str(tag)

    def ack(self, tag: int, *, multiple: bool = False, flush: bool = True) -> None:
        """Acknowledge deliveries (all up to `tag` with `multiple`); flushed immediately."""
        if self._impl is None:
            raise BrokerUnavailable(f"not connected ({self.name})")
        try:
            self._impl.basic_ack(tag, multiple)
        except _CONNECTION_ERRORS as exc:
            raise self._lost(exc) from exc
        except pika.exceptions.ChannelWrongStateError as exc:
            raise self._lost(exc) from exc
        if flush:
            self.flush()

    def nack(self, tag: int, *, multiple: bool = False, requeue: bool = True) -> None:
        if self._impl is None:
            raise BrokerUnavailable(f"not connected ({self.name})")
        try:
            self._impl.basic_nack(tag, multiple, requeue)
        except _CONNECTION_ERRORS as exc:
            raise self._lost(exc) from exc
        self.flush()

    # -- declarations -------------------------------------------------------------------------

    def _blocking(self, what: str, fn: Callable[[], Any]) -> Any:
        if self._channel is None:
            raise BrokerUnavailable(f"not connected ({self.name})")
        try:
            return fn()
        except _CONNECTION_ERRORS as exc:
            raise self._lost(exc) from exc
        except pika.exceptions.ChannelClosed as exc:
            self.close()
            raise BrokerError(f"{what}: {exc!r}") from exc

    def declare_topology(self, topology: Topology, node_ids: list[str] | tuple[str, ...]) -> None:
        self._blocking(
            "declare topology", lambda: declare(_Declarer(self._channel), topology, node_ids)
        )

    def declare_reply_queue(self) -> str:
        """A server-named, exclusive, auto-delete queue for one RPC client's replies."""
        frame = self._blocking(
            "declare reply queue",
            lambda: self._channel.queue_declare("", exclusive=True, auto_delete=True),
        )
        return str(frame.method.queue)

    def queue_declare(self, queue: str, *, durable: bool = True) -> None:
        self._blocking("queue declare", lambda: self._channel.queue_declare(queue, durable=durable))

    def queue_depth(self, queue: str) -> int:
        """Ready messages in `queue` (passive declare; raises BrokerError if it does not exist)."""
        frame = self._blocking(
            "queue depth", lambda: self._channel.queue_declare(queue, passive=True)
        )
        return int(frame.method.message_count)

    def get(self, queue: str, *, auto_ack: bool = True) -> Delivery | None:
        """Take one message without a consumer; operators and tests reading a DLQ.

        With `auto_ack=False` the message stays the broker's until `ack` (taken) or `nack`
        (handed back to its place in the queue); a lost connection hands it back too.
        """
        method, props, body = self._blocking(
            "basic get", lambda: self._channel.basic_get(queue, auto_ack=auto_ack)
        )
        if method is None:
            return None
        return Delivery(
            method.delivery_tag,
            body,
            props.headers or {},
            props.reply_to,
            props.correlation_id,
            method.redelivered,
            method.routing_key,
            method.exchange,
        )

    def queue_delete(self, queue: str) -> None:
        self._blocking("queue delete", lambda: self._channel.queue_delete(queue))

    def queue_purge(self, queue: str) -> None:
        self._blocking("queue purge", lambda: self._channel.queue_purge(queue))

    def exchange_delete(self, exchange: str) -> None:
        self._blocking("exchange delete", lambda: self._channel.exchange_delete(exchange))


class _Declarer:
    """Adapts pika's BlockingChannel to topology.declare()'s keyword-only calls."""

    def __init__(self, channel: Any) -> None:
        self._channel = channel

    def exchange_declare(self, exchange: str, exchange_type: str, *, durable: bool) -> None:
        self._channel.exchange_declare(exchange, exchange_type=exchange_type, durable=durable)

    def queue_declare(self, queue: str, *, durable: bool, arguments: dict[str, Any]) -> None:
        self._channel.queue_declare(queue, durable=durable, arguments=arguments or None)

    def queue_bind(self, queue: str, exchange: str, routing_key: str) -> None:
        self._channel.queue_bind(queue, exchange, routing_key=routing_key)


def _close_quietly(conn: Any) -> None:
    try:
        if conn.is_open:
            conn.close()
    except Exception:  # closing a dead connection: nothing left to save
        log.debug("error while closing a broker connection", exc_info=True)


def _safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
