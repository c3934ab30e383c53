"""制御面 (control plane): each node's local ZeroMQ socket for status, health, drain and stop.

Operators of the daemons ask a node how it is without going through RabbitMQ, so `juki ctl status`
still answers when the broker is the thing that is down. The only module importing zmq.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgpack
import zmq

log = logging.getLogger(__name__)

Command = Callable[[Mapping[str, Any]], Mapping[str, Any]]


class ControlServer:
    """A REP socket answering msgpack maps `{"cmd": name, ...}` with msgpack maps.

    Runs in its own thread so a busy consume loop never delays an operator's status query.
    """

    def __init__(self, endpoint: str, commands: Mapping[str, Command]) -> None:
        self.endpoint = endpoint
        self._commands = dict(commands)
        self._ctx = zmq.Context.instance()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        if self.endpoint.startswith("ipc://"):
            path = Path(self.endpoint[len("ipc://") :])
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                path.unlink()  # a stale socket left by a killed node
        sock = self._ctx.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.endpoint)
        if self.endpoint.startswith("ipc://"):
            os.chmod(self.endpoint[len("ipc://") :], 0o600)
        self._thread = threading.Thread(
            target=self._serve, args=(sock,), name="control", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _serve(self, sock: zmq.Socket[bytes]) -> None:
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if not dict(poller.poll(200)):
                    continue
                raw = sock.recv()
                sock.send(msgpack.packb(self._answer(raw), use_bin_type=True))
        finally:
            sock.close(0)

    def _answer(self, raw: bytes) -> Mapping[str, Any]:
        try:
            req = msgpack.unpackb(raw, raw=False, max_bin_len=1 << 16, max_str_len=1 << 16)
            cmd = req.get("cmd") if isinstance(req, dict) else None
        except Exception:  # hostile or broken input must never kill the control thread
            return {"ok": False, "error": "malformed control request"}
        handler = self._commands.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            return {
                "ok": False,
                "error": f"unknown command {cmd!r}",
                "commands": sorted(self._commands),
            }
        try:
            return {"ok": True, **handler(req)}
        except Exception as exc:
            log.exception("control command %s failed", cmd)
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


class ControlUnavailable(Exception):
    """The node's control socket did not answer (node not running, or hung)."""

    title = "ノードが応答しません"


def control_request(endpoint: str, cmd: str, timeout: float = 2.0, **args: Any) -> dict[str, Any]:
    """Send one control command and wait at most `timeout` seconds for the answer."""
    if endpoint.startswith("ipc://") and not Path(endpoint[len("ipc://") :]).exists():
        raise ControlUnavailable(f"no control socket at {endpoint}")
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
    sock.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
    try:
        sock.connect(endpoint)
        sock.send(msgpack.packb({"cmd": cmd, **args}, use_bin_type=True))
        raw = sock.recv()
    except zmq.Again:
        raise ControlUnavailable(f"{endpoint} did not answer within {timeout:.1f}s") from None
    except zmq.ZMQError as exc:
        raise ControlUnavailable(f"{endpoint}: {exc}") from None
    finally:
        sock.close(0)
    answer = msgpack.unpackb(raw, raw=False)
    if not isinstance(answer, dict):
        raise ControlUnavailable(f"{endpoint}: malformed answer")
    return answer
