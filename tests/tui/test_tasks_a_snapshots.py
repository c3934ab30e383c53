"""Snapshots of the issue-6 task screens (search, national, 特例転入, code change, statistics):
fixed size, clock and data from a FakeCS; behaviour on real nodes is in test_tasks_a_e2e.py.

Update with `pytest tests/tui/test_tasks_a_snapshots.py --snapshot-update` after checking the SVGs.
"""

from __future__ import annotations

from typing import Any

from broker.errors import RemoteError
from store.validation import validate_search
from tests.tui.fakes import FakeCS, at, fake_app

SIZE = (120, 40)
TASKS = ["本人確認情報検索", "全国サーバ照会", "特例転入", "住民票コード変更", "統計"]
PERMISSIONS = [
    "cs.op.search",
    "cs.op.lookup",
    "cs.op.number.reveal",
    "cs.op.national_query",
    "cs.op.pending_moveouts",
    "cs.op.tokurei_movein",
    "cs.op.code_candidates",
    "cs.op.code_change",
    "cs.op.statistics",
]


def person(code: str, name: str, kana: str, birth: str, sex: str, address: str) -> dict[str, Any]:
    return {
        "resident_code": code,
        "name_kanji": name,
        "name_gaiji_count": 0,
        "name_kana": kana,
        "name_kana_seion": kana,
        "birth_date": birth,
        "sex": sex,
        "municipality_code": "041009",
        "oaza_code": "0012",
        "postcode": "9800811",
        "address": address,
        "address_gaiji_count": 0,
        "individual_number": "********5678",
        "became_resident_on": "1990-04-01",
        "address_set_on": "2020-04-01",
        "notified_on": "2020-04-03",
        "previous_municipality_code": None,
        "previous_address": None,
        "previous_address_gaiji_count": 0,
        "relationship": "世帯主",
        "change_reason": "転居",
        "change_date": "2020-04-01",
        "change_reason_detail": None,
        "old_resident_code": None,
        "resident_code_since": "2002-08-05",
        "request_number": "REQ-0001",
        "operator_id": "op-041009-clerk",
        "terminal_id": "term.041009.001",
        "sequence": 3,
        "recovery_sequence": None,
        "update_prohibited": False,
        "prospective": False,
        "locked": False,
        "gaiji_flag": False,
        "record_status": "現存",
        "timestamp": "2020-04-01T01:00:00+00:00",
        "former_surname_kanji": None,
        "former_surname_gaiji_count": 0,
        "former_surname_kana": None,
        "former_surname_gaiji_serial": 0,
    }


HANAKO = person(
    "12345678903",
    "仙台 花子",
    "センダイ ハナコ",
    "1985-06-15",
    "2",
    "宮城県仙台市青葉区一番町一丁目1番1号",
)
HANAKO2 = person(
    "23456789014",
    "仙台 花子",
    "センダイ ハナコ",
    "1985-06-15",
    "2",
    "宮城県仙台市泉区泉中央二丁目2番2号",
)


class TaskCS(FakeCS):
    """FakeCS answering the counter tasks with fixed data."""

    def __init__(self) -> None:
        super().__init__(permissions=PERMISSIONS)

    def _cs_op_login(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**super()._cs_op_login(body), "tasks": TASKS}

    def _cs_op_search(self, body: dict[str, Any]) -> dict[str, Any]:
        violations = validate_search({k: v for k, v in body["criteria"].items() if v})
        if violations:
            raise RemoteError(
                violations[0].rule,
                violations[0].message,
                "検索条件が不足しています（氏名と、住所または生年月日が必要です）",
            )
        return {"records": [HANAKO, HANAKO2], "truncated": False}

    def _cs_op_lookup(self, body: dict[str, Any]) -> dict[str, Any]:
        old = {**HANAKO, "change_reason": "出生", "change_date": "1985-06-15", "sequence": 1}
        old2 = {**HANAKO, "change_reason": "個人番号指定", "change_date": "2015-10-05"}
        return {"record": HANAKO, "history": [{"no": 1, "record": old}, {"no": 2, "record": old2}]}

    def _cs_op_national_query(self, body: dict[str, Any]) -> dict[str, Any]:
        provided = {
            k: HANAKO[k]
            for k in (
                "resident_code",
                "name_kanji",
                "name_kana",
                "name_kana_seion",
                "birth_date",
                "sex",
                "address",
                "change_reason",
                "change_date",
                "municipality_code",
                "record_status",
                "sequence",
            )
        }
        # national answers carry the number in clear: the screen must mask it
        return {"records": [{**provided, "individual_number": "123456785678"}], "truncated": False}

    def _cs_op_pending_moveouts(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "pending": [
                {
                    "resident_code": "34567890125",
                    "from_municipality": "042021",
                    "planned_on": "2026-11-30",
                    "received_at": at(25, 14, 5),
                    "name_kanji": "石巻 一郎",
                },
                {
                    "resident_code": "45678901236",
                    "from_municipality": "131016",
                    "planned_on": "2026-12-01",
                    "received_at": at(26, 9, 40),
                    "name_kanji": "千代田 次郎",
                },
            ]
        }

    def _cs_op_code_candidates(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"codes": ["56789012347", "67890123458", "78901234569"]}

    def _cs_op_code_change(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"accepted": True}

    def _cs_op_statistics(self, body: dict[str, Any]) -> dict[str, Any]:
        rows = [
            ("2026-11-24", "出生", 3),
            ("2026-11-24", "転入", 5),
            ("2026-11-25", "転居", 7),
            ("2026-11-25", "転入", 2),
            ("2026-11-26", "死亡", 1),
        ]
        return {"by_day_and_reason": [{"day": d, "reason": r, "count": n} for d, r, n in rows]}


