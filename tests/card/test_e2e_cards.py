"""End to end: birth → 個人番号 → 送付先 → 申請 → 交付 → the card at the counter, and after a 転居.

Every node is its own process on the real RabbitMQ (an isolated appliance: own config, keys,
stores and broker names); the card is the image 機構 produced, served by the virtual card through
vpcd and read with tui.card.reader through pcscd; the counter check is the CS's answer to what
the card said. The test plays the terminal (a logged-in operator session) and, for CS-7, the
existing registry's 送付先 extraction (nodes/registry_cards.destination_for).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import msgpack
import pytest

from broker.errors import RemoteError
from nodes.registry_cards import destination_for
from tests.card.conftest import Cards
from tests.nodes.appliance import Appliance, dead_letters, running_appliance
from tests.nodes.sessions import TestSession, open_test_session
from tui.card import reader
from tui.card.image import MyNumberImage, image_from_dict, load_image, save_image
from tui.card.pcsc import PcscTransport

pytestmark = [pytest.mark.rabbitmq, pytest.mark.pcsc, pytest.mark.slow]

MUNI, CS, REGISTRY, TERMINAL = "041009", "cs.041009", "registry.041009", "term.041009.001"
KEEP = {"national", "cardmgmt", "pref.04", CS, REGISTRY, TERMINAL}
PINS = {"kenhojo": "3141", "juki": "2718"}
SLOT = 0
CARD_TASK = {"task": "カード関連事務", "reason": "窓口での本人確認"}


@pytest.fixture(scope="module")
def sendai(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """仙台市's CS and registry, the prefecture, national and 機構: the nodes this story uses."""
    base = Path(tmp_path_factory.mktemp("cards"))
    with running_appliance(base, residents=3, only=KEEP) as running:
        yield running


def wait_for(check: Any, what: str, timeout: float = 30.0) -> Any:
    from tests.nodes.appliance import wait_until

    return wait_until(check, timeout, what)


def cs_row(app: Appliance, code: str) -> tuple[Any, ...] | None:
    rows = app.rows(
        CS,
        "SELECT individual_number, address FROM identity WHERE resident_code = ?",
        (code,),
    )
    return rows[0] if rows else None


def read_card() -> tuple[str, str, reader.CardData]:
    """What the counter's reader gets: serial (共通AP), 住民票コード (住基AP), 券面事項 (補助AP)."""
    with PcscTransport(SLOT) as t:
        serial = reader.read_card_info(t).serial
        data = reader.read_my_number_card(t, PINS["kenhojo"])
        code = reader.read_resident_code(t, PINS["juki"])
    return serial, code, data


def counter_check(clerk: TestSession) -> dict[str, Any]:
    serial, code, data = read_card()
    card = {
        "individual_number": data.individual_number,
        "name": data.name,
        "address": data.address,
        "birth_date": data.birth_date,
        "sex": data.sex,
    }
    body = {"resident_code": code, "card": card, "serial": serial}
    return clerk.call("cs.op.card.check", body, **CARD_TASK)


