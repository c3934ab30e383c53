"""起動管理 (supervisor): `juki up` runs every daemon of the topology as a child process.

A child that dies unexpectedly is restarted with backoff (a crashed CS must come back on its
own, and the inbox/outbox make a restart harmless); SIGINT/SIGTERM stop all children cleanly —
each gets SIGTERM, drains, and only a child that hangs past the grace period is killed.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from juki.config import ApplianceConfig

log = logging.getLogger("juki.up")

GRACE_SECONDS = 10.0
MAX_BACKOFF = 30.0


@dataclass
class Child:
    node_id: str
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)


def daemon_ids(config: ApplianceConfig, roles: list[str] | None = None) -> list[str]:
    """Every node that runs as a daemon (terminals are operator apps, not daemons)."""
    order = ["national", "card_management", "prefecture", "municipal_cs", "existing_registry"]
    nodes = [n for n in config.nodes.values() if n.role != "terminal"]
    if roles:
        nodes = [n for n in nodes if n.role in roles]
    return [n.id for n in sorted(nodes, key=lambda n: (order.index(n.role), n.id))]


def _spawn(config: ApplianceConfig, node_id: str) -> subprocess.Popen[bytes]:
    log_dir = config.var_dir / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    out = open(log_dir / f"{node_id}.log", "ab")  # noqa: SIM115 - handed to the child
    cmd = [sys.executable, "-m", "juki.cli", "--config", str(config.path), "node", node_id]
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def run(config: ApplianceConfig, node_ids: list[str]) -> int:
    """Start the children and supervise them until a stop signal arrives."""
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    pid_file = config.var_dir / "run" / "up.pid"
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(str(os.getpid()))
    children = {nid: Child(nid) for nid in node_ids}
    try:
        while not stopping:
            now = time.monotonic()
            for child in children.values():
                if child.proc is not None and child.proc.poll() is not None:
                    code = child.proc.returncode
                    ran = now - child.started_at
                    if ran > 60:
                        child.restarts = 0  # a long healthy run forgives earlier crashes
                    delay = min(MAX_BACKOFF, 0.5 * (2**child.restarts))
                    log.warning(
                        "%s exited with %s after %.1fs; restarting in %.1fs",
                        child.node_id,
                        code,
                        ran,
                        delay,
                    )
                    child.proc = None
                    child.restarts += 1
                    child.next_start = now + delay
                if child.proc is None and now >= child.next_start:
                    child.proc = _spawn(config, child.node_id)
                    child.started_at = now
                    log.info("started %s (pid %d)", child.node_id, child.proc.pid)
            time.sleep(0.2)
    finally:
        stop_children(list(children.values()))
        pid_file.unlink(missing_ok=True)
    return 0


def stop_children(children: list[Child]) -> None:
    live = [c for c in children if c.proc is not None and c.proc.poll() is None]
    for c in live:
        assert c.proc is not None
        c.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for c in live:
        assert c.proc is not None
        try:
            c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("%s did not stop within %.0fs; killing it", c.node_id, GRACE_SECONDS)
            c.proc.kill()
            c.proc.wait()


def detach(config: ApplianceConfig, roles: list[str] | None) -> int:
    """Start `juki up` in the background (for scripts), returning its pid."""
    log_dir = config.var_dir / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "juki.cli", "--config", str(config.path), "up"]
    for r in roles or []:
        cmd += ["--role", r]
    out = open(log_dir / "up.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    return proc.pid


def running_pid(config: ApplianceConfig) -> int | None:
    pid_file = config.var_dir / "run" / "up.pid"
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None
    return pid


def down(config: ApplianceConfig, timeout: float = GRACE_SECONDS + 5) -> bool:
    pid = running_pid(config)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def logs_dir(config: ApplianceConfig) -> Path:
    return config.var_dir / "log"
