"""Snapshots of the terminal's main states (fixed size, clock and data; FakeCS answers).

Behaviour is asserted in test_shell.py and test_terminal_e2e.py; these catch layout regressions.
Update with `pytest tests/tui/test_snapshots.py --snapshot-update` after checking the SVGs.
"""

from __future__ import annotations

from typing import Any

from tests.tui.fakes import FakeCS, fake_app

SIZE = (110, 32)


async def _settle(pilot: Any) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def _login(pilot: Any) -> None:
    await _settle(pilot)
    await pilot.press("enter")
    await _settle(pilot)


def test_login_screen(snap_compare: Any) -> None:
    assert snap_compare(fake_app(), terminal_size=SIZE, run_before=_settle)


def test_menu(snap_compare: Any) -> None:
    assert snap_compare(fake_app(), terminal_size=SIZE, run_before=_login)


def test_lock_screen(snap_compare: Any) -> None:
    async def run(pilot: Any) -> None:
        await _login(pilot)
        await pilot.press("ctrl+l")
        await _settle(pilot)

    assert snap_compare(fake_app(), terminal_size=SIZE, run_before=run)


def test_error_dialog_for_a_refused_login(snap_compare: Any) -> None:
    cs = FakeCS()
    cs.refuse_login = (
        "bad_biometric",
        "生体認証が一致しません",
        "手のひらをセンサーに正しくかざして、もう一度お試しください。",
    )
    assert snap_compare(fake_app(cs), terminal_size=SIZE, run_before=_login)


def test_operator_administration(snap_compare: Any) -> None:
    async def run(pilot: Any) -> None:
        await _login(pilot)
        pilot.app.open_task("admin")
        await _settle(pilot)

    assert snap_compare(fake_app(), terminal_size=SIZE, run_before=run)


def test_audit_failed_login_report_and_chain_verdict(snap_compare: Any) -> None:
    async def run(pilot: Any) -> None:
        await _login(pilot)
        pilot.app.open_task("audit")
        await _settle(pilot)
        await pilot.press("f7")
        await _settle(pilot)
        await pilot.press("f11")
        await _settle(pilot)

    assert snap_compare(fake_app(), terminal_size=SIZE, run_before=run)
