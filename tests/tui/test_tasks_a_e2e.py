"""Issue 6 (first half): the counter-task screens driven by Pilot in the real app against real
nodes on RabbitMQ — 本人確認情報検索 (V-7 refusal, record with history, logged reveal, blank on
lock), 全国サーバ照会, 特例転入, 住民票コード変更 and 統計 — each found afterwards in the CS's
usage log with operator, terminal, 事務種別 and 処理事由.

The operator card here is the in-memory `KeyCard` (same key, same challenge signing as the vpcd
card, which test_terminal_e2e.py covers through pcscd): these tests never touch pcscd, so they do
not take /tmp/juki-pcsc.lock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nodes.client import client_for
from tests.nodes.appliance import Appliance, wait_until
from tests.nodes.sessions import ALL_CLERK_TASKS, enrol_operator
from tui.app import build_app
from tui.sensor import EmulatedSensor

pytestmark = [pytest.mark.rabbitmq]

TERM = "term.041009.001"
CS = "cs.041009"
SENDAI, ISHINOMAKI = "041009", "042021"
IDENTITY = "resident_code, name_kanji, birth_date, address, individual_number, record_status"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    a = Appliance(Path(tmp_path_factory.mktemp("tasks-a")))
    a.prepare(residents=3)  # also fills the registries' pools of designated 住民票コード
    a.start()
    try:
        yield a
    finally:
        a.stop()


@pytest.fixture(scope="module")
def resident(app: Appliance) -> dict[str, Any]:
    """A 仙台市 resident born through the registry, with a 個人番号 assigned by 機構."""
    code = app.event(SENDAI, "birth")["resident_code"]
    app.event(SENDAI, "number_request", resident_code=code)
    row = wait_until(
        lambda: app.rows(
            CS,
            f"SELECT {IDENTITY} FROM identity WHERE resident_code = ? "
            "AND individual_number IS NOT NULL",
            (code,),
        ),
        what="the newborn with a 個人番号 at the CS",
    )[0]
    return dict(zip(IDENTITY.replace(" ", "").split(","), row, strict=True))


def _terminal(app: Appliance, operator: str) -> Any:
    card = enrol_operator(app, TERM, operator, ALL_CLERK_TASKS)
    return build_app(
        app.config,
        TERM,
        clients=lambda: client_for(app.config, TERM),
        sensor=EmulatedSensor(seed=1),
        card_reader=card,
        watch_card=False,
    )


async def _until(pilot: Any, pred: Callable[[], Any], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            errors = [e.title for e in pilot.app.errors]
            raise AssertionError(
                f"timed out waiting for {what}; screen {_screen(pilot)}, errors {errors}"
            )
        await pilot.pause(0.1)


def _screen(pilot: Any) -> str:
    return type(pilot.app.screen).__name__


async def _open(pilot: Any, task_id: str, reason: str) -> Any:
    """Log in, open ``task_id`` from the menu's entry and give the 処理事由."""
    from textual.widgets import Input

    await _until(pilot, lambda: _screen(pilot) == "LoginScreen", "login screen")
    await pilot.press("enter")
    await _until(pilot, lambda: _screen(pilot) == "MenuScreen", "menu after login")
    pilot.app.open_task(task_id)
    await _until(pilot, lambda: _screen(pilot) == "TaskReasonDialog", "事務種別/処理事由")
    pilot.app.screen.query_one("#reason-text", Input).value = reason
    await pilot.press("enter")
    await _until(pilot, lambda: getattr(pilot.app.screen, "reason", None) == reason, "task")
    return pilot.app.screen


def _fill(screen: Any, **values: str) -> None:
    from textual.widgets import Input

    for wid, value in values.items():
        screen.query_one(f"#{wid}", Input).value = value


def _usage(app: Appliance, operator: str, message_type: str) -> list[tuple[Any, ...]]:
    return app.rows(
        CS,
        "SELECT user_id, terminal_id, task, reason, target, outcome FROM usage_log "
        "WHERE user_id = ? AND message_type = ? ORDER BY seq",
        (operator, message_type),
    )


