"""照会の往復性能 (RPC round-trip benchmark): sealed RPC against raw pika (and nameko).

    .venv/bin/python bench/rpc.py [--seconds 3] [--peer nameko] [--reply-queue direct|exclusive]

Runs, in one invocation and against the same RabbitMQ:
- raw: straightforward pika (BlockingConnection, direct reply-to, msgpack bodies, no sealing) —
  the floor any RPC over this broker pays;
- sealed: broker.rpc.RpcClient → broker.service.Service, every request and reply signed,
  encrypted, verified, replay- and route-checked and schema-validated;
- nameko (with --peer nameko): the same echo through a nameko @rpc service and
  ClusterRpcProxy clients.

The server of each variant runs in its own process (as a node would); 1 and 8 client threads
call `echo` with a 64-byte payload in a closed loop. Prints calls/s and p50/p99 latency per
variant and the ratios, and writes bench/results/rpc.json.

raw pika is imported here on purpose: the baseline must not go through our transport.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402

from broker.keys import Identity, TrustStore  # noqa: E402
from broker.routes import NodeInfo, Route, RouteTable  # noqa: E402
from broker.schema import plumbing_types  # noqa: E402
from broker.topology import Topology  # noqa: E402

URL = os.environ.get("JUKI_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2F")
SERVER = "bench.svc"
PAYLOAD = b"\x5a" * 64
CLIENT_COUNTS = (1, 8)
WARMUP_CALLS = 200


# -- the shared world --------------------------------------------------------------------------


def make_spec(prefix: str) -> dict[str, Any]:
    ids = [SERVER] + [f"bench.cli{i}" for i in range(max(CLIENT_COUNTS))]
    keys = {}
    for n in ids:
        ident = Identity.generate(n)
        keys[n] = [ident.signer.seed.hex(), ident.box_secret.secret.hex()]
    return {"prefix": prefix, "keys": keys, "nameko_service": f"juki_bench_{prefix}"}


class World:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.identities = {
            n: Identity.from_seeds(n, bytes.fromhex(s), bytes.fromhex(b))
            for n, (s, b) in spec["keys"].items()
        }
        self.trust = TrustStore([i.public for i in self.identities.values()])
        nodes = {n: NodeInfo(n, "national" if n == SERVER else "terminal") for n in self.identities}
        self.routes = RouteTable([Route("terminal", "national", "any", ("echo", "ping"))], nodes)
        self.schemas = plumbing_types()
        self.topology = Topology.isolated(spec["prefix"])
        self.raw_queue = f"{spec['prefix']}.raw"
        self.transport_queue = f"{spec['prefix']}.transport"


# -- servers (child processes) -----------------------------------------------------------------


def serve_sealed(spec: dict[str, Any], stop: threading.Event) -> None:
    from broker.service import Service, ServiceConfig

    w = World(spec)

    def echo(msg: Any, ctx: Any) -> dict[str, Any]:
        return {"payload": msg.body["payload"]}

    Service(
        SERVER,
        w.identities[SERVER],
        w.trust,
        w.routes,
        w.schemas,
        {"echo": echo},
        topology=w.topology,
        config=ServiceConfig(url=URL, prefetch=64, batch_size=64),
    ).run(stop)


def serve_raw(spec: dict[str, Any], stop: threading.Event) -> None:
    import pika

    w = World(spec)
    conn = pika.BlockingConnection(pika.URLParameters(URL))
    ch = conn.channel()
    ch.queue_declare(w.raw_queue, auto_delete=True)
    ch.basic_qos(prefetch_count=64)

    def on_request(ch: Any, method: Any, props: Any, body: bytes) -> None:
        request = msgpack.unpackb(body)
        reply = msgpack.packb({"ok": True, "data": {"payload": request["payload"]}})
        ch.basic_publish(
            "",
            props.reply_to,
            reply,
            pika.BasicProperties(correlation_id=props.correlation_id),
        )
        ch.basic_ack(method.delivery_tag)

    ch.basic_consume(w.raw_queue, on_request)
    while not stop.is_set():
        conn.process_data_events(time_limit=0.2)
    conn.close()


def serve_transport(spec: dict[str, Any], stop: threading.Event) -> None:
    """Our transport (broker.amqp) with unsealed msgpack bodies: isolates the sealing cost."""
    from broker.amqp import AmqpConnection, Delivery
    from broker.errors import BrokerError

    w = World(spec)
    conn = AmqpConnection(URL, name="juki-bench-transport-server", confirms=False)
    conn.connect()
    conn.queue_declare(w.transport_queue, durable=False)
    pending: list[Delivery] = []
    conn.consume(w.transport_queue, pending.append, prefetch=64)
    while not stop.is_set():
        if not pending:
            conn.wait(0.2)
            continue
        batch = pending[:]
        pending.clear()
        for d in batch:
            request = msgpack.unpackb(d.body)
            reply = msgpack.packb({"ok": True, "data": {"payload": request["payload"]}})
            conn.publish(d.reply_to or "", reply, correlation_id=d.correlation_id, wait=False)
        conn.ack(batch[-1].tag, multiple=True)
    try:
        conn.queue_delete(w.transport_queue)
    except BrokerError as exc:  # the connection may already be gone at shutdown
        print(f"transport server: queue not deleted ({exc})", file=sys.stderr)
    conn.close()


def serve_nameko(spec: dict[str, Any], stop: threading.Event) -> None:
    import eventlet

    eventlet.monkey_patch()
    from nameko.rpc import rpc
    from nameko.runners import ServiceRunner

    class Echo:
        name = spec["nameko_service"]

        @rpc
        def echo(self, payload: bytes) -> bytes:
            return payload

    runner = ServiceRunner({"AMQP_URI": URL, "serializer": "pickle"})
    runner.add_service(Echo)
    runner.start()
    while not stop.is_set():
        eventlet.sleep(0.2)
    runner.stop()


# -- clients -----------------------------------------------------------------------------------


def sealed_client(spec: dict[str, Any], index: int, reply_queue: str) -> Callable[[], Any]:
    from broker.rpc import RpcClient

    w = World(spec)
    node = f"bench.cli{index}"
    client = RpcClient(
        node,
        w.identities[node],
        w.trust,
        w.routes,
        w.schemas,
        URL,
        w.topology,
        reply_queue=reply_queue,
    )
    body = {"payload": PAYLOAD}

    def call() -> Any:
        result = client.call(SERVER, "echo", body)
        assert result["payload"] == PAYLOAD
        return result

    call.close = client.close  # type: ignore[attr-defined]
    return call


def transport_client(spec: dict[str, Any], index: int, reply_queue: str) -> Callable[[], Any]:
    from broker.amqp import DIRECT_REPLY_TO, AmqpConnection, Delivery

    w = World(spec)
    conn = AmqpConnection(URL, name=f"juki-bench-transport-{index}", confirms=False)
    conn.connect()
    replies: dict[str, bytes] = {}

    def on_reply(d: Delivery) -> None:
        replies[d.correlation_id or ""] = d.body

    conn.consume(DIRECT_REPLY_TO, on_reply, auto_ack=True)
    body = msgpack.packb({"payload": PAYLOAD})
    counter = iter(range(1 << 62))

    def call() -> Any:
        cid = str(next(counter))
        conn.publish(
            w.transport_queue, body, exchange="", reply_to=DIRECT_REPLY_TO, correlation_id=cid
        )
        conn.wait_for(lambda: cid in replies, 10.0)
        result = msgpack.unpackb(replies.pop(cid))
        assert result["data"]["payload"] == PAYLOAD
        return result

    call.close = conn.close  # type: ignore[attr-defined]
    return call


def raw_client(spec: dict[str, Any], index: int, reply_queue: str) -> Callable[[], Any]:
    """Straightforward pika: what a competent engineer writes for RPC over RabbitMQ."""
    import pika

    w = World(spec)
    conn = pika.BlockingConnection(pika.URLParameters(URL))
    ch = conn.channel()
    replies: dict[str, bytes] = {}

    def on_reply(_ch: Any, _method: Any, props: Any, body: bytes) -> None:
        replies[props.correlation_id] = body

    if reply_queue == "direct":
        reply_to = "amq.rabbitmq.reply-to"
    else:
        reply_to = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
    ch.basic_consume(reply_to, on_reply, auto_ack=True)
    body = msgpack.packb({"payload": PAYLOAD})

    def call() -> Any:
        cid = uuid.uuid4().hex
        ch.basic_publish(
            "",
            w.raw_queue,
            body,
            pika.BasicProperties(reply_to=reply_to, correlation_id=cid),
        )
        while cid not in replies:
            conn.process_data_events(time_limit=None)
        result = msgpack.unpackb(replies.pop(cid))
        assert result["data"]["payload"] == PAYLOAD
        return result

    call.close = conn.close  # type: ignore[attr-defined]
    return call


def measure(factory: Callable[[int], Callable[[], Any]], clients: int, seconds: float) -> dict:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    done = threading.Event()
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            call = factory(i)
            for _ in range(WARMUP_CALLS):
                call()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
            return
        barrier.wait()
        mine = latencies[i]
        clock = time.perf_counter
        try:
            while not done.is_set():
                t0 = clock()
                call()
                mine.append(clock() - t0)
        except BaseException as exc:
            errors.append(exc)
        finally:
            call.close()  # type: ignore[attr-defined]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        raise RuntimeError(f"client failed to start: {errors[0]!r}") from None
    start = time.perf_counter()
    cpu0 = time.process_time()
    time.sleep(seconds)
    done.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    client_cpu = time.process_time() - cpu0
    if errors:
        raise RuntimeError(f"client failed: {errors[0]!r}")
    flat = sorted(x for per in latencies for x in per)
    return {
        "clients": clients,
        "calls": len(flat),
        "calls_per_s": round(len(flat) / elapsed, 1),
        "p50_ms": round(statistics.median(flat) * 1000, 3),
        "p99_ms": round(flat[int(len(flat) * 0.99)] * 1000, 3),
        "client_cpu_us_per_call": round(client_cpu / max(1, len(flat)) * 1e6, 1),
    }


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_server_cpu(pid: int, sample: Callable[[], dict]) -> dict:
    """Adds the server process's CPU per call: load-independent, unlike calls/s on a shared
    host (the warm-up calls are included in the server's share, so it is a slight overestimate)."""
    before = process_cpu(pid)
    result = sample()
    used = process_cpu(pid) - before
    result["server_cpu_us_per_call"] = round(used / max(1, result["calls"]) * 1e6, 1)
    return result


def nameko_measure(spec: dict[str, Any], clients: int, seconds: float) -> dict:
    """nameko clients need eventlet; they run in a child process, reporting JSON."""
    try:
        return _nameko_measure(spec, clients, seconds)
    except subprocess.CalledProcessError:
        # kombu occasionally reports ECONNREFUSED when 8 proxies connect at once; retry once
        return _nameko_measure(spec, clients, seconds)


def _nameko_measure(spec: dict[str, Any], clients: int, seconds: float) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--nameko-clients", str(clients), str(seconds)],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def nameko_clients_main(clients: int, seconds: float) -> None:
    import eventlet

    eventlet.monkey_patch()
    from nameko.standalone.rpc import ClusterRpcProxy

    spec = json.loads(sys.stdin.read())
    config = {"AMQP_URI": URL, "serializer": "pickle"}

    def factory(_i: int) -> Callable[[], Any]:
        proxy = ClusterRpcProxy(config)
        cluster = proxy.start()
        service = getattr(cluster, spec["nameko_service"])

        def call() -> Any:
            result = service.echo(PAYLOAD)
            assert result == PAYLOAD
            return result

        call.close = proxy.stop  # type: ignore[attr-defined]
        return call

    print(json.dumps(measure(factory, clients, seconds)))


# -- orchestration -----------------------------------------------------------------------------


def start_server(kind: str, spec: dict[str, Any]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind],
        stdin=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(spec))
    proc.stdin.close()
    time.sleep(1.5 if kind != "nameko" else 3.0)
    if proc.poll() is not None:
        raise RuntimeError(f"{kind} server exited with {proc.returncode}")
    return proc


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def serve_main(kind: str) -> None:
    spec = json.loads(sys.stdin.read())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    servers = {
        "sealed": serve_sealed,
        "raw": serve_raw,
        "transport": serve_transport,
        "nameko": serve_nameko,
    }
    servers[kind](spec, stop)


