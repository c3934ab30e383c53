"""デモ (the scripted demo): one resident from 出生 to a card check at the counter, on the running
appliance (``juki up``), each step printed in Japanese and English.

出生 at the existing registry → CS-1 at the CS → 個人番号 from 機構 (番号法8条, V-10/V-11 checked
by the CS) → 送付先情報 (CS-7) forwarded unedited to 機構 → 交付申請 received by 機構 → 交付 at the
counter (identity check against the documents shown; 機構 writes the chip) → the card inserted in
the virtual reader (vpcd) → read through PC/SC with the resident's PINs → the CS compares it with
file (2) field by field → ``match``. At the end the card is taken out of the reader, its image
file deleted and the demo operator logged out; the resident stays (the registry never forgets).

The demo works as an ordinary terminal would: a demo operator (``op-<市町村コード>-demo``, 窓口
tasks only) is registered through the installation path (nodes.cs_sessions.add_operator, which
gives it a fresh card key each run, so only its own earlier demo sessions end), logs in with that
card and the emulated sensor (tui.session.login), and every request is signed and usage-logged
with its 事務種別 and 処理事由. Scripted 異動 and the 交付申請 go through the nodes' control
sockets, as ``juki registry`` does.

This module reaches into tui/ (the PC/SC reader, the virtual card, the terminal's login): the
demo plays the terminal. It imports them lazily so the node daemons never load them.
"""

from __future__ import annotations

import argparse
import fcntl
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.control import ControlUnavailable, control_request
from juki.config import ApplianceConfig

PCSC_LOCK = Path("/tmp/juki-pcsc.lock")
"""vpcd's two slots are shared by the whole machine (tests hold the same lock)."""
DEMO_PINS = {"kenhojo": "1357", "juki": "2468"}
DEMO_TASKS = ("本人確認情報検索", "カード関連事務")
LOOKUP = {"task": "本人確認情報検索", "reason": "デモ: 住民記録の確認"}
CARD = {"task": "カード関連事務", "reason": "デモ: 個人番号カードの交付と本人確認"}


class DemoError(RuntimeError):
    """A step did not happen; the message says which and what to check."""


@dataclass
class DemoResult:
    resident_code: str = ""
    serial: str = ""
    verdict: str = ""
    steps: list[str] = field(default_factory=list)


def _mask(number: str | None) -> str:
    return "（なし / none）" if not number else "********" + number[-4:]


