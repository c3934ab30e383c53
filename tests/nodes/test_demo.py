"""``juki demo`` end to end: the scripted story on a running appliance, as its own process, with
the virtual card in vpcd read through pcscd; afterwards the reader is empty again and the demo
operator's requests are in the CS's usage log."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.card.conftest import pcscd  # noqa: F401  (fixture)
from tests.nodes.appliance import ROOT, Appliance, running_appliance
from tui.card import pcsc, slots
from tui.card.errors import CardError

pytestmark = [pytest.mark.rabbitmq, pytest.mark.pcsc, pytest.mark.slow]

MUNI, CS, TERM = "041009", "cs.041009", "term.041009.001"
KEEP = {"national", "cardmgmt", "pref.04", CS, "registry.041009", TERM}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    base = Path(tmp_path_factory.mktemp("demo"))
    with running_appliance(base, residents=2, only=KEEP) as running:
        yield running


def slot_empty(slot: int) -> bool:
    try:
        pcsc.wait_for_removal(slot, 0.5)
    except CardError:
        return False
    return True


def test_demo_walks_a_resident_from_birth_to_a_matching_card_check(
    app: Appliance,
    pcscd: None,  # noqa: F811
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "juki.demo", "--config", str(app.path), "--timeout", "60"],
        cwd=ROOT,
        env=app.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}\n{app.logs()}"
    lines = out.stdout.splitlines()
    steps = [line for line in lines if line.startswith("[")]
    expected = [
        "稼働確認",
        "操作者ログイン",
        "出生届",
        "本人確認情報の更新",
        "個人番号の生成要求",
        "個人番号指定",
        "送付先情報通知",
        "交付申請",
        "交付",
        "カード挿入",
        "カード読取",
        "窓口での本人確認",
        "後片付け",
    ]
    assert [s.split("] ", 1)[1].split(" ")[0] for s in steps] == expected
    assert "counter check against file (2): match" in out.stdout
    assert lines[-1].startswith("完了 / done: 照合一致")

    # the resident exists everywhere, numbered, with an issued card at 機構
    code = next(
        line.split("住民票コード ")[1].split()[0] for line in lines if "住民票コード " in line
    )
    number = app.rows(CS, "SELECT individual_number FROM identity WHERE resident_code=?", (code,))
    assert number and number[0][0]
    assert number[0][0] not in out.stdout + out.stderr  # only ever shown masked
    cards = app.control("cardmgmt", "cardmgmt.cards", resident_code=code)["cards"]
    assert [c["state"] for c in cards] == ["issued"]

    # the reader is empty again and no virtual card process is left behind
    assert slots.inserted_cards(app.config.var_dir / "run") == {}
    assert slot_empty(0)

    # the demo operator worked as a terminal does: signed, usage-logged requests
    rows = app.rows(
        CS,
        "SELECT message_type, terminal_id, task, outcome FROM usage_log "
        "WHERE user_id = ? ORDER BY seq",
        (f"op-{MUNI}-demo",),
    )
    kinds = {r[0] for r in rows if r[3] == "ok"}
    assert {"cs.op.lookup", "cs.op.card.issue", "cs.op.card.check", "cs.op.logout"} <= kinds
    assert {r[1] for r in rows if r[0].startswith("cs.op.card")} == {TERM}
    assert {r[2] for r in rows if r[0].startswith("cs.op.card")} == {"カード関連事務"}