async def _settle(pilot: Any) -> None:
    """Workers done, messages handled, and no blinking cursor (a blink would make the picture
    depend on timing)."""
    from textual.widgets import Input

    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    for screen in pilot.app.screen_stack:
        for field in screen.query(Input):
            field.cursor_blink = False
    await pilot.pause()


async def _wait(pilot: Any, pred: Any, what: str) -> None:
    """Until ``pred()`` (the screen shows the answer), then settle: a picture taken earlier
    would depend on thread timing."""
    for _ in range(200):
        if pred():
            await _settle(pilot)
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _rows(pilot: Any, wid: str) -> int:
    return int(pilot.app.screen.query_one(f"#{wid}").row_count)


async def _open(pilot: Any, task_id: str, reason: str = "窓口での届出") -> None:
    """Log in, open ``task_id`` and answer the 事務種別/処理事由 dialog."""
    from textual.widgets import Input

    await _settle(pilot)
    await pilot.press("enter")
    await _settle(pilot)
    pilot.app.open_task(task_id)
    await _settle(pilot)
    pilot.app.screen.query_one("#reason-text", Input).value = reason
    await pilot.press("enter")
    await _wait(pilot, lambda: getattr(pilot.app.screen, "reason", None) == reason, "the task")


def _fill(pilot: Any, **values: str) -> None:
    from textual.widgets import Input

    for wid, value in values.items():
        pilot.app.screen.query_one(f"#{wid}", Input).value = value


def test_reason_dialog_asks_before_the_task(snap_compare: Any) -> None:
    async def run(pilot: Any) -> None:
        await _settle(pilot)
        await pilot.press("enter")
        await _settle(pilot)
        pilot.app.open_task("search")
        await _settle(pilot)
        await pilot.press("enter")  # nothing typed: both are required
        await _settle(pilot)

    assert snap_compare(fake_app(TaskCS()), terminal_size=SIZE, run_before=run)


def test_search_v7_unmet_is_explained_and_refused(snap_compare: Any) -> None:
    async def run(pilot: Any) -> None:
        await _open(pilot, "search")
        _fill(pilot, **{"s-name_kanji": "仙台 花子"})
        await _settle(pilot)
        await pilot.press("f5")
        await _wait(pilot, lambda: pilot.app.errors, "the refusal")

    assert snap_compare(fake_app(TaskCS()), terminal_size=SIZE, run_before=run)


def test_search_results_and_record_with_history(snap_compare: Any) -> None:
    async def run(pilot: Any) -> None:
        await _open(pilot, "search")
        _fill(pilot, **{"s-name_kanji": "仙台 花子", "s-birth_date": "1985-06-15"})
        await pilot.press("f5")
        await _wait(pilot, lambda: _rows(pilot, "s-results") == 2, "results")
        await pilot.press("enter")  # the first result: lookup with history
        await _wait(pilot, lambda: _rows(pilot, "record-history") == 2, "the record")

    assert snap_compare(fake_app(TaskCS()), terminal_size=SIZE, run_before=run)


def test_national_query_masks_the_number(snap_compare: Any) -> None:
    async def run(pilot: Any) -> None:
        await _open(pilot, "national", "転入者の前住所地での登録確認")
        _fill(pilot, **{"nq-code": "12345678903"})
        await pilot.press("f5")
        await _wait(pilot, lambda: _rows(pilot, "nq-results") == 1, "the answer")

    assert snap_compare(fake_app(TaskCS()), terminal_size=SIZE, run_before=run)


def test_tokurei_pending_list(snap_compare: Any) -> None:
    async def run(pilot: Any) -> None:
        await _open(pilot, "tokurei", "転入届の受付")
        await _wait(pilot, lambda: _rows(pilot, "tk-list") == 2, "the pending list")
        await pilot.press("down")
        _fill(pilot, **{"tk-address": "宮城県仙台市青葉区国分町三丁目7番1号"})
        await _settle(pilot)

    assert snap_compare(fake_app(TaskCS()), terminal_size=SIZE, run_before=run)


def test_code_change_candidates(snap_compare: Any) -> None:
    async def run(pilot: Any) -> None:
        await _open(pilot, "code_change", "本人からの変更請求")
        _fill(pilot, **{"cc-code": "12345678903"})
        await pilot.press("f5")
        await _wait(pilot, lambda: pilot.app.screen.codes and pilot.app.screen.resident, "codes")

    assert snap_compare(fake_app(TaskCS()), terminal_size=SIZE, run_before=run)


def test_code_change_notice(snap_compare: Any) -> None:
    async def run(pilot: Any) -> None:
        await _open(pilot, "code_change", "本人からの変更請求")
        _fill(pilot, **{"cc-code": "12345678903"})
        await pilot.press("f5")
        await _wait(pilot, lambda: pilot.app.screen.codes and pilot.app.screen.resident, "codes")
        await pilot.press("down", "enter")  # the first candidate
        await _wait(pilot, lambda: type(pilot.app.screen).__name__ == "ConfirmChange", "confirm")
        await pilot.press("y")
        await _wait(pilot, lambda: pilot.app.screen.notice is not None, "the notice")

    assert snap_compare(fake_app(TaskCS()), terminal_size=SIZE, run_before=run)


def test_statistics_counts_by_day_and_reason(snap_compare: Any) -> None:
    async def run(pilot: Any) -> None:
        await _open(pilot, "statistics", "月次報告")
        await _wait(pilot, lambda: pilot.app.screen.totals, "the counts")

    assert snap_compare(fake_app(TaskCS()), terminal_size=SIZE, run_before=run)
