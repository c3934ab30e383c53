"""カードイメージ (card image): the JSON file a virtual card is loaded from and persists to.

A card image is what a real card keeps in its chip: identity data, PINs and their retry
counters. The virtual card rewrites the file on every counter change, atomically (tmp + fsync +
rename), so a PIN blocked in one process stays blocked when the card is "inserted" again. The
file holds PINs and, for operator cards, a private key: it is written with mode 0600.

Schema (``format`` 1; every field required unless marked optional; dates are YYYYMMDD)::

    {
      "format": 1,
      "kind": "mynumber" | "operator",
      "serial": "15 digits",                 カード製造番号 (共通AP EF 0001)
      "municipality_code": "6 digits",       交付市町村 (全国地方公共団体コード, e.g. "041009")
      "municipality_name": "仙台市",
      "expires": "YYYYMMDD",                 有効期限

      -- kind "mynumber" --
      "individual_number": "12 digits",      個人番号
      "name": "...", "address": "...",       氏名, 住所 (UTF-8, 外字 as Unicode/IVS)
      "birth_date": "YYYYMMDD",              生年月日
      "sex": "1" | "2" | "9" | "0",          性別
      "resident_code": "11 digits",          住民票コード
      "pins": {"kenhojo": "4 digits", "juki": "4 digits",
               "signing": "6-16 of A-Z0-9"}  (signing optional)
      "tries_left": {"kenhojo": 0..3, "juki": 0..3, "signing": 0..5}
                                             (optional; missing keys mean "full")
      "raw_files": {"<AID hex>/<EF hex>": "<hex>"}
                                             (optional, fault injection for tests: replaces
                                             the bytes the card serves for that EF)

      -- kind "operator" --
      "operator_id": "1-32 of A-Z a-z 0-9 . _ -",   操作者ID
      "private_key_seed": "base64 of 32 bytes",     Ed25519 seed
      "public_key": "base64 of 32 bytes"            Ed25519 verify key
    }
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from . import constants as c
from .errors import InvalidCardImage
from .tlv import Attributes, encode_attributes

FORMAT_VERSION = 1
_OPERATOR_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")
_RAW_FILE_KEY = re.compile(r"([0-9A-Fa-f]{10,32})/([0-9A-Fa-f]{4})")


@dataclass(slots=True)
class MyNumberImage:
    """A resident's 個人番号カード. ``tries_left`` is mutated by the virtual card."""

    kind: ClassVar[Literal["mynumber"]] = "mynumber"
    serial: str
    municipality_code: str
    municipality_name: str
    expires: str
    individual_number: str = field(repr=False)
    name: str
    address: str
    birth_date: str
    sex: str
    resident_code: str = field(repr=False)
    pins: dict[c.PinKind, str] = field(repr=False)
    tries_left: dict[c.PinKind, int] = field(default_factory=dict)
    #: Fault injection: (AID, EF) -> bytes served instead of the file built from the fields.
    raw_files: dict[tuple[bytes, int], bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for kind in self.pins:
            self.tries_left.setdefault(kind, c.PIN_MAX_TRIES[kind])

    @property
    def attributes(self) -> Attributes:
        return Attributes(self.name, self.address, self.birth_date, self.sex)


@dataclass(slots=True)
class OperatorImage:
    """An 操作者識別カード (ours): an id and an Ed25519 key that answers challenges."""

    kind: ClassVar[Literal["operator"]] = "operator"
    serial: str
    municipality_code: str
    municipality_name: str
    expires: str
    operator_id: str
    private_key_seed: bytes = field(repr=False)
    public_key: bytes


CardImage = MyNumberImage | OperatorImage


def _digits(raw: dict[str, Any], key: str, n: int) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or len(value) != n or not value.isascii() or not value.isdigit():
        raise InvalidCardImage(detail=f"{key} must be a string of {n} digits")
    return value


def _date(raw: dict[str, Any], key: str) -> str:
    value = _digits(raw, key, 8)
    try:
        dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError as exc:
        raise InvalidCardImage(detail=f"{key} is not a calendar date") from exc
    return value


def _text(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidCardImage(detail=f"{key} must be a non-empty string")
    return value


def _key32(raw: dict[str, Any], key: str) -> bytes:
    value = raw.get(key)
    try:
        decoded = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except binascii.Error:
        decoded = b""
    if len(decoded) != 32:
        raise InvalidCardImage(detail=f"{key} must be base64 of 32 bytes")
    return decoded


def image_from_dict(raw: Any) -> CardImage:
    """Validate a decoded JSON document and build the image (InvalidCardImage if wrong)."""
    if not isinstance(raw, dict):
        raise InvalidCardImage(detail="top level must be an object")
    if raw.get("format") != FORMAT_VERSION:
        raise InvalidCardImage(detail=f"format must be {FORMAT_VERSION}")
    common: dict[str, Any] = {
        "serial": _digits(raw, "serial", 15),
        "municipality_code": _digits(raw, "municipality_code", 6),
        "municipality_name": _text(raw, "municipality_name"),
        "expires": _date(raw, "expires"),
    }
    kind = raw.get("kind")
    if kind == "operator":
        op_id = raw.get("operator_id")
        if not isinstance(op_id, str) or not _OPERATOR_ID.fullmatch(op_id):
            raise InvalidCardImage(detail="operator_id must be 1-32 of A-Z a-z 0-9 . _ -")
        return OperatorImage(
            **common,
            operator_id=op_id,
            private_key_seed=_key32(raw, "private_key_seed"),
            public_key=_key32(raw, "public_key"),
        )
    if kind != "mynumber":
        raise InvalidCardImage(detail='kind must be "mynumber" or "operator"')
    pins_raw = raw.get("pins")
    if not isinstance(pins_raw, dict):
        raise InvalidCardImage(detail="pins must be an object")
    pins: dict[c.PinKind, str] = {}
    for name, pin in pins_raw.items():
        try:
            pkind = c.PinKind(name)
        except ValueError as exc:
            raise InvalidCardImage(detail=f"unknown PIN {name!r}") from exc
        if not isinstance(pin, str) or not c.pin_format_ok(pkind, pin):
            raise InvalidCardImage(detail=f"PIN {name} has the wrong format")
        pins[pkind] = pin
    for required in (c.PinKind.KENHOJO, c.PinKind.JUKI):
        if required not in pins:
            raise InvalidCardImage(detail=f"PIN {required} is required")
    tries_raw = raw.get("tries_left", {})
    if not isinstance(tries_raw, dict):
        raise InvalidCardImage(detail="tries_left must be an object")
    tries: dict[c.PinKind, int] = {}
    for name, n in tries_raw.items():
        try:
            pkind = c.PinKind(name)
        except ValueError as exc:
            raise InvalidCardImage(detail=f"unknown counter {name!r}") from exc
        if pkind not in pins:
            raise InvalidCardImage(detail=f"counter {name} without a PIN")
        if type(n) is not int or not 0 <= n <= c.PIN_MAX_TRIES[pkind]:
            raise InvalidCardImage(detail=f"tries_left.{name} must be 0..{c.PIN_MAX_TRIES[pkind]}")
        tries[pkind] = n
    raw_files_in = raw.get("raw_files", {})
    if not isinstance(raw_files_in, dict):
        raise InvalidCardImage(detail="raw_files must be an object")
    raw_files: dict[tuple[bytes, int], bytes] = {}
    for where, hexdata in raw_files_in.items():
        m = _RAW_FILE_KEY.fullmatch(where)
        if not m or not isinstance(hexdata, str):
            raise InvalidCardImage(detail="raw_files keys are AIDHEX/EFHEX, values hex strings")
        try:
            content = bytes.fromhex(hexdata)
        except ValueError as exc:
            raise InvalidCardImage(detail=f"raw_files[{where}] is not hex") from exc
        if len(content) > c.MAX_EF_SIZE:
            raise InvalidCardImage(detail=f"raw_files[{where}] is too long")
        raw_files[(bytes.fromhex(m.group(1)), int(m.group(2), 16))] = content
    sex = raw.get("sex")
    if sex not in c.SEX_CODES:
        raise InvalidCardImage(detail="sex must be one of 0, 1, 2, 9")
    image = MyNumberImage(
        **common,
        individual_number=_digits(raw, "individual_number", c.MY_NUMBER_LEN),
        name=_text(raw, "name"),
        address=_text(raw, "address"),
        birth_date=_date(raw, "birth_date"),
        sex=sex,
        resident_code=_digits(raw, "resident_code", c.RESIDENT_CODE_LEN),
        pins=pins,
        tries_left=tries,
        raw_files=raw_files,
    )
    try:
        encode_attributes(image.attributes)
    except ValueError as exc:
        raise InvalidCardImage(detail=f"4情報 cannot be stored on a card: {exc}") from exc
    return image


def image_to_dict(image: CardImage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "kind": image.kind,
        "serial": image.serial,
        "municipality_code": image.municipality_code,
        "municipality_name": image.municipality_name,
        "expires": image.expires,
    }
    if isinstance(image, OperatorImage):
        out["operator_id"] = image.operator_id
        out["private_key_seed"] = base64.b64encode(image.private_key_seed).decode("ascii")
        out["public_key"] = base64.b64encode(image.public_key).decode("ascii")
        return out
    out.update(
        individual_number=image.individual_number,
        name=image.name,
        address=image.address,
        birth_date=image.birth_date,
        sex=image.sex,
        resident_code=image.resident_code,
        pins={str(k): v for k, v in image.pins.items()},
        tries_left={str(k): v for k, v in image.tries_left.items()},
    )
    if image.raw_files:
        out["raw_files"] = {
            f"{aid.hex().upper()}/{fid:04X}": data.hex()
            for (aid, fid), data in image.raw_files.items()
        }
    return out


def load_image(path: str | os.PathLike[str]) -> CardImage:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidCardImage(detail=f"cannot read {path}: {exc.__class__.__name__}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidCardImage(detail=f"{path} is not JSON (line {exc.lineno})") from exc
    return image_from_dict(raw)


def save_image(path: str | os.PathLike[str], image: CardImage) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half of one."""
    target = Path(path)
    data = json.dumps(image_to_dict(image), ensure_ascii=False, indent=2).encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
