"""Import contract for the terminal's headless parts: the node side (nodes.cs_sessions, the
session catalogue, store.operators / store.biometric) and the terminal's headless modules never
load Textual; only building the app does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEADLESS = [
    "nodes.cs_sessions",
    "nodes.messages_sessions",
    "store.operators",
    "store.biometric",
    "tui.app",
    "tui.session",
    "tui.sensor",
    "tui.backend",
    "tui.errors",
]


def _textual_loaded(code: str) -> str:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code + "\nimport sys\nprint(any(m.startswith('textual') for m in sys.modules))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def test_headless_session_modules_never_load_textual() -> None:
    assert _textual_loaded("\n".join(f"import {m}" for m in HEADLESS)) == "False"


def test_building_the_app_is_what_loads_textual() -> None:
    code = (
        "from contextlib import nullcontext\n"
        "from juki.config import load\n"
        "from tui.app import build_app\n"
        "build_app(load('appliance.toml'), 'term.041009.001', clients=lambda: nullcontext())"
    )
    assert _textual_loaded(code) == "True"