def test_search_refuses_v7_then_finds_shows_history_reveals_and_blanks(
    app: Appliance, resident: dict[str, Any]
) -> None:
    from textual.widgets import DataTable

    from tui.widgets_task import RecordView

    terminal = _terminal(app, "tui-a-search")
    name, birth = resident["name_kanji"], resident["birth_date"]

    async def run() -> None:
        async with terminal.run_test(size=(120, 40)) as pilot:
            screen = await _open(pilot, "search", "窓口での本人確認")
            _fill(screen, **{"s-name_kanji": name})
            await pilot.pause()
            assert "V-7" in str(screen.query_one("#s-rule").render())  # explained while typing
            await pilot.press("f5")  # sent anyway: the CS decides
            await _until(pilot, lambda: _screen(pilot) == "ErrorDialog", "V-7 refusal")
            error = terminal.errors[-1]
            assert error.code == "V-7"
            assert "氏名と住所、または氏名と生年月日" in error.what
            assert "住所または生年月日を入力" in error.todo
            await pilot.press("enter")

            _fill(screen, **{"s-birth_date": birth})
            await pilot.press("f5")
            results = screen.query_one("#s-results")
            await _until(pilot, lambda: results.row_count > 0, "search results")
            codes = [r["resident_code"] for r in results.rows_data]
            assert resident["resident_code"] in codes
            results.move_cursor(row=codes.index(resident["resident_code"]))
            await pilot.press("enter")
            view = screen.query_one("#s-record", RecordView)
            await _until(pilot, lambda: view.record is not None, "record with history")
            assert view.record["resident_code"] == resident["resident_code"]
            # 出生 then 個人番号指定: the birth version is in the history
            assert [h["change_reason"] for h in view.history][:1] == ["出生"]
            number = resident["individual_number"]
            assert number not in str(view.number.render())
            assert number[-4:] in str(view.number.render())

            await pilot.press("f9")  # reveal: its own logged request
            await _until(pilot, lambda: view.number.revealed is not None, "revealed number")
            assert view.number.revealed == number
            assert number in str(view.number.render())

            await pilot.press("ctrl+l")
            await _until(pilot, lambda: _screen(pilot) == "LockScreen", "lock")
            assert view.number.revealed is None and view.record is None
            assert results.row_count == 0
            assert screen.query_one("#record-items", DataTable).row_count == 0
            assert screen.query_one("#s-name_kanji").value == ""

    asyncio.run(run())
    refused, ok = _usage(app, "tui-a-search", "cs.op.search")
    assert refused[:4] == ("tui-a-search", TERM, "本人確認情報検索", "窓口での本人確認")
    assert refused[5] == "refused:V-7"
    assert ok[:4] == refused[:4] and ok[5] == "ok"
    lookup = _usage(app, "tui-a-search", "cs.op.lookup")
    assert lookup == [("tui-a-search", TERM, "本人確認情報検索", "窓口での本人確認",
                       resident["resident_code"], "ok")]  # fmt: skip
    reveal = _usage(app, "tui-a-search", "cs.op.number.reveal")
    assert [r[2:4] + r[5:] for r in reveal] == [("本人確認情報検索", "窓口での本人確認", "ok")]
    assert resident["resident_code"] in reveal[0][4]


def test_cancelling_the_reason_returns_to_the_menu_and_sends_nothing(app: Appliance) -> None:
    terminal = _terminal(app, "tui-a-cancel")

    async def run() -> None:
        async with terminal.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: _screen(pilot) == "LoginScreen", "login screen")
            await pilot.press("enter")
            await _until(pilot, lambda: _screen(pilot) == "MenuScreen", "menu")
            terminal.open_task("statistics")
            await _until(pilot, lambda: _screen(pilot) == "TaskReasonDialog", "dialog")
            await pilot.press("enter")  # empty: refused by the dialog itself
            assert _screen(pilot) == "TaskReasonDialog"
            await pilot.press("escape")
            await _until(pilot, lambda: _screen(pilot) == "MenuScreen", "back to the menu")

    asyncio.run(run())
    assert _usage(app, "tui-a-cancel", "cs.op.statistics") == []


def test_national_query_by_code(app: Appliance, resident: dict[str, Any]) -> None:
    terminal = _terminal(app, "tui-a-national")
    code = resident["resident_code"]
    wait_until(
        lambda: app.rows("national", "SELECT 1 FROM national_identity WHERE resident_code = ?",
                         (code,)),
        what="the resident at national",
    )  # fmt: skip

    async def run() -> None:
        async with terminal.run_test(size=(120, 40)) as pilot:
            screen = await _open(pilot, "national", "転入者の前住所地での登録確認")
            _fill(screen, **{"nq-code": code})
            await pilot.press("f5")
            results = screen.query_one("#nq-results")
            await _until(pilot, lambda: results.row_count > 0, "national answer")
            row = results.rows_data[0]
            assert row["resident_code"] == code and row["name_kanji"] == resident["name_kanji"]
            assert row["individual_number"] == "********" + resident["individual_number"][-4:]

    asyncio.run(run())
    rows = _usage(app, "tui-a-national", "cs.op.national_query")
    assert rows == [("tui-a-national", TERM, "全国サーバ照会", "転入者の前住所地での登録確認",
                     f"全国照会 {code} → 1件", "ok")]  # fmt: skip


