"""A short run of bench/fuzz_envelope.py in CI: no crash, no forgery, every check reached."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from broker.errors import Reason

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fuzz_envelope.py"

# The envelope's own reasons, in the order the Opener checks them.
ENVELOPE_REASONS = {
    Reason.MALFORMED, Reason.UNKNOWN_VERSION, Reason.UNKNOWN_SENDER, Reason.NOT_FOR_ME,
    Reason.BAD_SIGNATURE, Reason.EXPIRED, Reason.FROM_FUTURE, Reason.REPLAY,
    Reason.ROUTE_NOT_ALLOWED, Reason.UNDECRYPTABLE, Reason.SCHEMA,
}  # fmt: skip


@pytest.fixture(scope="module")
def fuzz() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_envelope", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_envelope"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [1, 20260926])
def test_short_fuzz_run_finds_no_crash_and_reaches_every_check(fuzz: ModuleType, seed: int) -> None:
    result = fuzz.run(15_000, seed, verbose=False)
    assert result["crashes"] == 0, result["crash_samples"][:3]
    assert result["forgeries"] == 0, result["forgery_samples"][:3]
    # Reaching every reason shows the mutations get past the cheap checks into the deep ones.
    assert {Reason(r) for r in result["refused"]} == ENVELOPE_REASONS
    assert result["refused_total"] + sum(result["accepted"].values()) == 15_000


def test_harness_counts_foreign_exceptions_as_crashes(fuzz: ModuleType) -> None:
    world = fuzz.World()
    real_open = world.opener.open

    class Leaky:
        """An Opener with a deliberate bug: a decoding error escapes untranslated."""

        def open(self, wire: bytes) -> object:
            if len(wire) % 7 == 0:
                raise KeyError("untranslated")
            return real_open(wire)

    world.opener = Leaky()
    result = fuzz.run(500, 3, verbose=False, world=world)
    assert result["crashes"] > 0
    assert "KeyError" in result["crash_samples"][0]["error"]


def test_main_writes_json_and_exits_zero(fuzz: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "fuzz.json"
    assert fuzz.main(["--inputs", "1000", "--seed", "5", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["inputs"] == 1000 and written["crashes"] == 0
