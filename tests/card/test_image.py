"""カードイメージ: JSON schema validation and atomic persistence."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tui.card import constants as c
from tui.card.errors import InvalidCardImage
from tui.card.image import (
    MyNumberImage,
    OperatorImage,
    image_from_dict,
    image_to_dict,
    load_image,
    save_image,
)

from .conftest import operator_image, resident_image


def test_resident_image_round_trips_through_the_file(tmp_path: Path) -> None:
    img = resident_image(name="髙橋　𠮷太郎", tries_left={c.PinKind.JUKI: 1})
    path = tmp_path / "card.json"
    save_image(path, img)
    loaded = load_image(path)
    assert loaded == img
    assert isinstance(loaded, MyNumberImage)
    assert loaded.tries_left == {c.PinKind.KENHOJO: 3, c.PinKind.JUKI: 1}
    assert "髙橋" in path.read_text(encoding="utf-8")  # stored readable, not \\u-escaped
    assert os.stat(path).st_mode & 0o777 == 0o600  # holds PINs


def test_operator_image_round_trips(tmp_path: Path) -> None:
    img = operator_image()
    save_image(tmp_path / "op.json", img)
    loaded = load_image(tmp_path / "op.json")
    assert isinstance(loaded, OperatorImage)
    assert loaded == img and len(loaded.private_key_seed) == 32


def test_save_replaces_without_leaving_temporaries(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    save_image(path, resident_image())
    save_image(path, resident_image(tries_left={c.PinKind.KENHOJO: 0}))
    assert [p.name for p in tmp_path.iterdir()] == ["card.json"]
    loaded = load_image(path)
    assert isinstance(loaded, MyNumberImage) and loaded.tries_left[c.PinKind.KENHOJO] == 0


def test_repr_hides_secrets() -> None:
    img = resident_image(pins={c.PinKind.KENHOJO: "9173", c.PinKind.JUKI: "2846"})
    op = operator_image()
    text = repr(img) + repr(op)
    for secret in (img.individual_number, img.resident_code, "9173", "2846"):
        assert secret not in text
    assert repr(op.private_key_seed) not in text


def _good() -> dict:
    return image_to_dict(resident_image())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("format", 2),
        ("kind", "jpki"),
        ("individual_number", "12345678901"),
        ("resident_code", "1234567890A"),
        ("birth_date", "19900230"),
        ("expires", "2034-12-31"),
        ("sex", "3"),
        ("name", ""),
        ("pins", {"kenhojo": "12345", "juki": "1234"}),
        ("pins", {"kenhojo": "1234"}),
        ("pins", {"kenhojo": "1234", "juki": "1234", "signing": "abc"}),
        ("tries_left", {"kenhojo": 4}),
        ("tries_left", {"signing": 5}),
        ("tries_left", {"kenhojo": True}),
        ("municipality_code", "04100"),
        ("raw_files", {"D392/0001": "00"}),
    ],
)
def test_invalid_fields_are_refused_with_a_reason(field: str, value: object) -> None:
    raw = _good()
    raw[field] = value
    with pytest.raises(InvalidCardImage) as exc:
        image_from_dict(raw)
    assert exc.value.detail


def test_unreadable_files_are_invalid_images(tmp_path: Path) -> None:
    with pytest.raises(InvalidCardImage):
        load_image(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InvalidCardImage):
        load_image(tmp_path / "bad.json")
    raw = image_to_dict(operator_image())
    raw["private_key_seed"] = "AAAA"
    (tmp_path / "op.json").write_text(json.dumps(raw))
    with pytest.raises(InvalidCardImage):
        load_image(tmp_path / "op.json")


def test_raw_files_survive_the_round_trip(tmp_path: Path) -> None:
    img = resident_image(raw_files={(c.AID_KENHOJO, c.EF_ATTRIBUTES): b"\xff\x20\x00"})
    save_image(tmp_path / "c.json", img)
    loaded = load_image(tmp_path / "c.json")
    assert isinstance(loaded, MyNumberImage)
    assert loaded.raw_files == {(c.AID_KENHOJO, c.EF_ATTRIBUTES): b"\xff\x20\x00"}
