"""カード読取ベンチ (card-read benchmark): a full CS-2 read through pcscd, N times.

One run = connect to the reader, SELECT 券面事項入力補助AP, VERIFY, READ EF 0001 and EF 0002,
SELECT 住基AP, VERIFY, READ the 住民票コード, disconnect — the path pyscard -> pcscd -> vpcd ->
our virtual card process. Prints median / p90 and writes bench/results/card.json.
Goal: median <= 250 ms. Needs pcscd running (``pcscd``) with vsmartcard-vpcd; uses slot 0.

    .venv/bin/python bench/card.py --runs 200
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tui.card import constants as c  # noqa: E402
from tui.card import pcsc, slots  # noqa: E402
from tui.card.image import MyNumberImage, save_image  # noqa: E402
from tui.card.reader import read_my_number_card, read_resident_code  # noqa: E402

GOAL_MS = 250.0


class Counting:
    """Counts APDUs so the figure printed says how much work one read is."""

    def __init__(self, inner: pcsc.PcscTransport) -> None:
        self.inner = inner
        self.count = 0

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        self.count += 1
        return self.inner.transmit(apdu)


def _image() -> MyNumberImage:
    return MyNumberImage(
        serial="000000000000001",
        municipality_code="041009",
        municipality_name="仙台市",
        expires="20341231",
        individual_number="123456789018",
        name="仙台　太郎",
        address="宮城県仙台市青葉区国分町三丁目７番１号",
        birth_date="19800101",
        sex="1",
        resident_code="12345678903",
        pins={c.PinKind.KENHOJO: "1234", c.PinKind.JUKI: "5678"},
    )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--slot", type=int, default=c.SLOT_RESIDENT)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "card.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        image_path = Path(tmp) / "card.json"
        save_image(image_path, _image())
        slots.insert_card(image_path, args.slot, Path(tmp) / "run")
        try:
            pcsc.wait_for_card(args.slot, 10)
            full: list[float] = []
            apdu_only: list[float] = []
            apdus = 0
            for _ in range(args.runs):
                t0 = time.perf_counter()
                with pcsc.PcscTransport(args.slot) as raw:
                    t = Counting(raw)
                    t1 = time.perf_counter()
                    read_my_number_card(t, "1234")
                    read_resident_code(t, "5678")
                    t2 = time.perf_counter()
                apdus = t.count
                full.append((time.perf_counter() - t0) * 1000)
                apdu_only.append((t2 - t1) * 1000)
        finally:
            slots.remove_card(args.slot, Path(tmp) / "run")

    result = {
        "bench": "card_full_read",
        "runs": args.runs,
        "apdus_per_read": apdus,
        "median_ms": round(statistics.median(full), 3),
        "p90_ms": round(_pct(full, 0.9), 3),
        "max_ms": round(max(full), 3),
        "apdus_median_ms": round(statistics.median(apdu_only), 3),
        "goal_median_ms": GOAL_MS,
        "goal_met": statistics.median(full) <= GOAL_MS,
        "python": platform.python_version(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