def cleanup(spec: dict[str, Any]) -> None:
    from broker.amqp import AmqpConnection

    w = World(spec)
    conn = AmqpConnection(URL, name="juki-bench-cleanup")
    conn.connect()
    conn.queue_delete(w.topology.queue(SERVER))
    conn.queue_delete(w.topology.dead_letter_queue)
    conn.exchange_delete(w.topology.exchange)
    conn.exchange_delete(w.topology.dead_letter_exchange)
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per sample")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved samples per variant")
    parser.add_argument("--peer", choices=["nameko"], default=None)
    parser.add_argument("--reply-queue", choices=["direct", "exclusive"], default="direct")
    parser.add_argument(
        "--serve", choices=["sealed", "raw", "transport", "nameko"], help=argparse.SUPPRESS
    )
    parser.add_argument("--nameko-clients", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_main(args.serve)
        return
    if args.nameko_clients:
        nameko_clients_main(int(args.nameko_clients[0]), float(args.nameko_clients[1]))
        return

    spec = make_spec(f"bench{uuid.uuid4().hex[:8]}")
    samplers: dict[str, Callable[[int], dict]] = {
        "raw": lambda n: measure(lambda i: raw_client(spec, i, args.reply_queue), n, args.seconds),
        "sealed": lambda n: measure(
            lambda i: sealed_client(spec, i, args.reply_queue), n, args.seconds
        ),
    }
    samplers["transport"] = lambda n: measure(
        lambda i: transport_client(spec, i, args.reply_queue), n, args.seconds
    )
    if args.peer == "nameko":
        samplers["nameko"] = lambda n: nameko_measure(spec, n, args.seconds)
    samples: dict[str, dict[str, list[dict]]] = {
        v: {str(n): [] for n in CLIENT_COUNTS} for v in samplers
    }
    servers = {name: start_server(name, spec) for name in samplers}
    try:
        # Interleaved rounds: the host is shared, so load changes over a run; each round measures
        # every variant back to back and the ratios are taken per round.
        for n in CLIENT_COUNTS:
            for _ in range(args.rounds):
                for name, sample in samplers.items():
                    result = with_server_cpu(servers[name].pid, lambda s=sample, k=n: s(k))
                    samples[name][str(n)].append(result)
    finally:
        for server in servers.values():
            stop_server(server)
        cleanup(spec)

    results: dict[str, Any] = {
        "host": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "payload_bytes": len(PAYLOAD),
        "seconds_per_sample": args.seconds,
        "rounds": args.rounds,
        "reply_queue": args.reply_queue,
        "samples": samples,
    }
    best: dict[str, dict[str, dict]] = {}
    for name in samplers:
        best[name] = {}
        for n in CLIENT_COUNTS:
            b = max(samples[name][str(n)], key=lambda r: r["calls_per_s"])
            best[name][str(n)] = b
            print(
                f"{name:7s} {n} client(s): best {b['calls_per_s']:8.1f} calls/s  "
                f"p50 {b['p50_ms']:.3f} ms  p99 {b['p99_ms']:.3f} ms  "
                f"cpu/call client {b['client_cpu_us_per_call']:.0f} us "
                f"server {b['server_cpu_us_per_call']:.0f} us   all: "
                + ", ".join(f"{r['calls_per_s']:.0f}" for r in samples[name][str(n)])
            )
    results["best"] = best
    ratios: dict[str, float] = {}
    for n in CLIENT_COUNTS:
        for other in [v for v in samplers if v != "sealed"]:
            per_round = [
                s["calls_per_s"] / o["calls_per_s"]
                for s, o in zip(samples["sealed"][str(n)], samples[other][str(n)], strict=True)
            ]
            ratios[f"sealed/{other}@{n} (median of rounds)"] = round(
                statistics.median(per_round), 3
            )
            ratios[f"sealed/{other}@{n} (best vs best)"] = round(
                best["sealed"][str(n)]["calls_per_s"] / best[other][str(n)]["calls_per_s"], 3
            )
    results["ratios"] = ratios
    for key, value in ratios.items():
        print(f"{key}: {value:.2f}")
    out = ROOT / "bench" / "results" / "rpc.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
