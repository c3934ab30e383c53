"""操作者カードの作成 (writing operator card images): the card half of `juki operator add/demo`.

The CS keeps only the card's public key (nodes.cs_sessions.add_operator); the private key goes
into the card image here and nowhere else. The image is what `juki card insert IMAGE --slot 1`
loads into the virtual card.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from juki.config import ApplianceConfig
from tui.card.image import save_image
from tui.card.operator import new_operator_image

EXPIRES = "20301231"


def write_operator_cards(
    config: ApplianceConfig, municipality: str, enrolled: Iterable[Any]
) -> list[Path]:
    """One image per enrolled operator under ``var/cards/<operator id>.json`` (mode 0600)."""
    muni = config.municipalities[municipality]
    out = []
    for op in enrolled:
        image = new_operator_image(
            op.operator_id,
            serial=op.card_serial,
            municipality_code=muni.code,
            municipality_name=muni.name,
            expires=EXPIRES,
            seed=op.card_seed,
        )
        path = config.var_dir / "cards" / f"{op.operator_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(path, image)
        out.append(path)
    return out
