"""券面事項 TLV (card-face data objects): build and parse the My Number card's files.

Layouts (cards.md §1.5, §1.7):

* 券面事項入力補助AP EF 0001 — 個人番号::

      FF 10 0C <12 ASCII digits> FF FF

* 券面事項入力補助AP EF 0002 — 基本4情報::

      FF 20 <len>                 len: 1 byte, or 81 xx, or 82 xx xx
        DF 21 08 <4 x uint16 BE>  offsets from the START OF THE FILE of DF22, DF23, DF24, DF25
        DF 22 <len> <UTF-8 氏名>
        DF 23 <len> <UTF-8 住所>
        DF 24 08 <YYYYMMDD 生年月日>
        DF 25 01 <性別 1 digit: 1 男, 2 女, 9 適用不能, 0 不明>

* 住基AP EF 0001 — 住民票コード. **Our convention, not the real card**: no public source says
  where a card keeps the 住民票コード, so the emulator stores it in the same style as EF 0001
  above, readable only after the 住民基本台帳用暗証番号 (key 001C) is verified::

      FF 10 0B <11 ASCII digits> FF FF

Files may carry ``FF`` or ``00`` filler after the object. The parsers check every byte they are
given and raise ``MalformedCardData`` with a reason — never IndexError, UnicodeDecodeError or
ValueError — because the bytes come from a card and a card may be anything. The builders raise
``ValueError`` on bad input: that is a programming error, not a card fault.
"""

from __future__ import annotations

import datetime as dt
import struct
import unicodedata
from dataclasses import dataclass

from . import constants as c
from .errors import MalformedCardData


@dataclass(frozen=True, slots=True)
class Attributes:
    """基本4情報 as the card holds them: birth date as YYYYMMDD, sex as its 1-digit code."""

    name: str
    address: str
    birth_date: str
    sex: str


# --- generic BER-ish pieces ----------------------------------------------------------------------


def encode_length(n: int) -> bytes:
    """Length field in the forms the card uses: 1 byte, ``81 xx`` or ``82 xx xx``."""
    if n < 0 or n > 0xFFFF:
        raise ValueError(f"length {n} out of range")
    if n < 0x80:
        return bytes([n])
    if n <= 0xFF:
        return bytes([0x81, n])
    return bytes([0x82]) + struct.pack(">H", n)


def encode_tlv(tag: int, value: bytes) -> bytes:
    """One data object; ``tag`` is 1 or 2 bytes (DF21, FF20 …)."""
    tag_bytes = tag.to_bytes(2 if tag > 0xFF else 1, "big")
    return tag_bytes + encode_length(len(value)) + value


def read_header(data: bytes, pos: int, what: str) -> tuple[int, int, int]:
    """Parse the tag and length at ``pos``; return (tag, value_start, value_end).

    Checks that the value lies inside ``data``, so callers can slice without fear.
    """
    end = len(data)
    if pos >= end:
        raise MalformedCardData(detail=f"{what}: data ends before the tag")
    tag = data[pos]
    pos += 1
    if tag & 0x1F == 0x1F:  # multi-byte tag; ours have exactly one more byte
        if pos >= end:
            raise MalformedCardData(detail=f"{what}: tag truncated")
        nxt = data[pos]
        pos += 1
        if nxt & 0x80:
            raise MalformedCardData(detail=f"{what}: tag longer than 2 bytes")
        tag = (tag << 8) | nxt
    if pos >= end:
        raise MalformedCardData(detail=f"{what}: length missing")
    first = data[pos]
    pos += 1
    if first < 0x80:
        length = first
    elif first in (0x81, 0x82):
        n = first - 0x80
        if pos + n > end:
            raise MalformedCardData(detail=f"{what}: length truncated")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    else:
        raise MalformedCardData(detail=f"{what}: unsupported length form {first:02X}")
    if pos + length > end:
        raise MalformedCardData(
            detail=f"{what}: value of {length} bytes runs past the {end} bytes read"
        )
    return tag, pos, pos + length


