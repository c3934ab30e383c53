"""In-memory seams for screen-state snapshots (our own fakes; no library is patched).

`FakeCS` answers the terminal's requests with fixed data so a screenshot depends on nothing but
the code under test; end-to-end behaviour is covered against real nodes in test_terminal_e2e.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from broker.errors import RemoteError
from juki.config import ApplianceConfig, load
from tui.sensor import EmulatedSensor
from tui.session import KeyCard

ROOT = Path(__file__).resolve().parents[2]
JST = timezone(timedelta(hours=9))
NOW = datetime(2026, 11, 27, 10, 30, tzinfo=JST).timestamp()
SEED = bytes(range(32))

ALL_PERMISSIONS = [
    "cs.op.search",
    "cs.op.lookup",
    "cs.op.statistics",
    "cs.op.admin.*",
    "cs.op.audit.*",
]


def at(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2026, 11, day, hour, minute, tzinfo=JST).timestamp()


class FakeCS:
    """Answers like a CS would; ``refuse_login`` / ``refuse`` inject refusals."""

    def __init__(self, *, permissions: list[str] | None = None) -> None:
        self.permissions = permissions if permissions is not None else ALL_PERMISSIONS
        self.refuse_login: tuple[str, str, str] | None = None
        self.refuse: dict[str, str] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @contextmanager
    def client(self) -> Iterator[FakeCS]:
        yield self

    def call(
        self, recipient: str, type: str, body: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        self.calls.append((type, body))
        if type in self.refuse:
            raise RemoteError(self.refuse[type], "refused by the fake", "処理できません")
        handler = getattr(self, "_" + type.replace(".", "_"), None)
        if handler is None:
            return {}
        return handler(body)  # type: ignore[no-any-return]

    def _ping(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"node": "cs.041009", "time": NOW}

    def _cs_op_output(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"recorded": True}

    def _cs_op_login_challenge(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"challenge_id": "c1", "challenge": b"\x01" * 32, "expires_at": NOW + 60}

    def _cs_op_login(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.refuse_login:
            code, title, message = self.refuse_login
            return {"accepted": False, "code": code, "title": title, "message": message}
        return {
            "accepted": True,
            "session": "s" * 32,
            "name": "仙台 太郎",
            "tasks": ["操作者管理", "監査"],
            "permissions": self.permissions,
            "expires_at": NOW + 36000,
            "idle_lock_seconds": 300.0,
        }

    def _cs_op_admin_operators(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "operators": [
                {
                    "operator_id": "op-041009-admin",
                    "name": "操作者管理者（デモ）",
                    "status": "active",
                    "tasks": ["操作者管理"],
                    "card_serial": "904100900000001",
                    "card_registered": True,
                    "enrolled": True,
                    "failures": 0,
                    "locked_until": None,
                },
                {
                    "operator_id": "op-041009-clerk",
                    "name": "窓口担当者（デモ）",
                    "status": "active",
                    "tasks": ["本人確認情報検索", "特例転入"],
                    "card_serial": "904100900000002",
                    "card_registered": True,
                    "enrolled": True,
                    "failures": 2,
                    "locked_until": None,
                },
                {
                    "operator_id": "op-041009-old",
                    "name": "異動済職員",
                    "status": "revoked",
                    "tasks": [],
                    "card_serial": "",
                    "card_registered": False,
                    "enrolled": False,
                    "failures": 0,
                    "locked_until": None,
                },
            ]
        }

    def _cs_op_admin_task_table(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "tasks": [
                {"task": "本人確認情報検索", "permissions": ["cs.op.lookup", "cs.op.search"]},
                {
                    "task": "特例転入",
                    "permissions": ["cs.op.pending_moveouts", "cs.op.tokurei_movein"],
                },
                {"task": "操作者管理", "permissions": ["cs.op.admin.*"]},
                {"task": "監査", "permissions": ["cs.op.audit.*"]},
            ]
        }

    def _cs_op_audit_report(self, body: dict[str, Any]) -> dict[str, Any]:
        assert body["report"] == "failed_logins"
        return {
            "columns": ["日時", "操作者", "端末", "理由"],
            "rows": [
                ["2026-11-26 07:58:12", "op-041009-clerk", "term.041009.001", "bad_biometric"],
                ["2026-11-26 07:58:40", "op-041009-clerk", "term.041009.001", "bad_biometric"],
                ["2026-11-26 22:14:03", "op-041009-admin", "term.041009.002", "bad_card"],
            ],
        }

    def _cs_op_audit_verify(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "rows_checked": 1234,
            "first_bad_seq": None,
            "problem": None,
            "kind": None,
            "head_seq": 1234,
            "head_hash": "ab" * 32,
            "text": "usage log OK: 1234 rows verified, head seq 1234 hash " + "ab" * 8 + "…",
        }

    def _cs_op_audit_usage(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"entries": [], "truncated": False}


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config() -> ApplianceConfig:
    return load(ROOT / "appliance.toml")


def fake_app(cs: FakeCS | None = None, clock: FakeClock | None = None) -> Any:
    from tui.app import build_app

    cs = cs or FakeCS()
    return build_app(
        config(),
        "term.041009.001",
        clients=cs.client,
        clock=clock or FakeClock(),
        sensor=EmulatedSensor(seed=1),
        card_reader=KeyCard("op-041009-admin", SEED),
        watch_card=False,
    )
