"""Counter-task screens, part B (issue 6), against in-memory seams: the FakeCS answers and the
virtual card's own APDU engine in process (tui.card.virtual.EngineTransport) instead of pcscd.

Behaviour through Pilot (what the screen shows for a wrong PIN, a blocked card, no card, a
refused card event, a V-12 refusal; what it sends), then snapshots of each screen's main
states with a fixed size, clock and data. The real thing — nodes on RabbitMQ and cards through
pcscd — is in test_tasks_b_e2e.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from broker.errors import RemoteError
from tests.tui.fakes import NOW, FakeClock, FakeCS, at, config
from tui.card import constants as c
from tui.card.errors import CardRemoved, NoCard
from tui.card.image import MyNumberImage, image_to_dict, load_image
from tui.card.virtual import CardEngine, EngineTransport
from tui.sensor import EmulatedSensor
from tui.session import KeyCard

SIZE = (110, 32)
PIN_KENHOJO, PIN_JUKI = "4321", "8765"
CODE, NUMBER, SERIAL = "12345678903", "123456789018", "000000000000123"
PERMISSIONS = [
    "cs.op.card.*",
    "cs.op.destinations",
    "cs.op.consistency.*",
    "cs.op.correction.*",
    "cs.op.lookup",
]
RECORD = {
    "resident_code": CODE,
    "name_kanji": "仙台　花子",
    "name_kana": "せんだい　はなこ",
    "birth_date": "1990-04-01",
    "sex": "2",
    "address": "宮城県仙台市青葉区国分町三丁目７番１号",
    "individual_number": NUMBER,
    "municipality_code": "041009",
}


def resident_image(**changes: Any) -> MyNumberImage:
    base = MyNumberImage(
        serial=SERIAL,
        municipality_code="041009",
        municipality_name="仙台市",
        expires="20341231",
        individual_number=NUMBER,
        name="仙台　花子",
        address=RECORD["address"],
        birth_date="19900401",
        sex="2",
        resident_code=CODE,
        pins={c.PinKind.KENHOJO: PIN_KENHOJO, c.PinKind.JUKI: PIN_JUKI},
    )
    return replace(base, **{"tries_left": {}, **changes})


class Reader:
    """The resident's reader: an in-process card engine, or nothing in it."""

    def __init__(self, image: MyNumberImage | None) -> None:
        self.engine = CardEngine(image) if image is not None else None
        self.removed_midway = False

    @contextmanager
    def open(self) -> Iterator[Any]:
        if self.engine is None:
            raise NoCard()
        if self.removed_midway:
            raise CardRemoved()
        self.engine.reset()
        yield EngineTransport(self.engine)


