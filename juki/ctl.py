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


def _row(h: dict[str, Any]) -> list[str]:
    if not h.get("up"):
        return [h["node"], "DOWN", "-", "-", "-", "-", "-", h.get("error", "")[:40]]
    refusals = h.get("refusals", {})
    return [
        h["node"],
        "ok" if h.get("healthy") else "UNHEALTHY",
        "yes" if h.get("broker_connected") else "NO",
        "ok" if h.get("store_ok", True) else "NO",
        str(h.get("outbox_depth", 0)),
        f"{h.get('inbox_lag_seconds', 0.0):.1f}s",
        str(sum(refusals.values())) if refusals else "0",
        ", ".join(f"{k}={v}" for k, v in sorted(refusals.items()))[:40],
    ]


def print_table(rows: list[dict[str, Any]]) -> None:
    head = ["node", "state", "broker", "store", "outbox", "inbox lag", "refused", "by reason"]
    table = [head] + [_row(h) for h in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


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
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
    elif args.action == "health" and args.node:
        print(json.dumps(rows[0], ensure_ascii=False, indent=2, default=str))
    else:
        print_table(rows)
    if all(r.get("healthy") for r in rows):
        return exitcodes.OK
    return exitcodes.NODE_DOWN if any(not r.get("up") for r in rows) else exitcodes.FAILURE
