"""Import contract: headless code never loads Textual; broker/ and store/ import nothing of ours."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

HEADLESS = [
    "juki.cli",
    "juki.supervisor",
    "juki.ctl",
    "broker.control",
    "broker.routes",
    "nodes.runtime",
    "tui.card.reader",
    "tui.card.virtual",
]


def _modules(package: str) -> list[str]:
    return [
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in sorted((ROOT / package).rglob("*.py"))
        if p.name != "__init__.py"
    ]


def test_headless_modules_never_load_textual() -> None:
    mods = sorted(set(HEADLESS + _modules("broker") + _modules("store") + _modules("nodes")))
    mods += [m for m in _modules("tui/card") if m not in mods]
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k == 'textual' or k.startswith('textual.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "", f"Textual loaded by headless code: {out.stdout}"


def test_juki_node_help_does_not_load_textual() -> None:
    code = (
        "import sys\n"
        "from juki import cli\n"
        "try:\n"
        "    cli.main(['node', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(any(k.startswith('textual') for k in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("package", ["broker", "store"])
def test_foundation_packages_import_nothing_of_ours(package: str) -> None:
    ours = {"broker", "store", "nodes", "tui", "juki"} - {package}
    offenders = []
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ours]
    assert offenders == []


def test_third_party_libraries_stay_in_their_one_module() -> None:
    owners = {
        "pika": {"broker/amqp.py"},
        "zmq": {"broker/control.py"},
        "smartcard": {"tui/card/pcsc.py"},
    }
    found: dict[str, set[str]] = {k: set() for k in owners}
    for package in ("broker", "store", "nodes", "tui", "juki"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                mods = []
                if isinstance(node, ast.Import):
                    mods = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    mods = [node.module.split(".")[0]]
                for m in mods:
                    if m in found:
                        found[m].add(str(path.relative_to(ROOT)))
    for lib, allowed in owners.items():
        assert found[lib] <= allowed, f"{lib} imported outside {allowed}: {found[lib] - allowed}"
