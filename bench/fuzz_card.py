"""カードファズ (card fuzzing): hostile bytes into the card-data parsers, the status-word map
and the virtual card's APDU engine. A "crash" is any exception other than MalformedCardData
from a parser, anything but None/CardError from the status map, or an engine answer that is
not data + a 2-byte status word.

    .venv/bin/python bench/fuzz_card.py --inputs 1000000 [--seed N]

Writes bench/results/fuzz_card.json; exit status 1 if anything crashed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tui.card import constants as c  # noqa: E402
from tui.card.errors import CardError, MalformedCardData, error_for_status  # noqa: E402
from tui.card.image import MyNumberImage  # noqa: E402
from tui.card.tlv import (  # noqa: E402
    Attributes,
    encode_attributes,
    encode_my_number,
    encode_resident_code,
    object_length,
    parse_attributes,
    parse_my_number,
    parse_resident_code,
)
from tui.card.virtual import CardEngine  # noqa: E402

SEEDS = [
    encode_my_number("123456789018"),
    encode_resident_code("12345678903"),
    encode_attributes(
        Attributes("仙台　花子", "宮城県仙台市青葉区国分町３－７－１", "19900401", "2")
    ),
    encode_attributes(Attributes("髙橋　𠮷太郎" * 20, "東京都" * 50, "20000229", "1")),
]
PARSERS: list[Callable[[bytes], object]] = [
    parse_attributes,
    parse_my_number,
    parse_resident_code,
    object_length,
]
APDU_PREFIXES = [
    bytes.fromhex("00A4040C0A") + c.AID_KENHOJO,
    bytes.fromhex("00A4040C0A") + c.AID_JUKI,
    bytes.fromhex("00A4040C0A") + c.AID_COMMON,
    bytes.fromhex("00A4020C020011"),
    bytes.fromhex("00A4020C020001"),
    bytes.fromhex("00A4020C020002"),
    bytes.fromhex("002000800431323334"),
    bytes.fromhex("00200080"),
    bytes.fromhex("00B00000"),
    bytes.fromhex("00B20104"),
    bytes.fromhex("00880000"),
]


def _image() -> MyNumberImage:
    return MyNumberImage(
        serial="000000000000001",
        municipality_code="041009",
        municipality_name="仙台市",
        expires="20341231",
        individual_number="123456789018",
        name="仙台　花子",
        address="宮城県仙台市",
        birth_date="19900401",
        sex="2",
        resident_code="12345678903",
        pins={c.PinKind.KENHOJO: "1234", c.PinKind.JUKI: "5678"},
    )


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(6)
        i = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(i, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            del buf[i:]
        elif op == 2:
            buf[i:i] = rng.randbytes(rng.randint(1, 4))
        elif op == 3 and buf:
            del buf[min(i, len(buf) - 1)]
        elif op == 4 and len(buf) >= 2:  # nudge a length/offset byte
            j = min(i, len(buf) - 1)
            buf[j] = (buf[j] + rng.choice((-1, 1, 0x80))) & 0xFF
        else:
            buf += bytes([rng.choice((0xFF, 0x00))]) * rng.randint(1, 8)
    return bytes(buf)


def well_formed(rng: random.Random) -> bytes:
    """A syntactically valid short APDU with random fields, so the engine's handlers (not only
    its length check) see hostile P1/P2/data/Le."""
    ins = rng.choice((c.INS_SELECT, c.INS_VERIFY, c.INS_READ_BINARY, c.INS_READ_RECORD, 0x88))
    cla = 0x00 if rng.random() < 0.9 else rng.randrange(256)
    p1, p2 = rng.choice((rng.randrange(256), 0x00, 0x02, 0x04)), rng.randrange(256)
    body = b""
    if rng.random() < 0.6:
        data = rng.randbytes(rng.randint(1, 40))
        body += bytes([len(data)]) + data
    if rng.random() < 0.6:
        body += bytes([rng.randrange(256)])
    return bytes([cla, ins, p1, p2]) + body


def main() -> int:
    parser = argparse.ArgumentParser(description="Fuzz the card parsers, status map and engine.")
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fuzz_card.json")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    kinds: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    crashes: list[dict[str, str]] = []
    engine = CardEngine(_image())
    t0 = time.perf_counter()

    for n in range(args.inputs):
        roll = rng.random()
        try:
            if roll < 0.25:
                kind = "parser/random"
                data = rng.randbytes(rng.choice((rng.randint(0, 8), rng.randint(0, 400))))
                target = rng.choice(PARSERS)
                try:
                    target(data)
                    outcomes["parsed"] += 1
                except MalformedCardData:
                    outcomes["malformed"] += 1
            elif roll < 0.60:
                kind = "parser/mutated"
                data = mutate(rng, rng.choice(SEEDS))
                target = rng.choice(PARSERS)
                try:
                    target(data)
                    outcomes["parsed"] += 1
                except MalformedCardData:
                    outcomes["malformed"] += 1
            elif roll < 0.75:
                kind = "status"
                data = rng.randrange(0x10000).to_bytes(2, "big")
                err = error_for_status(int.from_bytes(data, "big"))
                if err is not None and not isinstance(err, CardError):
                    raise TypeError(f"status map returned {type(err).__name__}")
                if err is not None and not (err.title and err.message):
                    raise ValueError("error without operator text")
            else:
                kind = "engine"
                if n % 5000 == 0:
                    engine = CardEngine(_image())
                pick = rng.random()
                if pick < 0.3:
                    data = rng.choice(APDU_PREFIXES) + rng.randbytes(rng.randint(0, 6))
                elif pick < 0.7:
                    data = well_formed(rng)
                else:
                    data = rng.randbytes(rng.randint(0, 40))
                resp = engine.process(data)
                if not isinstance(resp, bytes) or len(resp) < 2:
                    raise ValueError(f"engine answered {resp!r}")
                outcomes[f"sw {resp[-2]:02X}xx"] += 1
            kinds[kind] += 1
        except Exception as exc:  # everything that is not the documented outcome is a crash
            if len(crashes) < 20:
                crashes.append(
                    {
                        "kind": kind,
                        "input_hex": data.hex(),
                        "error": f"{type(exc).__name__}: {exc}",
                        "trace": traceback.format_exc(limit=3),
                    }
                )
            outcomes["CRASH"] += 1

    elapsed = time.perf_counter() - t0
    result = {
        "bench": "fuzz_card",
        "inputs": args.inputs,
        "seed": seed,
        "crashes": outcomes["CRASH"],
        "seconds": round(elapsed, 2),
        "inputs_per_second": round(args.inputs / elapsed) if elapsed else None,
        "by_kind": dict(kinds),
        "outcomes": dict(sorted(outcomes.items())),
        "first_crashes": crashes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    summary = {k: v for k, v in result.items() if k not in ("first_crashes", "outcomes")}
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    for crash in crashes[:5]:
        print(crash["trace"], file=sys.stderr)
    return 1 if outcomes["CRASH"] else 0


if __name__ == "__main__":
    sys.exit(main())
