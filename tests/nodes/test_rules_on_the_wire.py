"""The seed's rules enforced through the real network, not just in the store's functions.

- V-2: 転入 for an existing resident is refused with its rule id and changes nothing anywhere;
- V-3: 転居 that changes a name is refused the same way;
- V-7: a search without 氏名 is refused, and the refusal is in the usage log;
- routes: a terminal of another municipality is refused by the CS (never answered), counted.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from broker.errors import RemoteError, RpcTimeout
from tests.nodes.appliance import Appliance, wait_until
from tests.nodes.sessions import open_test_session

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

OP = {"operator_id": "op-041009-01", "task": "本人確認情報検索", "reason": "窓口での本人確認"}


def _a_resident(app: Appliance) -> tuple[str, tuple[Any, ...]]:
    row = app.rows(
        "cs.041009",
        "SELECT resident_code, name_kanji, name_kana, address, sequence FROM identity "
        "WHERE record_status = '現存' ORDER BY resident_code LIMIT 1",
    )[0]
    return row[0], row


def _snapshot(app: Appliance, code: str) -> list[Any]:
    out = []
    for node, table in (
        ("cs.041009", "identity"),
        ("pref.04", "prefecture_identity"),
        ("national", "national_identity"),
    ):
        out.append(app.rows(node, f"SELECT * FROM {table} WHERE resident_code = ?", (code,)))
        out.append(
            app.rows(node, f"SELECT COUNT(*) FROM {table}_history WHERE resident_code = ?", (code,))
        )
    return out


def _send_update(app: Appliance, update: dict[str, Any]) -> None:
    with app.client("registry.041009") as registry:
        registry.notify("cs.041009", "cs.registry.identity_update", {"update": update})


def _refusal_for(app: Appliance, request_number: str) -> dict[str, Any] | None:
    for r in app.control("registry.041009", "registry.status", limit=100)["refusals"]:
        if r["request_number"] == request_number:
            return r
    return None


@pytest.mark.parametrize(
    ("reason", "extra", "rule"),
    [
        (
            "転入",
            {
                "name_kanji": "重複\u3000太郎",
                "name_kana": "チョウフク\u3000タロウ",
                "birth_date": "1980-01-01",
                "sex": "1",
                "municipality_code": "041009",
                "address": "宮城県仙台市青葉区一番町三丁目1番1号",
                "became_resident_on": "2026-11-01",
                "address_set_on": "2026-11-01",
                "relationship": "世帯主",
                "previous_municipality_code": "131016",
                "previous_address": "東京都千代田区丸の内一丁目1番1号",
            },
            "V-2",
        ),
        (
            "転居",
            {
                "address": "宮城県仙台市若林区荒町1番1号",
                "address_set_on": "2026-11-01",
                "name_kanji": "改名\u3000花子",
            },
            "V-3",
        ),
    ],
)
def test_refused_update_names_its_rule_and_changes_nothing_anywhere(
    appliance: Appliance, reason: str, extra: dict[str, Any], rule: str
) -> None:
    code, row = _a_resident(appliance)
    before = _snapshot(appliance, code)
    reqno = f"TEST-{rule}-{int(time.time() * 1000)}"
    update = {
        "resident_code": code,
        "change_reason": reason,
        "change_date": "2026-11-01",
        "notified_on": "2026-11-01",
        "request_number": reqno,
        "sequence": row[4] + 1000,
        **extra,
    }
    _send_update(appliance, update)
    refusal = wait_until(
        lambda: _refusal_for(appliance, reqno), what="the CS's answer to the registry"
    )
    assert rule in {v["rule"] for v in refusal["violations"]}
    appliance.quiet()
    assert _snapshot(appliance, code) == before


def test_search_without_a_name_is_refused_and_usage_logged(appliance: Appliance) -> None:
    clerk = open_test_session(appliance, "term.041009.001", OP["operator_id"])
    ask = {"task": OP["task"], "reason": OP["reason"]}
    with pytest.raises(RemoteError) as refused:
        clerk.call(
            "cs.op.search",
            {"criteria": {"address": "宮城県仙台市", "birth_date": "1980-01-01"}},
            **ask,
        )
    assert refused.value.code == "V-7"
    found = clerk.call(
        "cs.op.search", {"criteria": {"name_kana": "ア", "address": "宮城県"}}, **ask
    )
    assert isinstance(found["records"], list)
    outcomes = appliance.rows(
        "cs.041009",
        "SELECT outcome, task, reason, terminal_id FROM usage_log "
        "WHERE message_type = 'cs.op.search' ORDER BY seq",
    )
    assert ("refused:V-7", OP["task"], OP["reason"], "term.041009.001") in outcomes
    assert ("ok", OP["task"], OP["reason"], "term.041009.001") in outcomes
    verify = appliance.juki("audit", "verify", "cs.041009")
    assert verify.returncode == 0


def test_terminal_of_another_municipality_is_refused_by_the_route_table(
    appliance: Appliance,
) -> None:
    before = appliance.health("cs.041009")["refusals"].get("route_not_allowed", 0)
    code, _ = _a_resident(appliance)
    with appliance.client("term.131016.001") as foreign, pytest.raises(RpcTimeout):
        foreign.call("cs.041009", "cs.op.lookup", {**OP, "resident_code": code}, timeout=2.0)
    after = appliance.health("cs.041009")["refusals"].get("route_not_allowed", 0)
    assert after == before + 1
    reasons = appliance.rows(
        "cs.041009", "SELECT reason, sender FROM refusal ORDER BY id DESC LIMIT 5"
    )
    assert ("route_not_allowed", "term.131016.001") in reasons
