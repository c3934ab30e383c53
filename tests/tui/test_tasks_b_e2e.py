"""Counter-task screens, part B (issue 6), end to end: the real terminal app (the shared
factory) driven by Pilot against real node processes on RabbitMQ, with the resident's card a
vpcd virtual card read through pcscd (slot 0) — the image the 交付 screen itself saved.

Each task is completed on screen and then found in the CS's usage log with operator, terminal,
事務種別 and 処理事由. Operators log in with an in-memory operator card (tui.session.KeyCard) and
the emulated sensor; the operator card through PC/SC is issue 5's test. pcscd's vpcd slots are
shared by every suite on the machine, so the card test holds /tmp/juki-pcsc.lock (the ``cards``
fixture of tests/card) while it uses them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from nodes.client import client_for
from tests.card.conftest import Cards, cards, pcscd  # noqa: F401  (fixtures)
from tests.nodes.appliance import Appliance, running_appliance, wait_until
from tests.nodes.sessions import enrol_operator
from tui.app import build_app
from tui.sensor import EmulatedSensor

pytestmark = [pytest.mark.rabbitmq]

MUNI, CS, REGISTRY, PREF = "041009", "cs.041009", "registry.041009", "pref.04"
TERM1, TERM2 = "term.041009.001", "term.041009.002"
KEEP = {"national", "cardmgmt", PREF, CS, REGISTRY, TERM1, TERM2}
JST = timezone(timedelta(hours=9))
SIZE = (110, 32)
PINS = {"kenhojo": "3141", "juki": "2718"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """仙台市's CS and registry, the prefecture, national and 機構; four residents."""
    base = Path(tmp_path_factory.mktemp("tasks_b"))
    with running_appliance(base, residents=4, only=KEEP) as running:
        yield running


def terminal(app: Appliance, operator: str, tasks: tuple[str, ...], term: str = TERM1) -> Any:
    card = enrol_operator(app, term, operator, tasks)
    return build_app(
        app.config,
        term,
        clients=lambda: client_for(app.config, term),
        sensor=EmulatedSensor(seed=1),
        card_reader=card,
        watch_card=False,
    )


