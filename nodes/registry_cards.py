"""送付先情報の作成 (building the 送付先 record): the registry's half of CS-7 (EX-5).

When a person gets a 個人番号 (birth, first entry of a foreign resident …), the existing system
extracts the 67-item 送付先情報 (seed §3.3) so that 機構 can mail the 個人番号通知書 and the
交付申請書, and sends it to the CS (``cs.registry.destination``). The CS forwards it unedited
(V-9), so everything derived — 項目長, 外字数, 外字フラグ, the 代替文字 forms — is computed here,
once, by the system that owns the data.

Choices where the seed gives only item names:

- the addressee is the person at their registered address (one person per mailing, item 33 = 1);
- the municipality's office, the pickup place (交付場所) and the place 機構 ships cards to
  (カード送付場所) come from `OFFICES` (public city-hall addresses for the configured
  municipalities, a synthetic "<name>役所" otherwise);
- 代替文字: every character outside the standard set is replaced by 〓 and its 1-based
  positions listed comma-separated; item 53 says "1" when anything was replaced, else "0";
- item 61 (外字パターン, glyph bitmaps) stays empty: this emulator has no glyph images, and the
  wire's record maps carry scalars only;
- ローマ字 items are sent only when the register holds them (foreign residents).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from store.kana import count_gaiji, is_standard_char
from store.records import DESTINATION_FIELDS, destination_lengths

DESTINATION_TYPE = "cs.registry.destination"
SUBSTITUTE = "〓"


@dataclass(frozen=True, slots=True)
class Office:
    """A municipal office: its postcode, address and phone (the 市町村 items 12-16)."""

    name: str
    postcode: str
    address: str
    phone: str


OFFICES: dict[str, Office] = {
    "041009": Office("仙台市役所", "9808671", "宮城県仙台市青葉区国分町三丁目7番1号", "0222611111"),
    "042021": Office("石巻市役所", "9868501", "宮城県石巻市穀町14番1号", "0225951111"),
    "131016": Office("千代田区役所", "1028688", "東京都千代田区九段南一丁目2番1号", "0332642111"),
}


def office_for(municipality: str, municipality_name: str) -> Office:
    return OFFICES.get(municipality) or Office(
        f"{municipality_name}役所", "0000000", f"{municipality_name}役所", "0000000000"
    )


def _is_selector(ch: str) -> bool:
    cp = ord(ch)
    return 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF


def substitute(text: str | None) -> tuple[str | None, str | None]:
    """(text with each 外字 replaced by 〓, their 1-based positions) — (None, None) when none.

    A character followed by variation selectors (an IVS) counts as one 外字, as in count_gaiji.
    """
    if not text or count_gaiji(text) == 0:
        return None, None
    out: list[str] = []
    positions: list[str] = []
    i = 0
    while i < len(text):
        j = i + 1
        while j < len(text) and _is_selector(text[j]):
            j += 1
        if j > i + 1 or not is_standard_char(text[i]):
            out.append(SUBSTITUTE)
            positions.append(str(len(out)))
        else:
            out.append(text[i])
        i = j
    return "".join(out), ",".join(positions)


def destination_for(
    person: Mapping[str, Any],
    municipality: str,
    *,
    municipality_name: str,
    management_number: str,
    processed_on: date,
    operator_id: str | None = None,
    terminal_id: str | None = None,
    print_category: str = "1",
) -> dict[str, Any]:
    """All 67 items, in seed order, for one person with a 個人番号.

    Args:
        person: the register's record (store.records identity item names, dates as ISO
            strings): resident_code, name_kanji, name_kana, birth_date, sex, address, postcode,
            individual_number, and optionally the former-surname and roman-name items.
        municipality: 市町村コード of the registry; municipality_name its name.
        management_number: 送付先管理番号, unique per record (the registry's sequence serves).
        processed_on: 処理年月日.
        print_category: 印刷区分 ("1" = 個人番号通知書 and 交付申請書, our only kind).

    Raises:
        ValueError: the person has no 個人番号 yet (nothing to notify).
    """
    if not person.get("individual_number"):
        raise ValueError("a 送付先 record is made only once the person has a 個人番号")
    office = office_for(municipality, municipality_name)
    name, address = person["name_kanji"], person["address"]
    sub_name, sub_name_pos = substitute(name)
    sub_address, sub_address_pos = substitute(address)
    former = person.get("former_surname_kanji")
    texts: dict[str, Any] = {
        "destination_address": address,
        "destination_name": name,
        "municipality_name": municipality_name,
        "municipality_address": office.address,
        "pickup_place_name": f"{office.name} 個人番号カード交付窓口",
        "pickup_place_address": office.address,
        "delivery_place_name": office.name,
        "delivery_place_address": office.address,
        "name_kanji": name,
        "name_kana": person["name_kana"],
        "address": address,
        "substitute_name": sub_name,
        "substitute_address": sub_address,
    }
    lengths = destination_lengths(texts)
    gaiji = count_gaiji(name) + count_gaiji(address) + count_gaiji(former)
    values: dict[str, Any] = {
        **texts,
        **lengths,
        "destination_id": management_number,
        "destination_postcode": person.get("postcode"),
        "destination_address_gaiji_count": count_gaiji(address),
        "destination_name_gaiji_count": count_gaiji(name),
        "municipality_code": municipality,
        "municipality_postcode": office.postcode,
        "municipality_address_gaiji_count": count_gaiji(office.address),
        "municipality_phone": office.phone,
        "pickup_place_name_gaiji_count": 0,
        "pickup_place_postcode": office.postcode,
        "pickup_place_address_gaiji_count": count_gaiji(office.address),
        "pickup_place_phone": office.phone,
        "delivery_place_name_gaiji_count": 0,
        "delivery_place_postcode": office.postcode,
        "delivery_place_address_gaiji_count": count_gaiji(office.address),
        "delivery_place_phone": office.phone,
        "persons_count": 1,
        "processed_on": processed_on.isoformat(),
        "operator_id": operator_id,
        "terminal_id": terminal_id,
        "print_category": print_category,
        "resident_code": person["resident_code"],
        "name_gaiji_count": count_gaiji(name),
        "postcode": person.get("postcode"),
        "address_gaiji_count": count_gaiji(address),
        "birth_date": person["birth_date"],
        "sex": person["sex"],
        "individual_number": person["individual_number"],
        "foreign_resident_category": person.get("foreign_resident_category"),
        "residence_expiry_on": person.get("residence_expiry_on"),
        "substitute_conversion_result": "1" if sub_name or sub_address else "0",
        "substitute_name_positions": sub_name_pos,
        "substitute_address_positions": sub_address_pos,
        "gaiji_flag": gaiji > 0,
        "gaiji_pattern": None,
        "former_surname_kanji": former,
        "former_surname_gaiji_count": count_gaiji(former),
        "former_surname_kana": person.get("former_surname_kana"),
        "former_surname_gaiji_serial": int(person.get("former_surname_gaiji_serial") or 0),
        "name_roman": person.get("name_roman"),
        "former_surname_roman": person.get("former_surname_roman"),
    }
    return {name: values[name] for name in DESTINATION_FIELDS}


def notify_destination(
    send: Callable[[str, str, dict[str, Any]], Any],
    cs: str,
    person: Mapping[str, Any],
    municipality: str,
    *,
    municipality_name: str,
    sequence: int,
    on: date,
) -> dict[str, Any]:
    """Build the record and send it to the CS through `send` (the caller's outbox, so the
    notice commits with the number assignment); returns the record sent."""
    record = destination_for(
        person,
        municipality,
        municipality_name=municipality_name,
        management_number=f"D{municipality}-{sequence}",
        processed_on=on,
    )
    send(cs, DESTINATION_TYPE, {"record": record})
    return record


__all__ = [
    "DESTINATION_TYPE",
    "OFFICES",
    "Office",
    "destination_for",
    "notify_destination",
    "substitute",
]
