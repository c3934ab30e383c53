"""An isolated appliance for end-to-end tests: its own config, keys, SQLite stores and RabbitMQ
names (a uuid prefix), every node its own process under `juki up`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from broker.control import ControlUnavailable, control_request
from juki.config import ApplianceConfig, load

ROOT = Path(__file__).resolve().parents[2]


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v, ensure_ascii=False)


def write_config(path: Path, raw: dict[str, Any]) -> None:
    lines: list[str] = []
    for section in ("appliance", "broker", "policy"):
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in raw.get(section, {}).items()]
        lines.append("")
    for array in ("prefectures", "municipalities", "nodes", "routes"):
        for item in raw.get(array, []):
            lines.append(f"[[{array}]]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
            lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


class Appliance:
    """A running isolated appliance; use `start()` / `stop()` (or the pytest fixture)."""

    def __init__(
        self,
        base: Path,
        *,
        policy: dict[str, Any] | None = None,
        only: set[str] | frozenset[str] | None = None,
    ) -> None:
        """`only`: keep just these node ids (and the municipalities and prefectures they name),
        for a test that needs a smaller network and a quicker start."""
        self.base = base
        self.prefix = f"t{uuid.uuid4().hex[:10]}"
        raw = tomllib.loads((ROOT / "appliance.toml").read_text(encoding="utf-8"))
        raw["appliance"].update(
            var_dir=str(base / "var"),
            keys_dir=str(base / "var/keys"),
            trust_file=str(base / "var/keys/trust.json"),
        )
        raw["broker"].update(
            exchange=f"{self.prefix}.juki",
            dead_letter_exchange=f"{self.prefix}.juki.dlx",
            dead_letter_queue=f"{self.prefix}.juki.dead",
            queue_prefix=f"{self.prefix}.juki.node.",
        )
        raw["policy"].update(policy or {})
        if only is not None:
            raw["nodes"] = [n for n in raw["nodes"] if n["id"] in only]
            munis = {n.get("municipality") for n in raw["nodes"]}
            raw["municipalities"] = [m for m in raw["municipalities"] if m["code"] in munis]
            prefs = {m["prefecture"] for m in raw["municipalities"]}
            prefs |= {n.get("prefecture") for n in raw["nodes"]}
            raw["prefectures"] = [p for p in raw["prefectures"] if p["code"] in prefs]
        self.path = base / "appliance.toml"
        write_config(self.path, raw)
        self.config: ApplianceConfig = load(self.path)
        self.env = {**os.environ, "JUKI_CONFIG": str(self.path)}
        self.env.pop("JUKI_KEY_PASSPHRASE", None)
        self.proc: subprocess.Popen[bytes] | None = None

    def juki(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [sys.executable, "-m", "juki.cli", "--config", str(self.path), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and out.returncode != 0:
            raise AssertionError(
                f"juki {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
            )
        return out

    def prepare(self, residents: int = 0) -> None:
        self.juki("keys", "init")
        self.juki("store", "init", "--all")
        for m in self.config.municipalities:
            self.juki("seed", "--municipality", m, "--residents", str(residents), "--quiet")

    def start(self, timeout: float = 60) -> None:
        log = open(self.base / "up.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "juki.cli", "--config", str(self.path), "up"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 60) -> None:
        out = self.juki("ctl", "status", "--wait", str(timeout), check=False, timeout=timeout + 30)
        if out.returncode != 0:
            raise AssertionError(f"appliance not healthy:\n{out.stdout}\n{self.logs()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._delete_broker_objects()

    def _delete_broker_objects(self) -> None:
        from broker.amqp import AmqpConnection

        conn = AmqpConnection(
            self.config.broker.url, exchange=self.config.broker.exchange, name="test-cleanup"
        )
        try:
            conn.connect()
            for n in self.config.nodes.values():
                conn.queue_delete(f"{self.config.broker.queue_prefix}{n.id}")
            conn.queue_delete(self.config.broker.dead_letter_queue)
            conn.exchange_delete(self.config.broker.exchange)
            conn.exchange_delete(self.config.broker.dead_letter_exchange)
        finally:
            conn.close()

    def logs(self, tail: int = 30) -> str:
        out = []
        for p in sorted((self.base / "var" / "log").glob("*.log")):
            lines = p.read_text(errors="replace").splitlines()[-tail:]
            out.append(f"--- {p.name}\n" + "\n".join(lines))
        return "\n".join(out)

    # -- driving ------------------------------------------------------------------------------

    def control(self, node_id: str, cmd: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        answer = control_request(
            self.config.control_endpoint(node_id), cmd, timeout=timeout, **args
        )
        if not answer.get("ok"):
            raise AssertionError(f"{node_id} {cmd}: {answer}")
        return answer

    def event(self, municipality: str, kind: str, **args: Any) -> dict[str, Any]:
        return self.control(f"registry.{municipality}", "registry.event", kind=kind, **args)

    def client(self, identity: str) -> Any:
        from nodes.client import client_for

        return client_for(self.config, identity)

    def rows(self, node_id: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        db = self.base / "var" / "db" / f"{node_id}.db"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
            return conn.execute(sql, params).fetchall()

    def queue_depths(self) -> dict[str, int]:
        """Messages ready in each node's queue (unacked ones show in `processed` not moving)."""
        from broker.amqp import AmqpConnection

        conn = AmqpConnection(
            self.config.broker.url, exchange=self.config.broker.exchange, name="test-depth"
        )
        try:
            conn.connect()
            return {
                n.id: conn.queue_depth(f"{self.config.broker.queue_prefix}{n.id}")
                for n in self.config.nodes.values()
                if n.role != "terminal"
            }
        finally:
            conn.close()

    def health(self, node_id: str) -> dict[str, Any]:
        try:
            return self.control(node_id, "health", timeout=5)
        except ControlUnavailable:
            return {"up": False}

    def pid(self, node_id: str) -> int:
        return int(self.control(node_id, "status")["pid"])

    def quiet(self, timeout: float = 60.0) -> None:
        """Wait until every outbox is empty and stays so (the network has settled)."""
        ids = [n.id for n in self.config.nodes.values() if n.role != "terminal"]
        deadline = time.monotonic() + timeout
        calm = 0
        depths: dict[str, Any] = {}
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            health = {i: self.health(i) for i in ids}
            depths = {i: (h.get("outbox_depth", "?"), h.get("relay")) for i, h in health.items()}
            processed = {i: h.get("processed") for i, h in health.items()}
            settled = (
                all(h.get("outbox_depth") == 0 for h in health.values())
                and processed == last
                and all(d == 0 for d in self.queue_depths().values())
            )
            last = processed
            calm = calm + 1 if settled else 0
            if calm >= 3:
                return
            time.sleep(0.4)
        stuck = {i: d for i, d in depths.items() if d[0] != 0}
        raise AssertionError(f"outboxes did not drain within {timeout}s: {stuck}\n{self.logs()}")


