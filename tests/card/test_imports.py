"""tui/card is headless: no Textual, and each third-party library stays in its one module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CARD = Path(__file__).resolve().parents[2] / "tui" / "card"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_no_card_module_imports_textual_and_libraries_stay_contained() -> None:
    owners = {"smartcard": {"pcsc.py"}, "nacl": {"operator.py"}}
    files = sorted(CARD.glob("*.py"))
    assert len(files) >= 10
    for path in files:
        found = _imports(path)
        assert "textual" not in found, path.name
        for lib, allowed in owners.items():
            if lib in found:
                assert path.name in allowed, f"{path.name} imports {lib}"


def test_importing_every_card_module_loads_no_textual() -> None:
    mods = [f"tui.card.{p.stem}" for p in sorted(CARD.glob("*.py")) if p.stem != "__init__"]
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] == 'textual'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=CARD.parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"
