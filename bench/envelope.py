"""封書の速度 (envelope speed): seal and open per second, µs per operation.

The issue's goal is sealed RPC at ≥ 0.7 × raw pika for one client, so the envelope's own cost per
round trip (seal + open of the request, seal + open of the reply) must stay small beside a
RabbitMQ round trip. Also measured: the raw Ed25519 sign / verify costs the envelope cannot avoid,
to show how much of the total is our own overhead.

Usage: .venv/bin/python bench/envelope.py [--seconds 1.0] [--out bench/results/envelope.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from broker import crypto
from broker.envelope import Kind, Opener, Sealer, new_header, reply_header
from broker.keys import Identity, TrustStore
from broker.routes import NodeInfo, Route, RouteTable
from broker.schema import plumbing_types

CLIENT, SERVER = "term.041009.01", "cs.041009"


class _NeverSeen:
    def seen(self, msg_id: str) -> bool:
        return False


def _rate(fn: Callable[[], object], seconds: float) -> float:
    """Best of three runs: operations per second."""
    best = 0.0
    for _ in range(3):
        n, start = 0, time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for _ in range(50):
                fn()
            n += 50
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, n / (now - start))
    return best


def run(seconds: float) -> dict[str, Any]:
    client = Identity.from_seeds(CLIENT, b"\x01" * 32, b"\x02" * 32)
    server = Identity.from_seeds(SERVER, b"\x03" * 32, b"\x04" * 32)
    trust = TrustStore([client.public, server.public])
    routes = RouteTable(
        [Route("terminal", "municipal_cs", "any", ("*",))],
        {CLIENT: NodeInfo(CLIENT, "terminal"), SERVER: NodeInfo(SERVER, "municipal_cs")},
    )
    schemas = plumbing_types()
    client_sealer, server_sealer = Sealer(client, trust), Sealer(server, trust)
    server_opener = Opener(server, trust, routes, schemas, _NeverSeen(), skew_seconds=120)
    client_opener = Opener(client, trust, routes, schemas, _NeverSeen(), skew_seconds=120)

    results: dict[str, Any] = {"cases": {}}
    for label, payload_size in [("ping", None), ("echo_100B", 100), ("echo_4KiB", 4096),
                                ("echo_64KiB", 65536)]:  # fmt: skip
        type_ = "ping" if payload_size is None else "echo"
        body: dict[str, Any] = {} if payload_size is None else {"payload": b"x" * payload_size}
        header = new_header(Kind.REQUEST, type_, CLIENT, SERVER, ttl_seconds=3600)
        wire = client_sealer.seal(header, body)
        reply_data = {"node": SERVER, "time": 1.0} if payload_size is None else body
        reply_body = {"ok": True, "data": reply_data}

        def seal(header: Any = header, body: dict[str, Any] = body) -> bytes:
            return client_sealer.seal(header, body)

        def open_(wire: bytes = wire) -> object:
            return server_opener.open(wire)

        def round_trip(
            type_: str = type_, body: dict[str, Any] = body, reply_body: dict[str, Any] = reply_body
        ) -> object:
            # What one RPC costs in envelope work: seal + open the request and the reply.
            h = new_header(Kind.REQUEST, type_, CLIENT, SERVER, ttl_seconds=60)
            req = server_opener.open(client_sealer.seal(h, body))
            rh = reply_header(req, ttl_seconds=60)
            return client_opener.open(server_sealer.seal(rh, reply_body))

        seal_rate, open_rate = _rate(seal, seconds), _rate(open_, seconds)
        rt_rate = _rate(round_trip, seconds)
        results["cases"][label] = {
            "wire_bytes": len(wire),
            "seal_per_s": round(seal_rate),
            "open_per_s": round(open_rate),
            "seal_us": round(1e6 / seal_rate, 1),
            "open_us": round(1e6 / open_rate, 1),
            "seal_plus_open_us": round(1e6 / seal_rate + 1e6 / open_rate, 1),
            "rpc_envelope_round_trips_per_s": round(rt_rate),
            "rpc_envelope_us": round(1e6 / rt_rate, 1),
        }

    signer = crypto.Signer(b"\x05" * 32)
    message = b"m" * 300
    signature = signer.sign(message)
    results["floor"] = {
        "ed25519_sign_us": round(1e6 / _rate(lambda: signer.sign(message), seconds), 1),
        "ed25519_verify_us": round(
            1e6 / _rate(lambda: crypto.verify(signer.verify_key, message, signature), seconds), 1
        ),
    }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--out", type=Path, default=Path("bench/results/envelope.json"))
    args = parser.parse_args(argv)

    results = run(args.seconds)
    results["meta"] = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for label, c in results["cases"].items():
        print(
            f"{label:11} wire {c['wire_bytes']:6d} B  seal {c['seal_us']:7.1f} µs  "
            f"open {c['open_us']:7.1f} µs  RPC envelope work {c['rpc_envelope_us']:7.1f} µs "
            f"({c['rpc_envelope_round_trips_per_s']}/s)"
        )
    f = results["floor"]
    print(f"floor: Ed25519 sign {f['ed25519_sign_us']} µs, verify {f['ed25519_verify_us']} µs")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