def wait_until(pred: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def dead_letters(app: Appliance) -> list[dict[str, Any]]:
    """Drain the appliance's dead-letter queue: reason, node and the original type of each."""
    from broker.amqp import AmqpConnection
    from broker.envelope import peek_header

    conn = AmqpConnection(
        app.config.broker.url, exchange=app.config.broker.exchange, name="test-dlq"
    )
    out = []
    try:
        conn.connect()
        while (d := conn.get(app.config.broker.dead_letter_queue)) is not None:
            h = peek_header(d.body)
            out.append(
                {
                    "reason": d.headers.get("x-juki-reason"),
                    "node": d.headers.get("x-juki-node"),
                    "detail": d.headers.get("x-juki-detail"),
                    "type": h.type if h else None,
                }
            )
    finally:
        conn.close()
    return out


@contextlib.contextmanager
def running_appliance(
    base: Path, *, residents: int, only: set[str] | frozenset[str] | None = None
) -> Iterator[Appliance]:
    """Prepare, start and finally stop an isolated appliance (module-scoped test fixtures)."""
    app = Appliance(base, only=only)
    app.prepare(residents=residents)
    app.start()
    try:
        yield app
    finally:
        app.stop()


def jst_today() -> str:
    """Today as the nodes date their 異動 (Japan time): a test's dates must not precede them."""
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(hours=9)).date().isoformat()
