"""No flow blocks another (issue: flow-level policies), end to end with every node its own process.

An operator's national query (CS → prefecture → national) waits while national does not answer
(the process is frozen with SIGSTOP). Meanwhile a 転居 from the existing registry must still be
applied by the CS and the prefecture: the query waits on worker threads, not on their loops.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from store.codes import individual_number_check_digit
from tests.nodes.appliance import Appliance, wait_until
from tests.nodes.sessions import open_test_session

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

SENDAI = "041009"
NODES = {"registry.041009", "cs.041009", "pref.04", "national", "term.041009.001"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    # a long deadline, so that the query is surely still waiting when the update has gone through
    appliance = Appliance(
        Path(tmp_path_factory.mktemp("flows")), only=NODES, policy={"rpc_timeout_seconds": 40.0}
    )
    appliance.prepare(residents=30)
    appliance.start()
    try:
        yield appliance
    finally:
        appliance.stop()


def _sequence(app: Appliance, node: str, table: str, code: str) -> int:
    return int(
        app.rows(node, f"SELECT sequence FROM {table} WHERE resident_code = ?", (code,))[0][0]
    )


def test_a_query_waiting_for_national_does_not_hold_up_updates(app: Appliance) -> None:
    clerk = open_test_session(app, "term.041009.001", "op-041009-07", tasks=("全国サーバ照会",))
    code = app.rows(
        "cs.041009",
        "SELECT resident_code FROM identity WHERE record_status = '現存' ORDER BY resident_code",
    )[0][0]
    before = _sequence(app, "pref.04", "prefecture_identity", code)
    national = app.pid("national")
    answers: list[Any] = []
    errors: list[BaseException] = []

    def query() -> None:
        try:
            # nobody holds this number: the prefecture finds nothing and asks national
            number = "12345678901" + str(individual_number_check_digit("12345678901"))
            key = {"by": "individual_number", "individual_number": number}
            answers.append(clerk.call("cs.op.national_query", {"key": key}, task="全国サーバ照会"))
        except BaseException as exc:
            errors.append(exc)

    os.kill(national, signal.SIGSTOP)
    caller = threading.Thread(target=query)
    try:
        caller.start()
        # the prefecture has taken the query and is waiting for national
        wait_until(
            lambda: app.health("pref.04").get("onward", 0) >= 1, 20, "prefecture relays the query"
        )
        app.event(SENDAI, "move_within", resident_code=code)
        wait_until(
            lambda: _sequence(app, "pref.04", "prefecture_identity", code) > before,
            20,
            "the 転居 reaches the prefecture while the query waits",
        )
        assert caller.is_alive() and not answers and not errors  # the query is still waiting
    finally:
        os.kill(national, signal.SIGCONT)
    caller.join(60)
    assert not errors, errors
    assert answers == [{"records": [], "truncated": False}]
    wait_until(
        lambda: _sequence(app, "national", "national_identity", code) > before, 30, "national"
    )