def object_length(head: bytes) -> int:
    """Total size (header + value) of the object starting ``head``, from its first bytes.

    The reader reads ``HEADER_PROBE_LEN`` bytes and asks this how much more there is.
    """
    end = len(head)
    if end < 2:
        raise MalformedCardData(detail="header shorter than 2 bytes")
    pos = 2 if head[0] & 0x1F == 0x1F else 1
    if pos >= end:
        raise MalformedCardData(detail="length missing")
    first = head[pos]
    pos += 1
    if first < 0x80:
        return pos + first
    if first in (0x81, 0x82):
        n = first - 0x80
        if pos + n > end:
            raise MalformedCardData(detail="length truncated")
        return pos + n + int.from_bytes(head[pos : pos + n], "big")
    raise MalformedCardData(detail=f"unsupported length form {first:02X}")


def _check_filler(data: bytes, start: int, what: str) -> None:
    for i in range(start, len(data)):
        if data[i] not in c.FILLER_BYTES:
            raise MalformedCardData(detail=f"{what}: byte {i} after the object is not filler")


def _digits(value: bytes, n: int, what: str) -> str:
    if len(value) != n:
        raise MalformedCardData(detail=f"{what}: {len(value)} bytes, expected {n}")
    if not all(0x30 <= b <= 0x39 for b in value):
        raise MalformedCardData(detail=f"{what}: not all ASCII digits")
    return value.decode("ascii")


# --- number files (EF 0001 of 券面事項入力補助AP, our EF 0001 of 住基AP) -------------------------


def _encode_number(tag: int, digits: str, n: int, what: str) -> bytes:
    if len(digits) != n or not digits.isascii() or not digits.isdigit():
        raise ValueError(f"{what} must be {n} ASCII digits")
    return encode_tlv(tag, digits.encode("ascii")) + b"\xff\xff"


def _parse_number(data: bytes, tag: int, n: int, what: str) -> str:
    got, start, end = read_header(data, 0, what)
    if got != tag:
        raise MalformedCardData(detail=f"{what}: tag {got:X}, expected {tag:X}")
    number = _digits(data[start:end], n, what)
    _check_filler(data, end, what)
    return number


def encode_my_number(number: str) -> bytes:
    """EF 0001 as stored on the card: ``FF 10 0C`` + 12 digits + ``FF FF`` (17 bytes)."""
    return _encode_number(c.TAG_MY_NUMBER, number, c.MY_NUMBER_LEN, "個人番号")


def parse_my_number(data: bytes) -> str:
    """The 12-digit 個人番号 from EF 0001. Check digits are the caller's rule, not layout."""
    return _parse_number(data, c.TAG_MY_NUMBER, c.MY_NUMBER_LEN, "個人番号 EF0001")


def encode_resident_code(code: str) -> bytes:
    """Our 住基AP EF 0001: ``FF 10 0B`` + 11 digits + ``FF FF``."""
    return _encode_number(c.TAG_RESIDENT_CODE, code, c.RESIDENT_CODE_LEN, "住民票コード")


def parse_resident_code(data: bytes) -> str:
    return _parse_number(data, c.TAG_RESIDENT_CODE, c.RESIDENT_CODE_LEN, "住民票コード EF0001")


# --- 基本4情報 (EF 0002) ----------------------------------------------------------------------


def _text_problem(text: str) -> str | None:
    if not text:
        return "empty"
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cs"):
            return f"control or surrogate character U+{ord(ch):04X}"
    return None


def _date_problem(yyyymmdd: str) -> str | None:
    if len(yyyymmdd) != 8 or not yyyymmdd.isascii() or not yyyymmdd.isdigit():
        return "not 8 ASCII digits"
    try:
        dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return "not a calendar date"
    return None


