"""Test data shared across suites: one 本人確認情報 record to vary per test."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from typing import Any

from store.codes import random_resident_code
from store.kana import to_seion
from store.records import ChangeReason, IdentityRecord, Sex, replace


def resident(*, seed: int = 7, **changes: Any) -> IdentityRecord:
    """A current resident of 仙台市 (青葉 花子), with `changes` applied."""
    base = IdentityRecord(
        resident_code=random_resident_code(random.Random(seed)),
        name_kanji="青葉\u3000花子",
        name_kana="アオバ\u3000ハナコ",
        name_kana_seion=to_seion("アオバ\u3000ハナコ"),
        birth_date=date(1990, 4, 1),
        sex=Sex.FEMALE,
        municipality_code="041009",
        postcode="9800803",
        address="宮城県仙台市青葉区国分町二丁目3番4号",
        change_reason=ChangeReason.BIRTH,
        change_date=date(1990, 4, 1),
        sequence=1,
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
    )
    return replace(base, **changes)
