"""個人番号の表示 (how a 個人番号 leaves the CS for an operator's screen): masked by default.

The terminal never needs the full number to identify a person — the 住民票コード does that — so
every operator reply carries it masked, and showing it in clear is its own usage-logged request
(cs.op.number.reveal). Screenshots and unattended screens then never hold it by accident.
"""

from __future__ import annotations

from typing import Any

from store.records import record_to_dict


def mask_number(number: str | None) -> str | None:
    """The last four digits only."""
    return None if number is None else "********" + number[-4:]


def masked(record: Any) -> dict[str, Any]:
    """A record as a dict for an operator's screen, 個人番号 masked."""
    d = record_to_dict(record)
    d["individual_number"] = mask_number(d.get("individual_number"))
    return d
