"""`juki ctl`: ask nodes over their ZeroMQ control sockets (status, health, drain, stop)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from broker.control import ControlUnavailable, control_request
from juki import exitcodes
from juki.config import ApplianceConfig
from juki.supervisor import daemon_ids


def node_health(config: ApplianceConfig, node_id: str, timeout: float = 2.0) -> dict[str, Any]:
    try:
        answer = control_request(config.control_endpoint(node_id), "health", timeout=timeout)
    except ControlUnavailable as exc:
        return {"node": node_id, "up": False, "healthy": False, "error": str(exc)}
    answer.setdefault("node", node_id)
    answer["up"] = True
    return answer


def broker_backlog(
    config: ApplianceConfig, node_ids: list[str]
) -> tuple[dict[str, int | None], int | None]:
    """Messages waiting in RabbitMQ for each node (ready, not yet taken) and in the
    dead-letter queue. Read from the broker, not from the nodes, so that the work piling up
    for a node that is down shows too. Nothing (empty, None) when the broker cannot be reached.
    """
    from broker.amqp import AmqpConnection
    from broker.errors import BrokerError
    from nodes.runtime import topology_for

    topology = topology_for(config)
    conn = AmqpConnection(config.broker.url, name="juki-ctl", confirms=False)
    queued: dict[str, int | None] = dict.fromkeys(node_ids)
    dead: int | None = None
    try:
        conn.connect()  # once: an unreachable broker costs one attempt, not one per node
        for node_id in node_ids:
            try:
                queued[node_id] = conn.queue_depth(topology.queue(node_id))
            except BrokerError:  # the queue is missing (never declared): no count, go on
                conn.connect()  # a failed passive declare closes the channel
        dead = conn.queue_depth(topology.dead_letter_queue)
    except BrokerError:
        pass
    finally:
        conn.close()
    return queued, dead


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f" (oldest {seconds / size:.0f}{unit})"
    return f" (oldest {seconds:.0f}s)"


def _queued(h: dict[str, Any]) -> str:
    value = h.get("queued")
    return "-" if value is None else str(value)


def _row(h: dict[str, Any]) -> list[str]:
    if not h.get("up"):
        return [h["node"], "DOWN", "-", "-", "-", _queued(h), "-", "-", h.get("error", "")[:40]]
    refusals = h.get("refusals", {})
    depth = h.get("outbox_depth", 0)
    return [
        h["node"],
        "ok" if h.get("healthy") else "UNHEALTHY",
        "yes" if h.get("broker_connected") else "NO",
        "ok" if h.get("store_ok", True) else "NO",
        f"{depth}{_age(h.get('outbox_oldest_seconds')) if depth else ''}",
        _queued(h),
        f"{h.get('inbox_lag_seconds', 0.0):.1f}s",
        str(sum(refusals.values())) if refusals else "0",
        ", ".join(f"{k}={v}" for k, v in sorted(refusals.items()))[:40],
    ]


HEAD = ["node", "state", "broker", "store", "outbox", "queued", "inbox lag", "refused", "by reason"]
"""outbox: notices written, not yet relayed (the upstream or the broker out of reach);
queued: messages in RabbitMQ waiting for the node to take them."""


def print_table(rows: list[dict[str, Any]], dead: int | None = None) -> None:
    table = [HEAD] + [_row(h) for h in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEAD))]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if dead:
        print(f"dead-letter queue: {dead} refused message(s) kept with their reasons")


def main(args: argparse.Namespace, config: ApplianceConfig) -> int:
    if args.action in ("drain", "stop"):
        if not args.node:
            print(f"ctl {args.action} needs a NODE")
            return exitcodes.CONFIG
        answer = control_request(config.control_endpoint(args.node), args.action, timeout=10.0)
        print(
            json.dumps(answer, ensure_ascii=False)
            if args.json
            else f"{args.node}: {args.action} → {answer}"
        )
        return exitcodes.OK if answer.get("ok") else exitcodes.FAILURE
    ids = [args.node] if args.node else daemon_ids(config)
    deadline = time.monotonic() + args.wait
    while True:
        rows = [node_health(config, nid) for nid in ids]
        healthy = all(r.get("healthy") for r in rows)
        if healthy or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    queued, dead = broker_backlog(config, ids)
    for row in rows:
        row["queued"] = queued.get(row["node"])
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
    elif args.action == "health" and args.node:
        print(json.dumps(rows[0], ensure_ascii=False, indent=2, default=str))
    else:
        print_table(rows, dead)
    if all(r.get("healthy") for r in rows):
        return exitcodes.OK
    return exitcodes.NODE_DOWN if any(not r.get("up") for r in rows) else exitcodes.FAILURE