@contextmanager
def _pcsc_slots() -> Iterator[None]:
    with open(PCSC_LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class _Demo:
    def __init__(
        self,
        config: ApplianceConfig,
        municipality: str,
        terminal: str,
        slot: int,
        out: Callable[[str], None],
        timeout: float,
    ) -> None:
        self.config = config
        self.muni = municipality
        self.cs = config.cs_for_municipality(municipality)
        self.registry = next(
            n.id
            for n in config.nodes.values()
            if n.role == "existing_registry" and n.municipality == municipality
        )
        self.cardmgmt = config.single("card_management")
        self.terminal = terminal
        self.slot = slot
        self.out = out
        self.timeout = timeout
        self.result = DemoResult()
        self.session: Any = None
        self.client: Any = None

    # -- output and plumbing -------------------------------------------------------------------

    def step(self, ja: str, en: str, detail: str = "") -> None:
        n = len(self.result.steps) + 1
        self.result.steps.append(en)
        self.out(f"[{n:2d}] {ja} / {en}")
        if detail:
            self.out(f"     {detail}")

    def control(self, node: str, cmd: str, **args: Any) -> dict[str, Any]:
        try:
            answer = control_request(self.config.control_endpoint(node), cmd, timeout=30, **args)
        except ControlUnavailable as exc:
            raise DemoError(f"{node} does not answer ({exc}); is `juki up` running?") from None
        return answer

    def wait(self, what: str, probe: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + self.timeout
        delay = 0.2
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {self.timeout:.0f}s waiting for {what}")
            time.sleep(delay)
            delay = min(1.0, delay * 1.5)

    def call(self, type_: str, body: dict[str, Any], purpose: dict[str, str]) -> dict[str, Any]:
        signed = self.session.sign(type_, {**purpose, **body})
        answer: dict[str, Any] = self.client.call(self.cs, type_, signed)
        return answer

    def settled(self, *nodes: str) -> bool:
        for node in nodes:
            health = self.control(node, "health")
            if health.get("outbox_depth", 1):
                return False
        return True

    def lookup(self, code: str) -> dict[str, Any] | None:
        record: dict[str, Any] | None = self.call("cs.op.lookup", {"resident_code": code}, LOOKUP)[
            "record"
        ]
        return record

    # -- the story -----------------------------------------------------------------------------

    def preflight(self) -> None:
        for node in (self.cs, self.registry, self.cardmgmt):
            status = self.control(node, "status")
            if not status.get("ok"):
                raise DemoError(f"{node} is not healthy: {status}")
        self.step(
            "稼働確認",
            "appliance is up",
            f"{self.cs}, {self.registry}, {self.cardmgmt} answer on their control sockets",
        )

    def login(self) -> None:
        from nodes.cs_sessions import add_operator
        from tui.sensor import EmulatedSensor
        from tui.session import KeyCard, login

        op_id = f"op-{self.muni}-demo"
        enrolled = add_operator(
            self.config,
            self.cs,
            op_id,
            "デモ操作者",
            DEMO_TASKS,
            card_serial=f"8{self.muni}00000001"[:15],
        )
        card = KeyCard(op_id, enrolled.card_seed)
        sensor = EmulatedSensor(enrolled.hand, seed=1)
        self.session = login(lambda to, t, b: self.client.call(to, t, b), self.cs, card, sensor)
        self.step(
            "操作者ログイン",
            "operator logged in (operator card + biometric)",
            f"{op_id} at {self.terminal}, tasks: {', '.join(DEMO_TASKS)}",
        )

    def birth(self) -> str:
        answer = self.control(self.registry, "registry.event", kind="birth")
        if not answer.get("ok"):
            raise DemoError(f"the registry refused the birth: {answer.get('error')}")
        code = str(answer["resident_code"])
        self.result.resident_code = code
        self.step("出生届", "birth registered at the existing registry", f"住民票コード {code}")
        self.wait("the registry's update to leave", lambda: self.settled(self.registry))
        record = self.wait("the birth at the CS", lambda: self.lookup(code))
        self.step(
            "本人確認情報の更新 (CS-1)",
            "the CS checked and stored the update, and notified the prefecture",
            f"{record['name_kanji']}（{record['name_kana']}） {record['birth_date']} "
            f"{record['address']}",
        )
        return code

    def number(self, code: str) -> dict[str, Any]:
        answer = self.control(
            self.registry, "registry.event", kind="number_request", resident_code=code
        )
        if not answer.get("ok"):
            raise DemoError(f"the registry could not ask for a number: {answer.get('error')}")
        self.step("個人番号の生成要求", "number requested from 機構 through the CS")

        def numbered() -> dict[str, Any] | None:
            record = self.lookup(code)
            return record if record and record.get("individual_number") else None

        record = self.wait("the 個人番号 at the CS", numbered)
        self.step(
            "個人番号指定",
            "機構 generated the number; the CS matched it (V-10/V-11) and the registry assigned it",
            f"個人番号 {_mask(record['individual_number'])} (masked on screen)",
        )
        return record

    def apply(self, code: str) -> str:
        def applied() -> str | None:
            answer = self.control(self.cardmgmt, "cardmgmt.apply", resident_code=code)
            return str(answer["serial"]) if answer.get("ok") else None

        serial = self.wait("the 送付先情報 at 機構", applied)
        self.step(
            "送付先情報通知 (CS-7)",
            "the registry's 67-item 送付先 reached 機構 through the CS, unedited",
        )
        self.step("交付申請", "card application received by 機構", f"カード製造番号 {serial}")
        self.result.serial = serial
        return serial

    def issue(self, code: str, serial: str, record: dict[str, Any]) -> dict[str, Any]:
        presented = {"name_kanji": record["name_kanji"], "birth_date": record["birth_date"]}
        issued = self.call(
            "cs.op.card.issue",
            {"resident_code": code, "serial": serial, "pins": DEMO_PINS, "presented": presented},
            CARD,
        )
        self.step(
            "交付 (本人確認のうえ)",
            "card issued at the counter after checking the documents shown",
            f"state {issued['state']}, expires {issued['expires']}",
        )
        return dict(issued["image"])

    def counter_check(self, image: dict[str, Any]) -> str:
        from tui.card import pcsc, reader, slots
        from tui.card.image import image_from_dict, save_image

        run_dir = self.config.var_dir / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="juki-demo-") as tmp, _pcsc_slots():
            path = Path(tmp) / "demo-card.json"
            save_image(path, image_from_dict(image))
            pcsc.wait_for_removal(self.slot, 5)
            slots.insert_card(path, self.slot, run_dir)
            try:
                pcsc.wait_for_card(self.slot, 10)
                self.step(
                    "カード挿入",
                    "virtual card inserted in the reader",
                    f"vpcd slot {self.slot} ({pcsc.resolve_reader(self.slot)})",
                )
                with pcsc.PcscTransport(self.slot) as t:
                    serial = reader.read_card_info(t).serial
                    data = reader.read_my_number_card(t, DEMO_PINS["kenhojo"])
                    code = reader.read_resident_code(t, DEMO_PINS["juki"])
                self.step(
                    "カード読取 (PC/SC, 暗証番号)",
                    "card read through PC/SC with the resident's PINs",
                    f"製造番号 {serial}, 住民票コード {code}, {data.name}, "
                    f"個人番号 {_mask(data.individual_number)}",
                )
                card = {
                    "individual_number": data.individual_number,
                    "name": data.name,
                    "address": data.address,
                    "birth_date": data.birth_date,
                    "sex": data.sex,
                }
                answer = self.call(
                    "cs.op.card.check",
                    {"resident_code": code, "card": card, "serial": serial},
                    CARD,
                )
                fields = ", ".join(f"{f['field']}={f['result']}" for f in answer["fields"])
                self.step(
                    "窓口での本人確認 (CS照合)",
                    f"counter check against file (2): {answer['verdict']}",
                    f"{fields}; card state {answer['card_state']}",
                )
                verdict = str(answer["verdict"])
            finally:
                if slots.remove_card(self.slot, run_dir):
                    pcsc.wait_for_removal(self.slot, 10)
        self.step("後片付け", "card removed from the reader and its image deleted")
        self.result.verdict = verdict
        return verdict

    def logout(self) -> None:
        if self.session is None:
            return
        try:
            self.call("cs.op.logout", {}, {"task": "操作者認証", "reason": "デモ終了"})
        except Exception as exc:  # the session ends at its expiry anyway
            self.out(f"     (logout failed: {exc})")


def run_demo(
    config: ApplianceConfig,
    *,
    municipality: str | None = None,
    terminal: str | None = None,
    slot: int = 0,
    out: Callable[[str], None] = print,
    timeout: float = 60.0,
) -> DemoResult:
    """Walk one new resident from 出生 to a card check at the counter; see the module doc.

    Raises DemoError when a step does not happen within ``timeout`` seconds (or a node is
    down); the card is taken out of the reader whatever happens.
    """
    from nodes.client import client_for

    muni = municipality or next(iter(config.municipalities))
    term = terminal or next(
        (n.id for n in config.nodes.values() if n.role == "terminal" and n.municipality == muni),
        None,
    )
    if term is None:
        raise DemoError(f"no terminal for municipality {muni} in {config.path}")
    demo = _Demo(config, muni, term, slot, out, timeout)
    out(f"住基ネット デモ / Juki-net demo — {config.municipalities[muni].name} ({muni})")
    demo.preflight()
    with client_for(config, term) as client:
        demo.client = client
        demo.login()
        try:
            code = demo.birth()
            record = demo.number(code)
            serial = demo.apply(code)
            image = demo.issue(code, serial, record)
            demo.counter_check(image)
        finally:
            demo.logout()
    ok = demo.result.verdict == "match"
    out("完了 / done: " + ("照合一致 (match)" if ok else f"verdict {demo.result.verdict}"))
    return demo.result


def main(argv: list[str] | None = None) -> int:
    """``python -m juki.demo`` (what ``juki demo`` runs)."""
    from juki.config import load

    parser = argparse.ArgumentParser(prog="juki demo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None)
    parser.add_argument("--municipality", default=None)
    parser.add_argument("--terminal", default=None)
    parser.add_argument("--slot", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    config = load(args.config)
    try:
        result = run_demo(
            config,
            municipality=args.municipality,
            terminal=args.terminal,
            slot=args.slot,
            timeout=args.timeout,
        )
    except DemoError as exc:
        print(f"デモ中断 / demo stopped: {exc}", file=sys.stderr)
        return 1
    return 0 if result.verdict == "match" else 1


if __name__ == "__main__":
    sys.exit(main())