def fields(answer: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    return {f["field"]: (f["result"], f["previous"]) for f in answer["fields"]}


def test_birth_number_card_counter_check_and_move(sendai: Appliance, cards: Cards) -> None:
    app = sendai
    # ---- birth and 個人番号 (CS-1, 番号法8条)
    code = app.event(MUNI, "birth")["resident_code"]
    wait_for(lambda: cs_row(app, code), "birth at the CS")
    app.event(MUNI, "number_request", resident_code=code)
    number = wait_for(lambda: (cs_row(app, code) or (None,))[0], "個人番号 at the CS")

    clerk = open_test_session(
        app, TERMINAL, "op-041009-card", tasks=("カード関連事務", "本人確認情報検索")
    )
    person = clerk.call("cs.op.lookup", {"resident_code": code})["record"]
    assert person["individual_number"] == "********" + number[-4:]  # masked until revealed
    revealed = clerk.call("cs.op.number.reveal", {"resident_code": code})
    person["individual_number"] = revealed["individual_number"]
    assert person["individual_number"] == number

    # ---- CS-7: the registry's 67 items reach 機構 unedited; the CS marks them sent
    record = destination_for(
        person,
        MUNI,
        municipality_name="仙台市",
        management_number=f"E2E-{code}",
        processed_on=date.today(),
    )
    with app.client(REGISTRY) as registry:
        registry.notify(CS, "cs.registry.destination", {"record": record})
    received = wait_for(
        lambda: app.control("cardmgmt", "cardmgmt.destination", destination_id=f"E2E-{code}")[
            "record"
        ],
        "送付先 at 機構",
    )
    assert msgpack.packb(received) == msgpack.packb(record)
    sent = wait_for(
        lambda: app.rows(
            CS,
            "SELECT received_at, sent_at FROM destination "
            "WHERE management_number = ? AND sent_at IS NOT NULL",
            (f"E2E-{code}",),
        ),
        "sent_at at the CS (機構 acknowledged)",
    )
    assert sent[0][1] >= sent[0][0]

    # ---- 申請 at 機構, 交付 at the counter: the reply carries the chip's contents
    serial = app.control("cardmgmt", "cardmgmt.apply", resident_code=code)["serial"]
    presented = {"name_kanji": person["name_kanji"], "birth_date": person["birth_date"]}
    issued = clerk.call(
        "cs.op.card.issue",
        {"resident_code": code, "serial": serial, "pins": PINS, "presented": presented},
        task="カード関連事務",
        reason="個人番号カードの交付",
    )
    assert issued["serial"] == serial and issued["state"] == "issued"
    image = image_from_dict(issued["image"])
    assert isinstance(image, MyNumberImage)
    path = cards.write(image, "resident.json")

    # ---- the card in the reader, checked against the CS → match
    cards.insert(path, SLOT)
    answer = counter_check(clerk)
    assert answer["verdict"] == "match", answer["fields"]
    assert set(fields(answer).values()) == {("match", False)}
    assert (answer["card_state"], answer["card_usable"]) == ("issued", True)
    old_address = answer["record"]["address"]

    # ---- 転居: the CS has the new address, the card still the old one → stale card
    app.event(MUNI, "move_within", resident_code=code)
    new_address = wait_for(
        lambda: (row := cs_row(app, code)) and row[1] != old_address and row[1],
        "転居 at the CS",
    )
    answer = counter_check(clerk)
    assert answer["verdict"] == "stale_card"
    assert fields(answer)["address"] == ("mismatch", True)
    assert all(v == ("match", False) for f, v in fields(answer).items() if f != "address")
    assert answer["record"]["address"] == new_address

    # ---- CS-7 freshness: the pre-move 送付先 sent again is refused with the rule, not forwarded
    with app.client(REGISTRY) as registry:
        registry.notify(
            CS, "cs.registry.destination", {"record": {**record, "destination_id": "OLD"}}
        )
    refused = wait_for(
        lambda: [d for d in dead_letters(app) if d["type"] == "cs.registry.destination"],
        "the stale 送付先 dead-lettered by the CS",
    )
    assert [(d["reason"], d["node"]) for d in refused] == [("CS-7", CS)]
    assert "address" in refused[0]["detail"]
    assert app.rows(CS, "SELECT 1 FROM destination WHERE management_number = 'OLD'") == []
    assert app.control("cardmgmt", "cardmgmt.destination", destination_id="OLD")["record"] is None

    # ---- 券面記載事項変更 at the counter (the chip's address rewritten) → match again
    cards.remove(SLOT)
    chip = load_image(path)
    assert isinstance(chip, MyNumberImage)
    chip.address = new_address
    save_image(path, chip)
    cards.insert(path, SLOT)
    assert counter_check(clerk)["verdict"] == "match"

    # ---- CS-8: reported lost → suspended at 機構, shown at the counter; impossible events refused
    event = {"serial": serial, "resident_code": code}
    changed = clerk.call("cs.op.card.event", {**event, "event": "一時停止"}, **CARD_TASK)
    assert (changed["checked"], changed["state_before"], changed["state_after"]) == (
        True,
        "issued",
        "suspended",
    )
    wait_for(
        lambda: app.control("cardmgmt", "cardmgmt.card", serial=serial)["state"] == "suspended",
        "一時停止 at 機構",
    )
    answer = counter_check(clerk)
    assert answer["verdict"] == "match"
    assert (answer["card_state"], answer["card_usable"]) == ("suspended", False)
    with pytest.raises(RemoteError) as caught:
        clerk.call("cs.op.card.event", {**event, "event": "交付"}, **CARD_TASK)
    assert caught.value.code == "CS-8" and "suspended" in caught.value.message

    history = app.control("cardmgmt", "cardmgmt.card", serial=serial)["events"]
    assert [(e["event"], e["to"]) for e in history] == [
        ("申請", "applied"),
        ("交付", "issued"),
        ("一時停止", "suspended"),
    ]