class TasksCS(FakeCS):
    """FakeCS answering the card, 送付先, 整合性確認 and 職権修正 requests."""

    def __init__(self, operator: str = "op-041009-admin") -> None:
        super().__init__(permissions=PERMISSIONS)
        self.operator = operator
        self.verdict = "match"
        self.status_calls = 0
        self.proposals: list[dict[str, Any]] = [
            self._proposal("C01", "op-041009-other", "pending"),
            self._proposal("C02", "op-041009-admin", "pending"),
        ]

    def _proposal(self, pid: str, proposer: str, status: str) -> dict[str, Any]:
        return {
            "proposal_id": pid,
            "resident_code": CODE,
            "changes": {"name_kana": "せんだい　はなこ"},
            "before": {"name_kana": "せんだいはなこ"},
            "note": "ふりがな誤記",
            "status": status,
            "proposer_id": proposer,
            "proposer_terminal": "term.041009.002",
            "proposed_at": at(26, 15),
            "decided_by": None,
            "decided_terminal": None,
            "decided_at": None,
            "decision_note": None,
            "applied": False,
        }

    def _cs_op_card_check(self, body: dict[str, Any]) -> dict[str, Any]:
        card = body["card"]
        fields = [
            {
                "field": f,
                "result": "match" if f != "address" or self.verdict == "match" else "mismatch",
                "previous": f == "address" and self.verdict == "stale_card",
            }
            for f in ("individual_number", "name", "address", "birth_date", "sex")
        ]
        assert card["individual_number"] == NUMBER
        return {
            "verdict": self.verdict,
            "fields": fields,
            "record": RECORD,
            "record_status": "current",
            "card_state": "issued",
            "card_usable": True,
        }

    def _cs_op_card_event(self, body: dict[str, Any]) -> dict[str, Any]:
        if body["event"] == "一時停止解除":
            raise RemoteError(
                "CS-8",
                "一時停止解除 is not possible for a card in state issued",
                "交付済のカードに一時停止解除はできません",
            )
        return {
            "accepted": True,
            "checked": True,
            "state_before": "issued",
            "state_after": "suspended",
        }

    def _cs_op_card_issue(self, body: dict[str, Any]) -> dict[str, Any]:
        image = image_to_dict(resident_image())
        image["pins"] = {"kenhojo": body["pins"]["kenhojo"], "juki": body["pins"]["juki"]}
        return {"serial": SERIAL, "state": "issued", "expires": "2034-12-31", "image": image}

    def _cs_op_destinations(self, body: dict[str, Any]) -> dict[str, Any]:
        day = {"received": 0, "refused": 0, "forwarded": 0, "acknowledged": 0, "purged": 0}
        return {
            "days": [
                {
                    **day,
                    "day": "2026-11-25",
                    "received": 12,
                    "forwarded": 12,
                    "acknowledged": 12,
                    "purged": 12,
                },
                {
                    **day,
                    "day": "2026-11-26",
                    "received": 7,
                    "refused": 1,
                    "forwarded": 6,
                    "acknowledged": 5,
                },
                {**day, "day": "2026-11-27", "received": 3, "forwarded": 3},
            ],
            "awaiting_ack": 4,
            "awaiting_purge": 5,
            "next_purge_due": at(28, 9),
        }

    def _run(self, state: str, done: int, report: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "run_id": "K01",
            "state": state,
            "repair": False,
            "operator_id": self.operator,
            "started_at": NOW - 30,
            "finished_at": None if state == "running" else NOW,
            "done": done,
            "total": 4,
            "description": "全国サーバと照合中" if state == "running" else "",
            "error": None,
            "report": report,
        }

    def _cs_op_consistency_start(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._run("running", 1, None)

    def _cs_op_consistency_status(self, body: dict[str, Any]) -> dict[str, Any]:
        self.status_calls += 1
        if self.status_calls < 3:
            return {"running": True, "run": self._run("running", 1 + self.status_calls, None)}
        report = {
            "ok": False,
            "cs_records": 1234,
            "round_trips": 9,
            "wire_bytes": 20480,
            "full_dump_bytes": 409600,
            "peers": [
                {
                    "node": "pref.04",
                    "tier": "prefecture",
                    "records": 1234,
                    "mismatches": 1,
                    "round_trips": 5,
                    "wire_bytes": 10240,
                },
                {
                    "node": "national",
                    "tier": "national",
                    "records": 1234,
                    "mismatches": 0,
                    "round_trips": 4,
                    "wire_bytes": 10240,
                },
            ],
            "mismatch_count": 1,
            "mismatches": [
                {
                    "resident_code": CODE,
                    "tier": "prefecture",
                    "node": "pref.04",
                    "kind": "differs",
                    "fields": ["name_kanji"],
                }
            ],
            "repairs": 0,
            "text": "",
        }
        return {"running": False, "run": self._run("done", 4, report)}

    def _cs_op_lookup(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"record": RECORD, "history": []}

    def _cs_op_correction_list(self, body: dict[str, Any]) -> dict[str, Any]:
        wanted = body.get("status")
        return {"proposals": [p for p in self.proposals if wanted in (None, p["status"])]}

    def _cs_op_correction_propose(self, body: dict[str, Any]) -> dict[str, Any]:
        p = self._proposal("C03", self.operator, "pending")
        p["changes"] = body["changes"]
        self.proposals.append(p)
        return {"proposal": p}

    def _cs_op_correction_reject(self, body: dict[str, Any]) -> dict[str, Any]:
        p = next(p for p in self.proposals if p["proposal_id"] == body["proposal_id"])
        p["status"] = "rejected"
        p["decided_by"] = self.operator
        p["decision_note"] = body.get("note")
        return {"proposal": p}

    def _cs_op_correction_approve(self, body: dict[str, Any]) -> dict[str, Any]:
        p = next(p for p in self.proposals if p["proposal_id"] == body["proposal_id"])
        if p["proposer_id"] == self.operator:
            raise RemoteError(
                "V-12",
                "the operator who entered a correction may not confirm it",
                "訂正を入力した操作者本人は承認・却下できません（別の操作者が確認します）",
            )
        p["status"] = "approved"
        p["decided_by"] = self.operator
        return {"proposal": p}


def app_for(cs: TasksCS, tmp_path: Path | None = None) -> Any:
    from tui.app import build_app

    cfg = config()
    app = build_app(
        cfg,
        "term.041009.001",
        clients=cs.client,
        clock=FakeClock(),
        sensor=EmulatedSensor(seed=1),
        card_reader=KeyCard(cs.operator, bytes(range(32))),
        watch_card=False,
    )
    if tmp_path is not None:
        app.cards_dir = tmp_path / "cards"
    return app


async def settle(pilot: Any) -> None:
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def open_screen(pilot: Any, screen: Any, reason: str = "窓口での確認") -> Any:
    """Log in, push ``screen``, answer the 事務種別/処理事由 dialog."""
    await settle(pilot)
    await pilot.press("enter")  # login
    await settle(pilot)
    pilot.app.push_screen(screen)
    await settle(pilot)
    assert getattr(pilot.app.focused, "id", None) == "reason-text"
    await pilot.press(*reason)
    await pilot.press("enter")
    await settle(pilot)
    return screen


def calls_of(cs: TasksCS, message_type: str) -> list[dict[str, Any]]:
    return [body for t, body in cs.calls if t == message_type]


def run(coro: Any) -> None:
    asyncio.run(coro)


def text(screen: Any, wid: str) -> str:
    return str(screen.query_one(wid).render())


# --------------------------------------------------------------------------------------------
# 本人確認（カード）


def card_screen(reader: Reader) -> Any:
    from tui.screens.card_check import CardCheckScreen

    return CardCheckScreen(open_card=reader.open)


async def still(pilot: Any) -> None:
    """No focused input before a snapshot: a blinking cursor would make the picture timing-bound."""
    pilot.app.screen.set_focus(None)
    await pilot.pause()


async def type_pins(pilot: Any, kenhojo: str, juki: str) -> None:
    screen = pilot.app.screen
    screen.query_one("#pin-kenhojo").focus()
    await pilot.press(*kenhojo, "enter", *juki, "enter")
    await settle(pilot)


def test_card_check_reads_the_card_and_shows_the_match() -> None:
    cs, reader = TasksCS(), Reader(resident_image())

    async def go() -> None:
        async with app_for(cs).run_test(size=SIZE) as pilot:
            screen = await open_screen(pilot, card_screen(reader))
            assert "残り3回" in text(screen, "#tries-kenhojo")
            assert SERIAL in text(screen, "#card-message")
            await type_pins(pilot, PIN_KENHOJO, PIN_JUKI)
            assert screen.view is not None and screen.view.verdict == "match"
            assert set(screen.view.fields.values()) == {"○ 一致"}
            [body] = calls_of(cs, "cs.op.card.check")
            assert (body["resident_code"], body["serial"]) == (CODE, SERIAL)
            assert body["card"]["name"] == "仙台　花子" and body["task"] == "カード関連事務"
            assert body["reason"] == "窓口での確認"
            shown = str(screen.query_one("#card-compare").get_row_at(0))
            assert NUMBER not in shown and NUMBER[-4:] in shown  # masked

    run(go())


def test_wrong_pin_shows_tries_left_and_a_blocked_pin_stops_the_read() -> None:
    cs, reader = TasksCS(), Reader(resident_image())

    async def go() -> None:
        async with app_for(cs).run_test(size=SIZE) as pilot:
            screen = await open_screen(pilot, card_screen(reader))
            await type_pins(pilot, "0000", PIN_JUKI)
            message = text(screen, "#card-message")
            assert "券面事項入力補助用暗証番号が違います（残り2回）" in message
            assert "残り2回" in text(screen, "#tries-kenhojo")
            await type_pins(pilot, PIN_KENHOJO, "0000")
            assert "住民基本台帳用暗証番号が違います（残り2回）" in text(screen, "#card-message")
            await type_pins(pilot, PIN_KENHOJO, "1111")
            await type_pins(pilot, PIN_KENHOJO, "2222")
            assert "住民基本台帳用暗証番号はロックされています" in text(screen, "#card-message")
            assert "ロック中" in text(screen, "#tries-juki")
            assert calls_of(cs, "cs.op.card.check") == []
            # the card itself now says so to a fresh probe, before anyone types
            await pilot.press("f5")
            await settle(pilot)
            assert "ロックされています" in text(screen, "#card-message")
            assert reader.engine is not None
            assert reader.engine.image.tries_left[c.PinKind.JUKI] == 0
            tries_before = dict(reader.engine.image.tries_left)
            await type_pins(pilot, PIN_KENHOJO, PIN_JUKI)  # not even sent to the card
            assert reader.engine.image.tries_left == tries_before
            assert "ロックされています" in text(screen, "#card-message")

    run(go())


def test_no_card_and_card_removed_are_said_plainly() -> None:
    cs = TasksCS()
    reader = Reader(None)

    async def go() -> None:
        async with app_for(cs).run_test(size=SIZE) as pilot:
            screen = await open_screen(pilot, card_screen(reader))
            assert "カードがありません" in text(screen, "#card-message")
            reader.engine = CardEngine(resident_image())
            await pilot.press("f5")
            await settle(pilot)
            assert "残り3回" in text(screen, "#tries-juki")
            reader.removed_midway = True
            await type_pins(pilot, PIN_KENHOJO, PIN_JUKI)
            assert "カードが取り外されました" in text(screen, "#card-message")

    run(go())


# --------------------------------------------------------------------------------------------
# card events


def events_screen() -> Any:
    from tui.screens.card_events import CardEventsScreen

    return CardEventsScreen()


async def fill(pilot: Any, **values: str) -> None:
    from textual.widgets import Input

    for wid, value in values.items():
        pilot.app.screen.query_one(f"#{wid.replace('_', '-')}", Input).value = value
    await pilot.pause()


def test_issue_saves_the_card_image_and_shows_the_insert_line(tmp_path: Path) -> None:
    cs = TasksCS()

    async def go() -> None:
        async with app_for(cs, tmp_path).run_test(size=SIZE) as pilot:
            screen = await open_screen(pilot, events_screen(), "窓口での交付")
            await fill(
                pilot,
                ev_code=CODE,
                ev_name="仙台　花子",
                ev_birth="1990-04-01",
                ev_pin_kenhojo="1357",
                ev_pin_juki="2468",
            )
            await pilot.press("f5")
            await settle(pilot)
            path = tmp_path / "cards" / f"card-{SERIAL}.json"
            assert screen.image_path == path
            image = load_image(path)
            assert isinstance(image, MyNumberImage) and image.pins[c.PinKind.JUKI] == "2468"
            assert f"juki card insert {path} --slot 0" in screen.outcome
            [body] = calls_of(cs, "cs.op.card.issue")
            assert body["presented"] == {"name_kanji": "仙台　花子", "birth_date": "1990-04-01"}

    run(go())


def test_impossible_card_event_is_refused_with_the_cards_state() -> None:
    cs = TasksCS()

    async def go() -> None:
        from textual.widgets import Select

        async with app_for(cs).run_test(size=SIZE) as pilot:
            screen = await open_screen(pilot, events_screen(), "紛失届の取下げ")
            screen.query_one("#ev-event", Select).value = "一時停止解除"
            await fill(pilot, ev_code=CODE, ev_serial=SERIAL)
            await pilot.press("f5")
            await settle(pilot)
            assert "交付済のカードに一時停止解除はできません" in screen.outcome
            assert type(pilot.app.screen).__name__ == "ErrorDialog"
            assert pilot.app.errors[-1].code == "CS-8"
            await pilot.press("enter")
            screen.query_one("#ev-event", Select).value = "一時停止"
            await pilot.press("f5")
            await settle(pilot)
            assert "交付済 → 一時停止中" in screen.outcome

    run(go())


# --------------------------------------------------------------------------------------------
# corrections: the proposer is refused (V-12) and told so


def test_proposer_cannot_approve_their_own_correction() -> None:
    from tui.screens.corrections import CorrectionApproveScreen

    cs = TasksCS()

    async def go() -> None:
        async with app_for(cs).run_test(size=SIZE) as pilot:
            screen = await open_screen(pilot, CorrectionApproveScreen(), "訂正内容の確認")
            await pilot.press("down")  # C02, entered by this operator
            await settle(pilot)
            assert "あなたが入力した訂正案です" in text(screen, "#corr-current")
            await pilot.press("f7")
            await settle(pilot)
            assert pilot.app.errors[-1].code == "V-12"
            assert "入力した操作者以外" in pilot.app.errors[-1].what
            assert "V-12" in screen.outcome
            await pilot.press("enter")
            await pilot.press("up", "f7")  # C01, someone else's
            await settle(pilot)
            assert "C01 を承認しました" in screen.outcome
            assert [b["proposal_id"] for b in calls_of(cs, "cs.op.correction.approve")] == [
                "C02",
                "C01",
            ]

    run(go())


def test_rejection_carries_the_note_and_leaves_the_pending_list() -> None:
    from tui.screens.corrections import CorrectionApproveScreen

    cs = TasksCS()

    async def go() -> None:
        async with app_for(cs).run_test(size=SIZE) as pilot:
            screen = await open_screen(pilot, CorrectionApproveScreen(), "訂正内容の確認")
            await fill(pilot, corr_note="根拠書類なし")
            screen.query_one("#corr-table").focus()
            await pilot.press("f8")
            await settle(pilot)
            sent = calls_of(cs, "cs.op.correction.reject")
            assert [(b["proposal_id"], b.get("note")) for b in sent] == [("C01", "根拠書類なし")]
            assert "C01 を却下しました" in screen.outcome
            assert [p["proposal_id"] for p in screen.proposals] == ["C02"]

    run(go())


# --------------------------------------------------------------------------------------------
# snapshots


def snap_card_check(cs: TasksCS, verdict: str) -> Callable[[Any], Any]:
    async def run_before(pilot: Any) -> None:
        cs.verdict = verdict
        await open_screen(pilot, card_screen(Reader(resident_image())))
        await type_pins(pilot, PIN_KENHOJO, PIN_JUKI)
        await still(pilot)

    return run_before


@pytest.mark.parametrize("verdict", ["match", "stale_card"])
def test_snapshot_card_check(snap_compare: Any, verdict: str) -> None:
    cs = TasksCS()
    assert snap_compare(app_for(cs), terminal_size=SIZE, run_before=snap_card_check(cs, verdict))


def test_snapshot_card_check_wrong_pin(snap_compare: Any) -> None:
    async def run_before(pilot: Any) -> None:
        await open_screen(pilot, card_screen(Reader(resident_image())))
        await type_pins(pilot, "0000", PIN_JUKI)
        await still(pilot)

    assert snap_compare(app_for(TasksCS()), terminal_size=SIZE, run_before=run_before)


def test_snapshot_card_check_blocked(snap_compare: Any) -> None:
    blocked = resident_image(tries_left={c.PinKind.KENHOJO: 3, c.PinKind.JUKI: 0})

    async def run_before(pilot: Any) -> None:
        await open_screen(pilot, card_screen(Reader(blocked)))
        await still(pilot)

    assert snap_compare(app_for(TasksCS()), terminal_size=SIZE, run_before=run_before)


def test_snapshot_card_issue(snap_compare: Any) -> None:
    async def run_before(pilot: Any) -> None:
        await open_screen(pilot, events_screen(), "窓口での交付")
        await fill(
            pilot,
            ev_code=CODE,
            ev_name="仙台　花子",
            ev_birth="1990-04-01",
            ev_pin_kenhojo="1357",
            ev_pin_juki="2468",
        )
        await pilot.press("f5")
        await settle(pilot)
        await still(pilot)

    # a fixed directory: its path is on screen
    app = app_for(TasksCS(), Path("/tmp/juki-tui-snapshots"))
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_snapshot_destinations(snap_compare: Any) -> None:
    from tui.screens.destinations import DestinationsScreen

    async def run_before(pilot: Any) -> None:
        await open_screen(pilot, DestinationsScreen(), "日次確認")
        await still(pilot)

    assert snap_compare(app_for(TasksCS()), terminal_size=SIZE, run_before=run_before)


def test_snapshot_consistency_mismatch_report(snap_compare: Any) -> None:
    from tui.screens.consistency import ConsistencyScreen

    async def run_before(pilot: Any) -> None:
        screen = await open_screen(pilot, ConsistencyScreen(poll_seconds=0.05), "年次点検")
        for _ in range(40):
            if screen.last_run and screen.last_run["state"] == "done":
                break
            await pilot.pause(0.05)
            await settle(pilot)
        await still(pilot)

    assert snap_compare(app_for(TasksCS()), terminal_size=SIZE, run_before=run_before)


def test_snapshot_correction_proposed(snap_compare: Any) -> None:
    from tui.screens.corrections import CorrectionProposeScreen

    async def run_before(pilot: Any) -> None:
        await open_screen(pilot, CorrectionProposeScreen(), "誤記の申出")
        await fill(pilot, corr_code=CODE)
        await pilot.press("f5")
        await settle(pilot)
        await fill(pilot, corr_value="せんだい　はなこ", corr_note="ふりがな誤記の申出")
        await pilot.press("f6")
        await settle(pilot)
        await still(pilot)

    assert snap_compare(app_for(TasksCS()), terminal_size=SIZE, run_before=run_before)


def test_snapshot_correction_v12_refusal(snap_compare: Any) -> None:
    from tui.screens.corrections import CorrectionApproveScreen

    async def run_before(pilot: Any) -> None:
        await open_screen(pilot, CorrectionApproveScreen(), "訂正内容の確認")
        await pilot.press("down", "f7")
        await settle(pilot)

    assert snap_compare(app_for(TasksCS()), terminal_size=SIZE, run_before=run_before)


def test_snapshot_card_event_refused(snap_compare: Any) -> None:
    async def run_before(pilot: Any) -> None:
        from textual.widgets import Select

        screen = await open_screen(pilot, events_screen(), "紛失届の取下げ")
        screen.query_one("#ev-event", Select).value = "一時停止解除"
        await fill(pilot, ev_code=CODE, ev_serial=SERIAL)
        await pilot.press("f5")
        await settle(pilot)
        await pilot.press("enter")  # the dialog closed: the refusal stays on the screen
        await settle(pilot)
        await still(pilot)

    assert snap_compare(app_for(TasksCS()), terminal_size=SIZE, run_before=run_before)


def test_snapshot_consistency_running(snap_compare: Any) -> None:
    from tui.screens.consistency import ConsistencyScreen

    async def run_before(pilot: Any) -> None:
        screen = await open_screen(pilot, ConsistencyScreen(poll_seconds=3600), "年次点検")
        await pilot.press("f5")
        await settle(pilot)
        assert screen.last_run is not None and screen.last_run["state"] == "running"
        await still(pilot)

    assert snap_compare(app_for(TasksCS()), terminal_size=SIZE, run_before=run_before)