async def until(pilot: Any, pred: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = pred()
        if value:
            return value
        if loop.time() > deadline:
            errors = [e.title for e in pilot.app.errors]
            raise AssertionError(
                f"timed out waiting for {what}; screen {type(pilot.app.screen).__name__}, "
                f"errors {errors}"
            )
        await pilot.pause(0.1)


def screen_name(pilot: Any) -> str:
    return type(pilot.app.screen).__name__


async def login(pilot: Any) -> None:
    await until(pilot, lambda: screen_name(pilot) == "LoginScreen", "login screen")
    await pilot.press("enter")
    await until(pilot, lambda: screen_name(pilot) == "MenuScreen", "menu after login")


async def open_task(pilot: Any, task_id: str, reason: str) -> Any:
    """Open a menu entry and answer its 事務種別/処理事由 dialog (the task's own 事務)."""
    pilot.app.open_task(task_id)
    await until(pilot, lambda: screen_name(pilot) == "TaskReasonDialog", "the reason dialog")
    await until(
        pilot,
        lambda: getattr(pilot.app.focused, "id", None) == "reason-text",
        "the 処理事由 field to take the keys",
    )
    await pilot.press(*reason, "enter")
    await until(pilot, lambda: screen_name(pilot) != "TaskReasonDialog", "the task screen")
    screen = pilot.app.screen
    await until(pilot, lambda: screen.task_kind is not None, "the task to start")
    await until(pilot, lambda: not screen.pending, "the first answer")
    return screen


async def dismiss_error(pilot: Any) -> None:
    await until(pilot, lambda: screen_name(pilot) == "ErrorDialog", "the error dialog")
    await pilot.press("enter")
    await until(pilot, lambda: screen_name(pilot) != "ErrorDialog", "the dialog to close")


def set_inputs(screen: Any, **values: str) -> None:
    from textual.widgets import Input

    for wid, value in values.items():
        screen.query_one(f"#{wid.replace('_', '-')}", Input).value = value


def text(screen: Any, wid: str) -> str:
    return str(screen.query_one(wid).render())


def usage(app: Appliance, message_type: str, operator: str) -> list[tuple[Any, ...]]:
    return app.rows(
        CS,
        "SELECT terminal_id, task, reason, target, outcome FROM usage_log "
        "WHERE message_type = ? AND user_id = ? ORDER BY seq",
        (message_type, operator),
    )


def card_state(app: Appliance, serial: str) -> str:
    return str(app.control("cardmgmt", "cardmgmt.card", serial=serial)["state"])


def run(coro: Any) -> None:
    asyncio.run(coro)


def numbered_resident(app: Appliance) -> tuple[str, str, str]:
    """A new resident with a 個人番号 (birth → 個人番号指定 → 送付先 → 機構).

    Returns (住民票コード, 氏名, 生年月日)."""
    code = app.event(MUNI, "birth")["resident_code"]
    wait_until(lambda: app.rows(CS, "SELECT 1 FROM identity WHERE resident_code=?", (code,)), 30)
    app.event(MUNI, "number_request", resident_code=code)
    wait_until(
        lambda: app.rows(
            CS, "SELECT 1 FROM destination WHERE resident_code=? AND sent_at IS NOT NULL", (code,)
        ),
        30,
        "機構's acknowledgement of the 送付先",
    )
    [(name, birth)] = app.rows(
        CS, "SELECT name_kanji, birth_date FROM identity WHERE resident_code=?", (code,)
    )
    return code, name, str(birth)[:10]


# --------------------------------------------------------------------------------------------
# 交付 → card events → 本人確認 with the card through pcscd


@pytest.mark.pcsc
def test_issue_events_and_card_check_through_pcsc(app: Appliance, cards: Cards) -> None:  # noqa: F811
    code, name, birth = numbered_resident(app)

    def applied() -> str | None:
        answer = app.control("cardmgmt", "cardmgmt.apply", resident_code=code)
        return str(answer["serial"]) if answer.get("ok") else None

    serial = wait_until(applied, 30, "the card application at 機構")
    op = "op-b-card"
    term = terminal(app, op, ("カード関連事務",))
    term.cards_dir = cards.image_dir
    issue_reason, event_reason, check_reason = "窓口での交付", "紛失届と取下げ", "窓口での本人確認"

    async def go() -> None:
        from textual.widgets import Select

        async with term.run_test(size=SIZE) as pilot:
            await login(pilot)
            # ---- 交付 with the documents shown; the image is saved and the insert line shown
            screen = await open_task(pilot, "card_events", issue_reason)
            set_inputs(
                screen,
                ev_code=code,
                ev_name=name,
                ev_birth=birth,
                ev_pin_kenhojo=PINS["kenhojo"],
                ev_pin_juki=PINS["juki"],
            )
            await pilot.press("f5")
            await until(pilot, lambda: screen.image_path is not None, "the card image")
            path = screen.image_path
            assert path == cards.image_dir / f"card-{serial}.json" and path.exists()
            assert f"juki card insert {path} --slot 0" in screen.outcome
            await pilot.press("escape")
            # ---- an impossible event is refused naming the card's state; possible ones pass
            screen = await open_task(pilot, "card_events", event_reason)
            set_inputs(screen, ev_code=code, ev_serial=serial)
            select = screen.query_one("#ev-event", Select)
            select.value = "一時停止解除"
            await pilot.press("f5")
            await dismiss_error(pilot)
            assert pilot.app.errors[-1].code == "CS-8"
            assert "交付済のカードに一時停止解除はできません" in screen.outcome
            steps = (
                ("一時停止", "交付済 → 一時停止中", "suspended"),
                ("一時停止解除", "一時停止中 → 一時停止解除済", "released"),
            )
            for event, shown, state in steps:
                select.value = event
                await pilot.press("f5")
                await until(pilot, lambda s=shown: s in screen.outcome, f"{event} accepted")
                # the event travels to 機構 as a notice; the next one is checked against it
                await until(pilot, lambda s=state: card_state(app, serial) == s, f"機構: {state}")
            await pilot.press("escape")
            # ---- the card in the reader: tries left, a wrong PIN, the match, a blocked PIN
            cards.insert(path, 0)
            screen = await open_task(pilot, "card_check", check_reason)
            await until(pilot, lambda: "残り3回" in text(screen, "#tries-juki"), "tries left")

            async def pins(kenhojo: str, juki: str, expect: str) -> None:
                set_inputs(screen, pin_kenhojo=kenhojo, pin_juki=juki)
                await pilot.press("f6")
                await until(pilot, lambda: expect in text(screen, "#card-message"), expect)

            await pins("0000", PINS["juki"], "券面事項入力補助用暗証番号が違います（残り2回）")
            assert "残り2回" in text(screen, "#tries-kenhojo")
            set_inputs(screen, pin_kenhojo=PINS["kenhojo"], pin_juki=PINS["juki"])
            await pilot.press("f6")
            await until(pilot, lambda: screen.view is not None, "the CS's comparison")
            assert screen.view.verdict == "match", screen.view
            assert screen.view.card_state == "released"
            assert "一致" in text(screen, "#card-verdict")
            for left in (2, 1):
                await pins(
                    PINS["kenhojo"], "0000", f"住民基本台帳用暗証番号が違います（残り{left}回）"
                )
            await pins(PINS["kenhojo"], "0000", "住民基本台帳用暗証番号はロックされています")
            await pilot.press("f5")  # a fresh probe says so before anyone types
            await until(pilot, lambda: "ロック中" in text(screen, "#tries-juki"), "blocked probe")
            cards.remove(0)
            await pilot.press("f5")
            await until(
                pilot, lambda: "カードがありません" in text(screen, "#card-message"), "no card"
            )

    run(go())
    issue = usage(app, "cs.op.card.issue", op)
    assert [(r[0], r[1], r[2], r[4]) for r in issue] == [
        (TERM1, "カード関連事務", issue_reason, "ok")
    ]
    # T-16: the card image (個人番号, PINs) was recorded as an output before it was written
    outputs = usage(app, "cs.op.output", op)
    assert [(r[0], r[1], r[4]) for r in outputs] == [(TERM1, "カード関連事務", "ok")]
    events = usage(app, "cs.op.card.event", op)
    assert [(r[0], r[1], r[2], r[4]) for r in events] == [
        (TERM1, "カード関連事務", event_reason, "refused:CS-8"),
        (TERM1, "カード関連事務", event_reason, "ok"),
        (TERM1, "カード関連事務", event_reason, "ok"),
    ]
    checks = usage(app, "cs.op.card.check", op)
    assert [(r[0], r[1], r[2], r[4]) for r in checks] == [
        (TERM1, "カード関連事務", check_reason, "ok")
    ]
    assert code in checks[0][3] and "match" in checks[0][3]


# --------------------------------------------------------------------------------------------
# V-12: proposed on one session, refused to the proposer, approved on another


def test_correction_is_refused_to_its_proposer_and_approved_by_another(app: Appliance) -> None:
    code = app.rows(CS, "SELECT resident_code FROM identity ORDER BY 1")[0][0]
    [(kana,)] = app.rows(CS, "SELECT name_kana FROM identity WHERE resident_code=?", (code,))
    new_kana = kana.replace("\u3000", "") if "\u3000" in kana else kana[:2] + "\u3000" + kana[2:]
    proposer_id, manager_id = "op-b-proposer", "op-b-manager"
    proposer = terminal(app, proposer_id, ("本人確認情報訂正", "本人確認情報管理責任者"))
    manager = terminal(app, manager_id, ("本人確認情報管理責任者",), TERM2)
    found: dict[str, Any] = {}

    async def propose() -> None:
        async with proposer.run_test(size=SIZE) as pilot:
            await login(pilot)
            screen = await open_task(pilot, "correction_propose", "ふりがな誤記の申出")
            set_inputs(screen, corr_code=code)
            await pilot.press("f5")
            await until(pilot, lambda: screen.record is not None, "the current record")
            assert kana in text(screen, "#corr-current")
            set_inputs(screen, corr_value=new_kana, corr_note="申出書による訂正")
            await pilot.press("f6")
            await until(pilot, lambda: screen.proposal is not None, "the proposal")
            pid = found["pid"] = screen.proposal["proposal_id"]
            await pilot.press("escape")
            # the proposer holds the approving task too, and is still refused (V-12)
            screen = await open_task(pilot, "correction_approve", "訂正内容の確認")
            [row] = [i for i, p in enumerate(screen.proposals) if p["proposal_id"] == pid]
            screen.query_one("#corr-table").move_cursor(row=row)
            await pilot.pause()
            assert "あなたが入力した訂正案です" in text(screen, "#corr-current")
            await pilot.press("f7")
            await dismiss_error(pilot)
            assert pilot.app.errors[-1].code == "V-12"
            assert "V-12" in screen.outcome

    async def approve() -> None:
        async with manager.run_test(size=SIZE) as pilot:
            await login(pilot)
            screen = await open_task(pilot, "correction_approve", "訂正内容の確認")
            [row] = [i for i, p in enumerate(screen.proposals) if p["proposal_id"] == found["pid"]]
            screen.query_one("#corr-table").move_cursor(row=row)
            await pilot.pause()
            await pilot.press("f7")
            await until(pilot, lambda: screen.decided is not None, "the approval")
            assert screen.decided["status"] == "approved"
            assert screen.decided["decided_by"] == manager_id
            await until(
                pilot,
                lambda: found["pid"] not in {p["proposal_id"] for p in screen.proposals},
                "the pending list without the approved proposal",
            )

    run(propose())
    assert app.rows(CS, "SELECT name_kana FROM identity WHERE resident_code=?", (code,)) == [
        (kana,)
    ]
    run(approve())
    wait_until(
        lambda: (
            app.rows(CS, "SELECT name_kana FROM identity WHERE resident_code=?", (code,))
            == [(new_kana,)]
        ),
        30,
        "the 職権修正 back through the registry",
    )
    pid = found["pid"]
    proposed = [r for r in usage(app, "cs.op.correction.propose", proposer_id) if pid in r[3]]
    assert [(r[0], r[1], r[2], r[4]) for r in proposed] == [
        (TERM1, "本人確認情報訂正", "ふりがな誤記の申出", "ok")
    ]
    refused = [r for r in usage(app, "cs.op.correction.approve", proposer_id) if pid in r[3]]
    assert [(r[0], r[1], r[2], r[4]) for r in refused] == [
        (TERM1, "本人確認情報管理責任者", "訂正内容の確認", "refused:V-12")
    ]
    approved = [r for r in usage(app, "cs.op.correction.approve", manager_id) if pid in r[3]]
    assert [(r[0], r[1], r[2], r[4]) for r in approved] == [
        (TERM2, "本人確認情報管理責任者", "訂正内容の確認", "ok")
    ]


# --------------------------------------------------------------------------------------------
# 送付先情報通知 and 整合性確認


def test_destination_counts_and_consistency_check_with_resend(app: Appliance) -> None:
    numbered_resident(app)  # one 送付先 received, forwarded and acknowledged today
    app.quiet()
    op = "op-b-checker"
    term = terminal(app, op, ("送付先情報通知", "整合性確認"))
    code = app.rows(CS, "SELECT resident_code FROM identity ORDER BY 1")[1][0]
    today = datetime.now(JST).date().isoformat()
    seen: dict[str, Any] = {}

    def spoil() -> None:
        db = app.base / "var" / "db" / f"{PREF}.db"
        with sqlite3.connect(db, timeout=10) as conn:
            conn.execute(
                "UPDATE prefecture_identity SET name_kanji = '改竄　太郎' WHERE resident_code = ?",
                (code,),
            )

    async def go() -> None:
        from textual.widgets import DataTable

        async with term.run_test(size=SIZE) as pilot:
            await login(pilot)
            screen = await open_task(pilot, "destinations", "日次確認")
            seen["totals"] = dict(screen.totals)
            table = screen.query_one("#dest-table", DataTable)
            seen["today"] = [
                table.get_row_at(i)
                for i in range(table.row_count)
                if table.get_row_at(i)[0] == today
            ]
            await pilot.press("escape")

            screen = await open_task(pilot, "consistency", "年次の整合性確認")

            async def finished() -> dict[str, Any]:
                await until(
                    pilot,
                    lambda: screen.last_run is not None and screen.last_run["state"] != "running",
                    "the check to finish",
                    120,
                )
                return dict(screen.last_run)

            spoil()
            await pilot.press("f5")
            await until(
                pilot,
                lambda: screen.last_run and screen.last_run["state"] == "running",
                "the check to start",
            )
            found = await finished()
            assert found["state"] == "done" and found["report"]["ok"] is False
            table = screen.query_one("#cons-table", DataTable)
            rows = [table.get_row_at(i) for i in range(table.row_count)]
            assert [(r[0], r[1], r[3]) for r in rows] == [(code, "都道府県サーバ", "相違")]
            assert "name_kanji" in rows[0][4]
            await pilot.press("f6")  # re-send on request
            await until(
                pilot,
                lambda: screen.last_run and screen.last_run["run_id"] != found["run_id"],
                "the re-send run",
            )
            resent = await finished()
            assert resent["report"]["repairs"] == 1
            assert "再送付 1件" in text(screen, "#cons-verdict")

    run(go())
    totals = seen["totals"]
    assert totals["received"] >= 1 and totals["forwarded"] >= 1 and totals["acknowledged"] >= 1
    [row] = seen["today"]
    assert int(row[1]) >= 1 and int(row[3]) >= 1  # received and sent today
    wait_until(
        lambda: app.rows(
            PREF,
            "SELECT 1 FROM prefecture_identity WHERE resident_code=? AND name_kanji != ?",
            (code, "改竄　太郎"),
        ),
        30,
        "the re-sent record at the prefecture",
    )
    dest = usage(app, "cs.op.destinations", op)
    assert [(r[0], r[1], r[2], r[4]) for r in dest] == [(TERM1, "送付先情報通知", "日次確認", "ok")]
    starts = usage(app, "cs.op.consistency.start", op)
    begun = [r for r in starts if "開始" in r[3]]
    assert [(r[0], r[1], r[2], r[4]) for r in begun] == [
        (TERM1, "整合性確認", "年次の整合性確認", "ok")
    ] * 2
    assert sum("終了" in r[3] for r in starts) == 2
    polls = usage(app, "cs.op.consistency.status", op)
    assert polls and {(r[0], r[1], r[2]) for r in polls} == {
        (TERM1, "整合性確認", "年次の整合性確認")
    }