def encode_attributes(attrs: Attributes) -> bytes:
    """EF 0002 object with an offset table matching the real positions (no filler)."""
    for label, text in (("name", attrs.name), ("address", attrs.address)):
        problem = _text_problem(text)
        if problem:
            raise ValueError(f"{label}: {problem}")
    problem = _date_problem(attrs.birth_date)
    if problem:
        raise ValueError(f"birth_date: {problem}")
    if attrs.sex not in c.SEX_CODES:
        raise ValueError(f"sex must be one of {sorted(c.SEX_CODES)}")
    items = [
        encode_tlv(c.TAG_NAME, attrs.name.encode("utf-8")),
        encode_tlv(c.TAG_ADDRESS, attrs.address.encode("utf-8")),
        encode_tlv(c.TAG_BIRTH, attrs.birth_date.encode("ascii")),
        encode_tlv(c.TAG_SEX, attrs.sex.encode("ascii")),
    ]
    table_len = 3 + 8  # DF 21 08 + 4 offsets
    inner_len = table_len + sum(len(i) for i in items)
    header_len = 2 + len(encode_length(inner_len))
    offsets = []
    pos = header_len + table_len
    for item in items:
        offsets.append(pos)
        pos += len(item)
    if pos > c.MAX_EF_SIZE:
        raise ValueError(f"EF 0002 would be {pos} bytes; the card addresses at most 32767")
    table = encode_tlv(c.TAG_OFFSETS, struct.pack(">4H", *offsets))
    return encode_tlv(c.TAG_ATTRIBUTES, table + b"".join(items))


def parse_attributes(data: bytes) -> Attributes:
    """基本4情報 from EF 0002, checking the offset table against the real positions."""
    what = "基本4情報 EF0002"
    tag, start, end = read_header(data, 0, what)
    if tag != c.TAG_ATTRIBUTES:
        raise MalformedCardData(detail=f"{what}: tag {tag:X}, expected FF20")
    _check_filler(data, end, what)
    expected = (c.TAG_OFFSETS, c.TAG_NAME, c.TAG_ADDRESS, c.TAG_BIRTH, c.TAG_SEX)
    inner = data[:end]  # offsets count from the start of the file, so keep the header
    values: list[bytes] = []
    starts: list[int] = []
    pos = start
    for want in expected:
        got, vstart, vend = read_header(inner, pos, what)
        if got != want:
            raise MalformedCardData(detail=f"{what}: tag {got:X} where {want:X} belongs")
        starts.append(pos)
        values.append(inner[vstart:vend])
        pos = vend
    if pos != end:
        raise MalformedCardData(detail=f"{what}: {end - pos} stray bytes inside FF20")
    table, raw_name, raw_address, raw_birth, raw_sex = values
    if len(table) != 8:
        raise MalformedCardData(detail=f"{what}: offset table of {len(table)} bytes, expected 8")
    offsets = list(struct.unpack(">4H", table))
    if offsets != starts[1:]:
        raise MalformedCardData(
            detail=f"{what}: offset table {offsets} disagrees with positions {starts[1:]}"
        )
    try:
        name = raw_name.decode("utf-8")
        address = raw_address.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedCardData(detail=f"{what}: name or address is not UTF-8") from exc
    for label, text in (("氏名", name), ("住所", address)):
        problem = _text_problem(text)
        if problem:
            raise MalformedCardData(detail=f"{what}: {label} {problem}")
    birth = _digits(raw_birth, 8, f"{what} 生年月日")
    problem = _date_problem(birth)
    if problem:
        raise MalformedCardData(detail=f"{what}: 生年月日 {problem}")
    sex = _digits(raw_sex, 1, f"{what} 性別")
    if sex not in c.SEX_CODES:
        raise MalformedCardData(detail=f"{what}: 性別 code {sex} unknown")
    return Attributes(name=name, address=address, birth_date=birth, sex=sex)
