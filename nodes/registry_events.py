"""異動 (changes in the existing registry): pure functions from a person and an event to the new
register entry and the CS-1 update the existing system sends (住基法 flows 1-⑤ and 3-③).

The registry sends only the items an 異動 changes (plus the keys every update carries); the CS
validates them against the person's current record. Each update takes the next 更新順番号 from
the registry's counter, so updates of one person are strictly ordered.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from store.records import ChangeReason

WARDS: dict[str, list[tuple[str, str, str]]] = {
    # municipality → (address prefix, postcode, 大字・字コード) of a few real districts
    "041009": [
        ("宮城県仙台市青葉区国分町二丁目", "9800803", "101"),
        ("宮城県仙台市青葉区一番町三丁目", "9800811", "102"),
        ("宮城県仙台市宮城野区榴岡四丁目", "9830852", "201"),
        ("宮城県仙台市若林区荒町", "9840072", "301"),
        ("宮城県仙台市太白区長町五丁目", "9820011", "401"),
        ("宮城県仙台市泉区泉中央一丁目", "9813133", "501"),
    ],
    "042021": [
        ("宮城県石巻市穀町", "9860824", "101"),
        ("宮城県石巻市中央二丁目", "9860822", "102"),
        ("宮城県石巻市蛇田字新立野", "9860861", "201"),
    ],
    "131016": [
        ("東京都千代田区丸の内一丁目", "1000005", "101"),
        ("東京都千代田区神田神保町二丁目", "1010051", "201"),
        ("東京都千代田区麹町三丁目", "1020083", "301"),
    ],
}

GIVEN = [
    ("太郎", "タロウ", "1"),
    ("花子", "ハナコ", "2"),
    ("翔太", "ショウタ", "1"),
    ("結衣", "ユイ", "2"),
    ("蓮", "レン", "1"),
    ("陽葵", "ヒマリ", "2"),
    ("大翔", "ヒロト", "1"),
    ("さくら", "サクラ", "2"),
]


def random_address(municipality: str, rng: random.Random) -> dict[str, str]:
    prefix, postcode, oaza = rng.choice(WARDS.get(municipality) or WARDS["041009"])
    block = f"{rng.randint(1, 30)}番{rng.randint(1, 25)}号"
    return {"address": prefix + block, "postcode": postcode, "oaza_code": oaza}


@dataclass
class Outgoing:
    """What an event sends: (recipient kind, message type, body); recipient kinds are 'cs'."""

    updates: list[dict[str, Any]] = field(default_factory=list)
    notices: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _base(code: str, reason: ChangeReason, on: date, seq: int, municipality: str) -> dict[str, Any]:
    return {
        "resident_code": code,
        "change_reason": reason.value,
        "change_date": on.isoformat(),
        "request_number": f"R{municipality}-{seq}",
        "sequence": seq,
        "notified_on": on.isoformat(),
    }


def birth(
    code: str,
    municipality: str,
    on: date,
    seq: int,
    rng: random.Random,
    parent: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    given, kana, sex = rng.choice(GIVEN)
    surname, surname_kana = "佐藤", "サトウ"
    if parent is not None:
        surname = parent["name_kanji"].split("\u3000")[0]
        surname_kana = parent["name_kana"].split("\u3000")[0]
    addr = (
        {k: parent[k] for k in ("address", "postcode", "oaza_code")}
        if parent is not None
        else random_address(municipality, rng)
    )
    person = {
        "resident_code": code,
        "name_kanji": f"{surname}\u3000{given}",
        "name_kana": f"{surname_kana}\u3000{kana}",
        "birth_date": on.isoformat(),
        "sex": sex,
        "municipality_code": municipality,
        **addr,
        "became_resident_on": on.isoformat(),
        "address_set_on": on.isoformat(),
        "relationship": "子",
    }
    update = {**_base(code, ChangeReason.BIRTH, on, seq, municipality), **person}
    return person, update


def move_within(
    person: dict[str, Any], on: date, seq: int, rng: random.Random
) -> tuple[dict[str, Any], dict[str, Any]]:
    addr = random_address(person["municipality_code"], rng)
    while addr["address"] == person["address"]:
        addr = random_address(person["municipality_code"], rng)
    new = {**person, **addr, "address_set_on": on.isoformat()}
    update = {
        **_base(
            person["resident_code"], ChangeReason.MOVE_WITHIN, on, seq, person["municipality_code"]
        ),
        **addr,
        "address_set_on": on.isoformat(),
    }
    return new, update


def removal(person: dict[str, Any], reason: ChangeReason, on: date, seq: int) -> dict[str, Any]:
    return _base(person["resident_code"], reason, on, seq, person["municipality_code"])


def move_in(
    record: dict[str, Any],
    municipality: str,
    from_municipality: str | None,
    on: date,
    seq: int,
    rng: random.Random,
    new_address: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """転入 (or 国外転入 when `from_municipality` is None) of a person known elsewhere."""
    addr = random_address(municipality, rng)
    if new_address:
        addr["address"] = new_address
    person = {
        "resident_code": record["resident_code"],
        "name_kanji": record["name_kanji"],
        "name_kana": record["name_kana"],
        "birth_date": record["birth_date"],
        "sex": record["sex"],
        "municipality_code": municipality,
        **addr,
        "became_resident_on": on.isoformat(),
        "address_set_on": on.isoformat(),
        "relationship": record.get("relationship") or "世帯主",
    }
    if record.get("individual_number"):
        person["individual_number"] = record["individual_number"]
    reason = ChangeReason.MOVE_IN if from_municipality else ChangeReason.MOVE_IN_FROM_ABROAD
    update = {**_base(record["resident_code"], reason, on, seq, municipality), **person}
    update["previous_address"] = record.get("address") or "国外"
    if from_municipality:
        update["previous_municipality_code"] = from_municipality
    return person, update


def correction(person: dict[str, Any], on: date, seq: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """職権修正: the kana reading was registered with a space missing or doubled, say."""
    kana = person["name_kana"]
    fixed = kana.replace("\u3000", "") if "\u3000" in kana else kana[:2] + "\u3000" + kana[2:]
    new = {**person, "name_kana": fixed}
    update = {
        **_base(
            person["resident_code"],
            ChangeReason.CORRECTION_BY_AUTHORITY,
            on,
            seq,
            person["municipality_code"],
        ),
        "name_kana": fixed,
        "change_reason_detail": "ふりがな誤記の修正",
    }
    return new, update


def number_assignment(
    person: dict[str, Any], number: str, on: date, seq: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    new = {**person, "individual_number": number}
    update = {
        **_base(
            person["resident_code"],
            ChangeReason.NUMBER_ASSIGNMENT,
            on,
            seq,
            person["municipality_code"],
        ),
        "individual_number": number,
    }
    return new, update


def code_change(
    person: dict[str, Any], new_code: str, on: date, seq: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    old = person["resident_code"]
    new = {**person, "resident_code": new_code}
    update = {
        **_base(new_code, ChangeReason.RESIDENT_CODE_CHANGE, on, seq, person["municipality_code"]),
        "old_resident_code": old,
    }
    return new, update
