"""`juki operator demo`'s two halves: the CS registers the demo trio, the card images carry the
matching private keys, and a login with that card and the emulated person succeeds at the CS's
rules (checked here on the store, without a node)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from nodes.cs_sessions import DEMO_OPERATORS, demo_operator_id, demo_operators
from tests.nodes.appliance import ROOT, write_config
from tui.card.image import load_image
from tui.operator_cards import write_operator_cards


def test_demo_operators_and_their_card_images(tmp_path: Path) -> None:
    from juki.config import load
    from store import operators
    from store.db import open_database

    raw = tomllib.loads((ROOT / "appliance.toml").read_text(encoding="utf-8"))
    raw["appliance"].update(var_dir=str(tmp_path / "var"))
    write_config(tmp_path / "appliance.toml", raw)
    config = load(tmp_path / "appliance.toml")

    enrolled = demo_operators(config, "041009")
    paths = write_operator_cards(config, "041009", enrolled)
    assert [p.name for p in paths] == [
        f"{demo_operator_id('041009', r)}.json" for r, _, _ in DEMO_OPERATORS
    ]
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in paths)

    db = open_database(config.store_url("cs.041009"))
    try:
        for op, path in zip(enrolled, paths, strict=True):
            registered = operators.get_operator(op.operator_id)
            image = load_image(path)
            assert registered is not None and registered.enrolled
            assert registered.card_public_key == image.public_key  # type: ignore[union-attr]
        assert operators.get_operator("op-041009-audit").tasks == ("監査",)  # type: ignore[union-attr]
    finally:
        db.close()
