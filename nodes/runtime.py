"""ノード実行環境 (node runtime): config, keys, store, routes and handlers → one running daemon.

`juki node NODE_ID` calls `run_node`. The runtime owns the threads: the service loop (receive →
verify → dispatch → commit → reply → ack), the outbox relay (onward notices, sealed at relay
time), the ZeroMQ control socket, and the role's periodic jobs (retention purge). SIGTERM or a
`stop` control command drains: the loop stops taking messages, finishes its batch, the relay
flushes what it can, and the process exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from broker.control import ControlServer
from broker.envelope import Sealer
from broker.keys import TrustStore, load_identity
from broker.service import Handler, Service, ServiceConfig
from broker.topology import Topology, export_definitions
from juki.config import ApplianceConfig
from nodes import messages
from nodes.common import plumbing_handlers
from nodes.env import NodeEnv
from nodes.stores import load_role_module, open_node_store, purge_store, role_of
from store.db import checkpoint_wal, is_sqlite

log = logging.getLogger("juki.node")

PURGE_INTERVAL_SECONDS = 3600.0
"""How often a node applies its retention rules (送付先 must go within a business day)."""
WAL_CHECKPOINT_SECONDS = 1.0
"""SQLite: how often the node copies its WAL into the database file (store.db.checkpoint_wal)."""

Command = Callable[[Mapping[str, Any]], Mapping[str, Any]]


def topology_for(config: ApplianceConfig) -> Topology:
    b = config.broker
    return Topology(
        exchange=b.exchange,
        dead_letter_exchange=b.dead_letter_exchange,
        dead_letter_queue=b.dead_letter_queue,
        queue_prefix=b.queue_prefix,
        queue_type=b.queue_type,
    )


def daemon_node_ids(config: ApplianceConfig) -> list[str]:
    return [n.id for n in config.nodes.values() if n.role != "terminal"]


def broker_definitions(config: ApplianceConfig) -> dict[str, Any]:
    """The RabbitMQ definitions file for the whole topology (`juki broker export`)."""
    return export_definitions(topology_for(config), daemon_node_ids(config))


def _passphrase(config: ApplianceConfig) -> bytes | None:
    value = os.environ.get(config.passphrase_env)
    return value.encode() if value else None


class NodeRuntime:
    """One node daemon, assembled from the appliance configuration."""

    def __init__(
        self,
        config: ApplianceConfig,
        node_id: str,
        *,
        clock: Callable[[], float] = time.time,
        service_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        from broker.outbox import OutboxRelay
        from store.journal import PeeweeJournal

        self.config = config
        self.node_id = node_id
        self.role = role_of(config, node_id)
        self.env = NodeEnv(config, node_id, clock=clock)
        self.identity = load_identity(config.keys_dir, node_id, _passphrase(config))
        self.trust = TrustStore.load(config.trust_file)
        self.routes = config.route_table()
        self.schemas = messages.registry()
        self.topology = topology_for(config)
        module = load_role_module(self.role)
        self.db = open_node_store(config, node_id)
        self.journal = PeeweeJournal(self.db)
        handlers: dict[str, Handler] = plumbing_handlers()
        self.role_commands: dict[str, Command] = {}
        self.jobs: list[tuple[float, Callable[[], Any]]] = []
        if module is not None and hasattr(module, "build"):
            part = module.build(self.env)
            handlers.update(part.handlers)
            self.role_commands.update(part.commands)
            self.jobs.extend(part.jobs)
        self.jobs.append((PURGE_INTERVAL_SECONDS, self._purge))
        self.wal: dict[str, int] | None = None
        if is_sqlite(self.db):
            self.jobs.append((WAL_CHECKPOINT_SECONDS, self._checkpoint))
        self.service_config = ServiceConfig.from_appliance(
            config.broker, config.policy, **dict(service_overrides or {})
        )
        self.service = Service(
            node_id,
            self.identity,
            self.trust,
            self.routes,
            self.schemas,
            handlers,
            self.journal,
            topology=self.topology,
            config=self.service_config,
            clock=clock,
            on_commit=lambda: self.relay.wake(),  # onward notices leave as soon as they commit
        )
        self.relay = OutboxRelay(
            self.journal,
            Sealer(self.identity, self.trust),
            node_id=node_id,
            url=self.service_config.url,
            topology=self.topology,
            notice_ttl=self.service_config.notice_ttl,
            clock=clock,
        )
        self.env.outbox = lambda recipient, type, body: self.service.send(
            recipient, type, body, None
        )
        self.env.atomic = self.journal.atomic
        self.env.wake = self.relay.wake
        self.started_at = clock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.control = ControlServer(config.control_endpoint(node_id), self._commands())

    def _purge(self) -> dict[str, Any]:
        """The retention rules (150 years, 7 years, one business day, 特例転入 period), relayed
        notices and applied ids no longer needed (nodes.stores.purge_store)."""
        report = purge_store(
            self.config,
            self.role,
            self.journal,
            self.env.now(),
            inbox_keep=self.service_config.inbox_keep,
        )
        if report["total"] or report["outbox_pruned"] or report["inbox_forgotten"]:
            log.info("%s: retention purge %s", self.node_id, report)
        return report

    def _checkpoint(self) -> None:
        busy, pages, copied = checkpoint_wal(self.db)
        self.wal = {"pages": pages, "checkpointed": copied, "busy": busy}

    # -- control plane ------------------------------------------------------------------------

    def _commands(self) -> dict[str, Command]:
        commands: dict[str, Command] = {
            "status": lambda _req: self.status(),
            "health": lambda _req: self.health(),
            "drain": lambda _req: self._drain(),
            "stop": lambda _req: self._request_stop(),
            "purge": lambda _req: {"purged": self._purge()},
        }
        commands.update(self.role_commands)
        return commands

    def status(self) -> dict[str, Any]:
        return {
            "node": self.node_id,
            "role": self.role,
            "pid": os.getpid(),
            "uptime_seconds": round(self.env.clock() - self.started_at, 1),
            "store": _redact(self.config.store_url(self.node_id)),
        }

    def health(self) -> dict[str, Any]:
        svc = self.service.health()
        relay = self.relay.health()
        store_ok = True
        oldest: float | None = None
        try:
            written = self.journal.outbox_oldest()
            if written is not None:
                oldest = round(max(0.0, self.env.clock() - written), 1)
        except Exception:
            store_ok = False
        healthy = bool(svc.get("connected")) and store_ok and not self._stop.is_set()
        return {
            **self.status(),
            "healthy": healthy,
            "broker_connected": bool(svc.get("connected")),
            "store_ok": store_ok,
            "outbox_depth": svc.get("outbox_depth") or 0,
            # how long the oldest waiting notice has waited: the upstream's time out of reach
            "outbox_oldest_seconds": oldest,
            "relay": relay,
            "inbox_lag_seconds": svc.get("inbox_lag_seconds") or 0.0,
            "processed": svc.get("processed", {}),
            "refusals": svc.get("refused", {}),
            "duplicates": svc.get("duplicates", 0),
            "retried": svc.get("retried", 0),
            # group commit at work: notices applied per transaction and per bundle received
            "batches": svc.get("batches", 0),
            "bundles": svc.get("bundles", 0),
            "onward": svc.get("onward", 0),  # requests handed to workers (they call upstream)
            "last_error": svc.get("last_error"),
            "wal": self.wal,  # SQLite: the WAL at the last checkpoint (None: not run yet)
        }

    def _drain(self) -> dict[str, Any]:
        self._service_stop.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.journal.outbox_depth() > 0:
            time.sleep(0.1)
        return {"drained": True, "outbox_depth": self.journal.outbox_depth()}

    def _request_stop(self) -> dict[str, Any]:
        self._stop.set()
        return {"stopping": True}

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start every thread; returns at once (tests drive a runtime in-process this way)."""
        self._declare_everything()
        self._service_stop = threading.Event()
        self._spawn("service", self.service.run, self._service_stop)
        self._relay_stop = threading.Event()
        self._spawn("relay", self.relay.run, self._relay_stop)
        for interval, job in self.jobs:
            self._spawn(f"job-{getattr(job, '__name__', 'job')}", self._every, interval, job)
        self.control.start()
        log.info("%s (%s) started; control %s", self.node_id, self.role, self.control.endpoint)

    def _declare_everything(self) -> None:
        """Declare every node's queue, not just ours: a notice to a node that has not started yet
        must wait in its queue, not bounce as unroutable."""
        from broker.amqp import AmqpConnection

        conn = AmqpConnection(
            self.service_config.url,
            exchange=self.topology.exchange,
            name=f"juki-declare-{self.node_id}",
        )
        try:
            conn.connect(retry_for=30.0)
            conn.declare_topology(self.topology, daemon_node_ids(self.config))
        finally:
            conn.close()

    def _spawn(self, name: str, target: Callable[..., Any], *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=f"{self.node_id}-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def _every(self, interval: float, job: Callable[[], Any]) -> None:
        while not self._stop.wait(interval):
            try:
                job()
            except Exception:
                log.exception("%s: periodic job %s failed", self.node_id, job)

    def wait_ready(self, timeout: float = 30.0) -> bool:
        return self.service.ready.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._service_stop.set()
        deadline = time.monotonic() + timeout
        # let the relay push what the last batch produced before it stops
        while (
            time.monotonic() < deadline
            and self.journal.outbox_depth() > 0
            and self.relay.health().get("connected")
        ):
            time.sleep(0.05)
        self._relay_stop.set()
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        try:  # sent marks the relay still kept: written, the next start need not resend them
            self.journal.outbox_write_marks()
        except Exception:
            log.warning("%s: sent marks not written at stop; those notices go again", self.node_id)
        self.control.stop()
        self.db.close()

    def run_forever(self) -> int:
        def on_signal(signum: int, _frame: object) -> None:
            log.info("%s: signal %d, stopping", self.node_id, signum)
            self._stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        while not self._stop.wait(0.5):
            pass
        self.stop()
        log.info("%s stopped", self.node_id)
        return 0


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def run_node(config: ApplianceConfig, node_id: str) -> int:
    return NodeRuntime(config, node_id).run_forever()
