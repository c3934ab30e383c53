"""V-11 under a real race, end to end: a 転居 overtakes a 個人番号 request on its way to national.

National is frozen (SIGSTOP) while a newborn's number request and then a 転居 of the same person
are sent, so national answers the request with the 4情報 it still holds (the old address). The CS
must refuse that answer with V-11 — nothing is assigned on a mismatching answer — and the
registry, seeing a V-11-only refusal, asks again; the second answer matches and the number is
assigned everywhere, once.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nodes.appliance import Appliance, wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

SENDAI = "041009"
NODES = {"registry.041009", "cs.041009", "pref.04", "national"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    appliance = Appliance(Path(tmp_path_factory.mktemp("race")), only=NODES)
    appliance.prepare(residents=10)
    appliance.start()
    try:
        yield appliance
    finally:
        appliance.stop()


def _one(app: Appliance, node: str, sql: str, code: str) -> tuple[object, ...] | None:
    rows = app.rows(node, sql, (code,))
    return rows[0] if rows else None


TABLES = {
    "cs.041009": "identity",
    "pref.04": "prefecture_identity",
    "national": "national_identity",
}


def _column(app: Appliance, node: str, column: str, code: str) -> object:
    row = _one(app, node, f"SELECT {column} FROM {TABLES[node]} WHERE resident_code = ?", code)
    return None if row is None else row[0]


def test_a_move_overtaking_a_number_request_is_refused_by_v11_then_retried(
    app: Appliance,
) -> None:
    code = app.event(SENDAI, "birth")["resident_code"]
    wait_until(lambda: _column(app, "national", "address", code), 30, "the birth at national")
    old_address = _column(app, "cs.041009", "address", code)
    national = app.pid("national")
    os.kill(national, signal.SIGSTOP)
    try:
        app.event(SENDAI, "number_request", resident_code=code)
        app.event(SENDAI, "move_within", resident_code=code)
        # the 転居 has reached the prefecture and left its outbox: it waits at national behind
        # the number request, which national will answer with the old address
        wait_until(
            lambda: (
                _column(app, "pref.04", "address", code) != old_address
                and app.health("pref.04").get("outbox_depth") == 0
            ),
            30,
            "the 転居 queued at national",
        )
    finally:
        os.kill(national, signal.SIGCONT)
    number = wait_until(
        lambda: _column(app, "cs.041009", "individual_number", code),
        60,
        "the number assigned after the retry",
    )
    refusals = [
        r
        for r in app.control("registry.041009", "registry.status", limit=100)["refusals"]
        if r["resident_code"] == code
    ]
    # exactly one refused answer, for V-11 on the address only (national still had the old one)
    assert len(refusals) == 1, refusals
    assert {(v["rule"], v["field"]) for v in refusals[0]["violations"]} == {("V-11", "address")}
    wait_until(
        lambda: _column(app, "national", "individual_number", code) == number, 30, "national"
    )
    new_address = _column(app, "cs.041009", "address", code)
    assert new_address != old_address
    assert _column(app, "national", "address", code) == new_address