def test_tokurei_movein_from_the_pending_list(app: Appliance) -> None:
    code = app.event(ISHINOMAKI, "birth")["resident_code"]
    wait_until(
        lambda: app.rows(f"cs.{ISHINOMAKI}", "SELECT 1 FROM identity WHERE resident_code = ?",
                         (code,)),
        what="birth at 石巻市",
    )  # fmt: skip
    app.event(ISHINOMAKI, "move_out", resident_code=code, to_municipality=SENDAI)
    wait_until(
        lambda: app.rows(CS, "SELECT 1 FROM pending_move_out WHERE resident_code = ?", (code,)),
        what="転出証明書情報 held at 仙台市's CS",
    )
    terminal = _terminal(app, "tui-a-tokurei")
    address = "宮城県仙台市青葉区国分町三丁目7番1号"

    async def run() -> None:
        async with terminal.run_test(size=(120, 40)) as pilot:
            screen = await _open(pilot, "tokurei", "転入届の受付")
            table = screen.query_one("#tk-list")
            await _until(pilot, lambda: table.row_count > 0, "pending list")
            codes = [r["resident_code"] for r in table.rows_data]
            table.move_cursor(row=codes.index(code))
            _fill(screen, **{"tk-address": address, "tk-date": "2026-11-27"})
            await pilot.press("f2")
            await _until(pilot, lambda: "転入処理を受け付けました" in screen.done
                         or "転入処理を受け付けました" in str(screen.query_one("#task-state")
                                                          .render()), "accepted")  # fmt: skip

    asyncio.run(run())
    wait_until(
        lambda: app.rows(
            CS,
            "SELECT 1 FROM identity WHERE resident_code = ? AND address = ? "
            "AND record_status = '現存' AND change_reason = '転入'",
            (code, address),
        ),
        what="the 転入 recorded at 仙台市's CS",
    )
    assert [r[2:] for r in _usage(app, "tui-a-tokurei", "cs.op.tokurei_movein")] == [
        ("特例転入", "転入届の受付", code, "ok")
    ]
    listed = _usage(app, "tui-a-tokurei", "cs.op.pending_moveouts")
    assert listed and listed[0][:4] == ("tui-a-tokurei", TERM, "特例転入", "転入届の受付")


def test_code_change_picks_an_offered_code_and_prints_the_notice(
    app: Appliance, resident: dict[str, Any]
) -> None:
    terminal = _terminal(app, "tui-a-code")
    old = resident["resident_code"]

    async def run() -> None:
        async with terminal.run_test(size=(120, 40)) as pilot:
            screen = await _open(pilot, "code_change", "本人からの変更請求")
            _fill(screen, **{"cc-code": old})
            await pilot.press("f5")
            await _until(pilot, lambda: screen.codes and screen.resident, "candidates")
            assert screen.resident["name_kanji"] == resident["name_kanji"]
            screen.query_one("#cc-candidates").highlighted = 1
            await pilot.press("enter")  # the second code offered
            await _until(pilot, lambda: _screen(pilot) == "ConfirmChange", "confirm")
            await pilot.press("y")
            await _until(pilot, lambda: screen.notice is not None, "notice")
            chosen = screen.new_code
            assert chosen == screen.codes[1]
            await pilot.press("f6")
            await _until(pilot, lambda: screen.saved is not None, "notice saved")
            text = screen.saved.read_text(encoding="utf-8")
            assert screen.saved.parent == app.config.var_dir / "notices"
            assert "住民票コード変更通知書" in text and resident["name_kanji"] in text
            assert f"{chosen[:4]} {chosen[4:8]} {chosen[8:]}" in text
            result["new"] = chosen

    result: dict[str, str] = {}
    asyncio.run(run())
    wait_until(
        lambda: app.rows(CS, "SELECT 1 FROM identity WHERE resident_code = ? "
                         "AND old_resident_code = ?", (result["new"], old)),
        what="the new code at the CS",
    )  # fmt: skip
    assert [r[2:] for r in _usage(app, "tui-a-code", "cs.op.code_change")] == [
        ("住民票コード変更", "本人からの変更請求", old, "ok")
    ]
    # T-16: the notice's output was recorded at the CS before the file was written
    outputs = _usage(app, "tui-a-code", "cs.op.output")
    assert len(outputs) == 1 and result["new"] in outputs[0][4] and outputs[0][5] == "ok"
    resident["resident_code"] = result["new"]  # later tests look the person up by the new code


def test_statistics_counts_only(app: Appliance, resident: dict[str, Any]) -> None:
    terminal = _terminal(app, "tui-a-stats")

    async def run() -> None:
        async with terminal.run_test(size=(120, 40)) as pilot:
            screen = await _open(pilot, "statistics", "月次報告")
            await _until(pilot, lambda: screen.totals, "counts")
            births = app.rows(
                CS, "SELECT COUNT(*) FROM identity_history WHERE change_reason = '出生'"
            )[0][0]
            assert screen.totals["出生"] == births >= 1
            # counts only: nothing on the screen names a person or a code
            table = screen.query_one("#st-table")
            cells = [str(c) for r in range(table.row_count) for c in table.get_row_at(r)]
            assert resident["name_kanji"] not in cells
            assert not any(c.isdigit() and len(c) == 11 for c in cells)

    asyncio.run(run())
    assert [r[2:] for r in _usage(app, "tui-a-stats", "cs.op.statistics")] == [
        ("統計", "月次報告", "統計", "ok")
    ]
