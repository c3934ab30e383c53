"""カード挿入 (card insertion): virtual cards as background processes, one per vpcd slot.

Inserting a card starts ``python -m tui.card.virtual IMAGE --slot N`` detached from the caller
(its own session, so a terminal's Ctrl-C does not pull the card) and records its pid in
``run_dir/card-slot-N.pid``; its log goes to ``run_dir/card-slot-N.log``. Removing it sends
SIGTERM and waits: the process closes its vpcd socket, which pcscd sees as a card removal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import constants as c
from .errors import SlotOccupied
from .image import load_image

_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_MODULE = "tui.card.virtual"


def _pid_file(run_dir: Path, slot: int) -> Path:
    return run_dir / f"card-slot-{slot}.pid"


def _alive(pid: int) -> bool:
    """True if ``pid`` is a running (not zombie) virtual card process."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child that has exited: reap it
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and _MODULE.encode() in cmdline  # pid may have been reused


def _read_pid(run_dir: Path, slot: int) -> int | None:
    try:
        return int(_pid_file(run_dir, slot).read_text().strip())
    except (OSError, ValueError):
        return None


def insert_card(
    image_path: str | os.PathLike[str], slot: int, run_dir: str | os.PathLike[str]
) -> int:
    """Start the virtual card for ``image_path`` in ``slot``; returns its pid.

    The image is validated here first, so a bad file fails in the caller, not in a detached
    process nobody watches. The card is present for pcscd a moment later (use
    ``pcsc.wait_for_card``).
    """
    c.vpcd_port(slot)
    image = Path(image_path).resolve()
    load_image(image)
    rdir = Path(run_dir)
    rdir.mkdir(parents=True, exist_ok=True)
    old = _read_pid(rdir, slot)
    if old is not None and _alive(old):
        raise SlotOccupied(detail=f"slot {slot} pid {old}")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
    )
    with open(rdir / f"card-slot-{slot}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", _MODULE, str(image), "--slot", str(slot)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    pid_path = _pid_file(rdir, slot)
    tmp = pid_path.with_suffix(".pid.tmp")
    tmp.write_text(f"{proc.pid}\n")
    os.replace(tmp, pid_path)
    return proc.pid


def remove_card(slot: int, run_dir: str | os.PathLike[str], *, timeout: float = 5.0) -> bool:
    """Stop the card in ``slot``; False if there was none. SIGKILL after ``timeout``."""
    rdir = Path(run_dir)
    pid = _read_pid(rdir, slot)
    _pid_file(rdir, slot).unlink(missing_ok=True)
    if pid is None or not _alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.02)
    return True


def inserted_cards(run_dir: str | os.PathLike[str]) -> dict[int, int]:
    """Slot -> pid of every live virtual card; stale pid files are removed."""
    rdir = Path(run_dir)
    out: dict[int, int] = {}
    for slot in range(c.VPCD_SLOTS):
        pid = _read_pid(rdir, slot)
        if pid is None:
            continue
        if _alive(pid):
            out[slot] = pid
        else:
            _pid_file(rdir, slot).unlink(missing_ok=True)
    return out
