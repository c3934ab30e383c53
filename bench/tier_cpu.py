"""各階層のCPU (CPU per update at each tier), replayed without the broker so it can be repeated.

    .venv/bin/python bench/tier_cpu.py [--updates 3000] [--residents 20000] [--rounds 3]
                                       [--callgrind]

`bench/propagation.py` measures the flow live, and on this shared machine the same code's CPU
per update moves by a third within an hour. This benchmark takes the live part out of the
figure so that two versions of the code can be compared:

1. An isolated appliance (every node its own process, as in bench/propagation.py) is seeded and
   warmed up. A consistent copy of the CS's, the prefecture's and national's SQLite stores is
   taken (SQLite's online backup).
2. A tap queue per tier is bound to the exchange with that node's routing key, so RabbitMQ
   copies every message sent to the node; `--updates` 異動 (転居 and 職権修正) are then offered
   and the network left to settle. The taps now hold each tier's input exactly as it arrived:
   sealed registry notices for the CS, sealed bundles for the prefecture and national.
3. The appliance stops. For each tier a fresh process restores the store copy and assembles the
   node as its daemon does (`nodes.runtime.NodeRuntime`: keys, routes, schemas, handlers,
   journal, relay), with a stand-in for the broker connection that accepts every publish and
   ack. It hands the captured deliveries to the service loop's batch step (`Service._process`,
   `--batch` deliveries per group commit, one by default: captured at the default 500/s, a
   delivery is a bundle of some fifty updates) and after each batch runs the outbox relay until
   it has sealed everything the batch queued. Opening, checking, applying, committing
   (synchronous=FULL, as a node runs) and sealing onward are the node's own code; only the
   socket I/O is left out.

Printed and written to bench/results/tier_cpu.json: per tier, CPU µs per update
(`time.process_time` of the replay, best of `--rounds`, each round on a fresh copy of the
store) and, with `--callgrind`, the instructions per update counted by valgrind's callgrind
(one replay less one of no input, which takes out the interpreter's start-up; the same for the
same code and input whatever else the machine does, but some 50x slower to run). The replayed
input is the same for both figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402

TIERS = {
    "cs.041009": "cs.registry.identity_update",
    "pref.04": "pref.cs.identity_update",
    "national": "national.pref.identity_update",
}
"""The tiers replayed and the update notice each of them applies (counted per update)."""
MIX = {"move_within": 0.8, "correction": 0.2}


# -- the replay (runs in a process of its own per tier) ------------------------------------------


class _Broker:
    """Stands in for AmqpConnection on the replay side: every publish is confirmed, every ack
    taken; nothing leaves the process."""

    def __init__(self) -> None:
        self.tag = 0
        self.published = 0

    def publish(self, *_args: Any, **_kwargs: Any) -> int:
        self.tag += 1
        self.published += 1
        return self.tag

    def wait_confirms(self, *_args: Any, **_kwargs: Any) -> dict[int, str]:
        return {}

    @contextmanager
    def corked(self) -> Any:
        yield

    def ack(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    def nack(self, *_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the replay must not nack (a batch failed to commit)")

    def close(self) -> None:
        pass


def replay(config_path: str, node_id: str, captured: str, batch: int) -> dict[str, Any]:
    from broker.amqp import Delivery
    from juki.config import load
    from nodes.runtime import NodeRuntime

    with open(captured, "rb") as f:
        messages = msgpack.unpackb(f.read(), raw=False)
    rt = NodeRuntime(load(Path(config_path)), node_id)
    broker = _Broker()
    rt.service._conn = broker  # type: ignore[assignment]
    rt.relay._conn = broker  # type: ignore[assignment]
    deliveries = [
        Delivery(i + 1, m["body"], m["headers"], None, None, False, node_id, "")
        for i, m in enumerate(messages)
    ]
    start = time.process_time()
    for at in range(0, len(deliveries), batch):
        rt.service._process(deliveries[at : at + batch])
        while rt.relay.relay_once()[0]:
            pass
    cpu = time.process_time() - start
    health = rt.service.health()
    updates = health["processed"].get(TIERS[node_id], 0)
    refused = sum(health["refused"].values())
    rt.db.close()
    return {
        "node": node_id,
        "deliveries": len(deliveries),
        "updates": updates,
        "refused": refused,
        "published": broker.published,
        "cpu_seconds": round(cpu, 4),
        "cpu_us_per_update": round(cpu / updates * 1e6, 1) if updates else None,
    }


# -- capture ---------------------------------------------------------------------------------------


def _backup(src: Path, dst: Path) -> None:
    with sqlite3.connect(src, timeout=30) as s, sqlite3.connect(dst) as d:
        s.backup(d)


def capture(base: Path, updates: int, residents: int, rate: float) -> tuple[Any, dict[str, Path]]:
    """Run the appliance, tap each tier's queue while `updates` 異動 flow; return the appliance
    (stopped) and, per tier, the file of captured deliveries."""
    import pika

    from nodes.simulate import simulate
    from tests.nodes.appliance import Appliance

    app = Appliance(base)
    print(f"seeding {residents} residents per municipality …", flush=True)
    app.prepare(residents=residents)
    app.start()
    snapshots = base / "snapshots"
    snapshots.mkdir()
    taps = {node: f"{app.config.broker.queue_prefix}tap.{node}" for node in TIERS}
    conn = pika.BlockingConnection(pika.URLParameters(app.config.broker.url))
    ch = conn.channel()
    try:
        simulate(app.config, "041009", 100, 2.0, seed=1, mix=MIX)  # warm-up
        app.quiet(120)
        for node in TIERS:
            _backup(base / "var" / "db" / f"{node}.db", snapshots / f"{node}.db")
            ch.queue_declare(taps[node], durable=False, exclusive=True)
            ch.queue_bind(taps[node], app.config.broker.exchange, routing_key=node)
        print(f"offering {updates} updates at {rate}/s …", flush=True)
        simulate(app.config, "041009", rate, updates / rate, seed=2, mix=MIX)
        app.quiet(600)
        files: dict[str, Path] = {}
        for node in TIERS:
            messages = []
            while True:
                method, props, body = ch.basic_get(taps[node], auto_ack=True)
                if method is None:
                    break
                messages.append({"body": body, "headers": dict(props.headers or {})})
            files[node] = base / f"{node}.captured"
            files[node].write_bytes(msgpack.packb(messages, use_bin_type=True))
            print(f"captured {len(messages)} deliveries to {node}", flush=True)
    finally:
        conn.close()
        app.stop()
    return app, files


def _restore(base: Path, node: str) -> None:
    db = base / "var" / "db" / f"{node}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(base / "snapshots" / f"{node}.db", db)


def _replay_command(app: Any, node: str, file: Path, batch: int) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--replay", node]
    return [*cmd, "--config", str(app.path), "--captured", str(file), "--batch", str(batch)]


def _run(app: Any, cmd: list[str], what: str) -> str:
    done = subprocess.run(cmd, cwd=ROOT, env=app.env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{done.stdout}\n{done.stderr[-4000:]}")
    return done.stdout


def _run_replay(base: Path, app: Any, node: str, file: Path, batch: int) -> dict[str, Any]:
    _restore(base, node)
    out = _run(app, _replay_command(app, node, file, batch), f"replay of {node}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _instructions(base: Path, app: Any, node: str, file: Path, batch: int) -> int:
    """Instructions callgrind counts for one replay process, start-up included."""
    _restore(base, node)
    out_file = base / f"callgrind.{node}.out"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}"]
    _run(app, cmd + _replay_command(app, node, file, batch), f"callgrind replay of {node}")
    return next(
        int(line.split()[1])
        for line in out_file.read_text().splitlines()
        if line.startswith(("summary:", "totals:"))
    )


def instructions_per_update(
    base: Path, app: Any, node: str, file: Path, batch: int, updates: int
) -> int:
    """Instructions per update: a replay of the captured input less one of no input (the
    interpreter's start-up, imports and the node's assembly are the same in both)."""
    empty = base / "empty.captured"
    empty.write_bytes(msgpack.packb([], use_bin_type=True))
    loaded = _instructions(base, app, node, file, batch)
    idle = _instructions(base, app, node, empty, batch)
    return round((loaded - idle) / updates)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--updates", type=int, default=3000)
    ap.add_argument("--residents", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=500.0, help="offered rate while capturing")
    ap.add_argument("--rounds", type=int, default=3, help="replays per tier (best is kept)")
    ap.add_argument("--callgrind", action="store_true", help="also count instructions")
    ap.add_argument(
        "--batch", type=int, default=1, help="captured deliveries per group commit in the replay"
    )
    ap.add_argument("--replay", help=argparse.SUPPRESS)  # the per-tier child process
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--captured", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.replay:
        print(json.dumps(replay(args.config, args.replay, args.captured, args.batch)))
        return 0
    if args.callgrind and shutil.which("valgrind") is None:
        ap.error("--callgrind needs valgrind (apt-get install valgrind)")
    tiers: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="juki-tiercpu-") as tmp:
        base = Path(tmp)
        app, files = capture(base, args.updates, args.residents, args.rate)
        for node, file in files.items():
            rounds = [
                _run_replay(base, app, node, file, args.batch) for _ in range(max(1, args.rounds))
            ]
            best = min(rounds, key=lambda r: r["cpu_seconds"])
            entry = {**best, "cpu_us_per_update_rounds": [r["cpu_us_per_update"] for r in rounds]}
            if args.callgrind:
                entry["instructions_per_update"] = instructions_per_update(
                    base, app, node, file, args.batch, best["updates"]
                )
            tiers[node] = entry
            extra = f", {entry['instructions_per_update']:,} instructions" if args.callgrind else ""
            print(
                f"{node}: {entry['updates']} updates, {entry['cpu_us_per_update']} µs CPU "
                f"per update (rounds {entry['cpu_us_per_update_rounds']}){extra}, "
                f"{entry['refused']} refused",
                flush=True,
            )
    total = sum(t["cpu_us_per_update"] or 0 for t in tiers.values())
    result = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "updates_offered": args.updates,
        "deliveries_per_group_commit": args.batch,
        "tiers": tiers,
        "cpu_us_per_update_total": round(total, 1),
    }
    if args.callgrind:
        result["instructions_per_update_total"] = sum(
            t["instructions_per_update"] or 0 for t in tiers.values()
        )
    print(f"CS + prefecture + national: {total:.0f} µs CPU per update", flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "tier_cpu.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
