"""The real terminal app (the shared factory) driven by Pilot against real nodes on RabbitMQ,
with the operator card as a vpcd virtual card read through pcscd (issue 5, done-when).

pcscd's two vpcd slots are shared by every suite on the machine, so the module holds
/tmp/juki-pcsc.lock (fcntl.flock) while it uses them.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nodes.client import client_for
from nodes.cs_sessions import add_operator
from tests.nodes.appliance import Appliance
from tests.nodes.sessions import TestSession, _login
from tui.app import build_app
from tui.card import pcsc, slots
from tui.card.errors import CardError, ReaderUnavailable
from tui.card.image import save_image
from tui.card.operator import new_operator_image
from tui.sensor import EmulatedSensor
from tui.session import KeyCard, PcscCardReader

pytestmark = [pytest.mark.rabbitmq, pytest.mark.pcsc]

TERM = "term.041009.001"
CS = "cs.041009"
SLOT = 1
LOCK_FILE = "/tmp/juki-pcsc.lock"


@pytest.fixture(scope="module")
def pcsc_slots() -> Iterator[None]:
    with open(LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pcsc.list_readers()
        except ReaderUnavailable:
            subprocess.run([shutil.which("pcscd") or "/usr/sbin/pcscd"], check=True, timeout=10)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    if len(pcsc.list_readers()) >= 2:
                        break
                except ReaderUnavailable:
                    time.sleep(0.1)
        yield


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, pcsc_slots: None) -> Iterator[Appliance]:
    a = Appliance(Path(tmp_path_factory.mktemp("terminal")))
    a.juki("keys", "init")
    a.juki("store", "init", "--all")
    a.start()
    try:
        yield a
    finally:
        a.stop()


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Counter:
    """The operator card in slot 1 (a detached virtual-card process)."""

    def __init__(self, app: Appliance) -> None:
        self.run_dir = app.base / "run"
        self.images = app.base / "images"
        self.images.mkdir(exist_ok=True)

    def insert(self, operator_id: str, seed: bytes) -> None:
        image = new_operator_image(
            operator_id,
            serial="900000000000123",
            municipality_code="041009",
            municipality_name="仙台市",
            expires="20301231",
            seed=seed,
        )
        path = self.images / f"{operator_id}-{seed[:4].hex()}.json"
        save_image(path, image)
        try:
            pcsc.wait_for_removal(SLOT, 5)
        except CardError as exc:
            pytest.fail(f"vpcd slot {SLOT} is held by a card this test did not insert: {exc}")
        slots.insert_card(path, SLOT, self.run_dir)
        pcsc.wait_for_card(SLOT, 10)

    def remove(self) -> None:
        if slots.remove_card(SLOT, self.run_dir):
            pcsc.wait_for_removal(SLOT, 10)


@pytest.fixture
def counter(app: Appliance) -> Iterator[Counter]:
    c = Counter(app)
    try:
        yield c
    finally:
        c.remove()


def _enrolled(app: Appliance, operator_id: str, tasks: tuple[str, ...]) -> bytes:
    seed = os.urandom(32)
    add_operator(
        app.config,
        CS,
        operator_id,
        f"試験 {operator_id}",
        tasks,
        card_serial="9001",
        card_seed=seed,
    )
    return seed


def _terminal(app: Appliance, sensor: EmulatedSensor, clock: Clock) -> Any:
    return build_app(
        app.config,
        TERM,
        clients=lambda: client_for(app.config, TERM),
        clock=clock,
        sensor=sensor,
        card_reader=PcscCardReader(SLOT),
    )


async def _until(pilot: Any, pred: Callable[[], Any], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; screen {type(pilot.app.screen)}")
        await pilot.pause(0.1)


def _screen(pilot: Any) -> str:
    return type(pilot.app.screen).__name__


def _run(coro: Any) -> None:
    asyncio.run(coro)


def _login_rows(app: Appliance, operator_id: str) -> list[str]:
    return [
        r[0]
        for r in app.rows(
            CS,
            "SELECT outcome FROM usage_log WHERE user_id = ? AND message_type = 'cs.op.login' "
            "ORDER BY seq",
            (operator_id,),
        )
    ]


def test_login_with_card_and_biometric_then_card_removal_locks(
    app: Appliance, counter: Counter
) -> None:
    seed = _enrolled(app, "tui-clerk", ("監査",))
    counter.insert("tui-clerk", seed)
    terminal = _terminal(app, EmulatedSensor(seed=1), Clock())

    async def run() -> None:
        async with terminal.run_test(size=(110, 32)) as pilot:
            await _until(pilot, lambda: _screen(pilot) == "LoginScreen", "login screen")
            await pilot.press("enter")
            await _until(pilot, lambda: _screen(pilot) == "MenuScreen", "menu after login")
            assert terminal.session.operator_id == "tui-clerk"
            assert terminal.status.broker == "接続"
            counter.remove()
            await _until(pilot, lambda: _screen(pilot) == "LockScreen", "lock on card removal")
            assert terminal.locked
            # the CS was told: a request on the session is refused there too
            await _until(
                pilot,
                lambda: (
                    app.rows(
                        CS,
                        "SELECT state FROM operator_session WHERE session_id = ?",
                        (terminal.session.session_id,),
                    )
                    == [("locked",)]
                ),
                "the CS-side lock",
            )
            counter.insert("tui-clerk", seed)
            await pilot.press("enter")  # unlock: the same operator, card + biometric again
            await _until(pilot, lambda: _screen(pilot) == "MenuScreen", "unlocked")
            assert not terminal.locked

    _run(run())
    assert _login_rows(app, "tui-clerk")[-2:] == ["ok", "ok"]


def test_wrong_biometric_and_foreign_card_are_refused(app: Appliance, counter: Counter) -> None:
    seed = _enrolled(app, "tui-clerk2", ("監査",))
    sensor = EmulatedSensor("someone-else", seed=2)
    terminal = _terminal(app, sensor, Clock())
    counter.insert("tui-clerk2", seed)

    async def run() -> None:
        async with terminal.run_test(size=(110, 32)) as pilot:
            await pilot.press("enter")
            await _until(pilot, lambda: _screen(pilot) == "ErrorDialog", "refusal dialog")
            assert terminal.errors[-1].code == "bad_biometric"
            assert terminal.session is None
            await pilot.press("enter")  # dismiss
            counter.remove()
            counter.insert("tui-clerk2", os.urandom(32))  # the id is right, the key is not
            sensor.present(None)  # the right person this time
            await pilot.press("enter")
            await _until(pilot, lambda: len(terminal.errors) == 2, "second refusal")
            assert terminal.errors[-1].code == "bad_card"
            assert terminal.session is None

    _run(run())
    assert _login_rows(app, "tui-clerk2")[-2:] == ["refused:bad_biometric", "refused:bad_card"]


def test_idle_lock_blanks_personal_data(app: Appliance, counter: Counter) -> None:
    seed = _enrolled(app, "tui-audit", ("監査",))
    counter.insert("tui-audit", seed)
    clock = Clock()
    terminal = _terminal(app, EmulatedSensor(seed=3), clock)

    async def run() -> None:
        from textual.widgets import DataTable

        async with terminal.run_test(size=(110, 32)) as pilot:
            await pilot.press("enter")
            await _until(pilot, lambda: _screen(pilot) == "MenuScreen", "menu")
            terminal.open_task("audit")
            await _until(pilot, lambda: _screen(pilot) == "AuditScreen", "audit screen")
            audit = terminal.screen
            await _until(pilot, lambda: audit.query("#audit-table"), "audit table mounted")
            table = audit.query_one("#audit-table", DataTable)
            await pilot.press("f5")
            await _until(pilot, lambda: table.row_count > 0, "usage rows")
            clock.offset = app.config.policy.idle_lock_seconds + 1  # nobody touched a key
            terminal.tick()
            await _until(pilot, lambda: _screen(pilot) == "LockScreen", "idle lock")
            assert table.row_count == 0  # blanked, not merely covered

    _run(run())


def test_revoked_operator_is_refused_at_the_next_request(app: Appliance, counter: Counter) -> None:
    seed = _enrolled(app, "tui-gone", ("監査",))
    admin_seed = _enrolled(app, "tui-admin", ("操作者管理",))
    counter.insert("tui-gone", seed)
    terminal = _terminal(app, EmulatedSensor(seed=4), Clock())

    async def run() -> None:
        async with terminal.run_test(size=(110, 32)) as pilot:
            await pilot.press("enter")
            await _until(pilot, lambda: _screen(pilot) == "MenuScreen", "menu")
            terminal.open_task("audit")
            await _until(pilot, lambda: _screen(pilot) == "AuditScreen", "audit screen")
            await _until(pilot, lambda: terminal.screen.query("#audit-table"), "audit mounted")
            admin_card = KeyCard("tui-admin", admin_seed)
            admin = TestSession(
                app, "term.041009.002", _login(app, "term.041009.002", CS, admin_card), admin_card
            )
            admin.call(
                "cs.op.admin.revoke", {"target": "tui-gone"}, task="操作者管理", reason="異動"
            )
            await pilot.press("f5")
            await _until(pilot, lambda: _screen(pilot) == "ErrorDialog", "refusal")
            assert terminal.errors[-1].code == "revoked"
            assert terminal.session is None

    _run(run())
