"""CS-7 / CS-8 / T-03 handlers, run in process: the CS's and 機構's real handlers (built by their
role modules) exchange bodies through a small stand-in for the wire that enforces what the wire
would — the route table, every body and reply schema — and runs each delivery in one store
transaction. The network itself is tested in tests/card/test_e2e_cards.py.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgpack
import pytest

from broker.crypto import Signer
from broker.envelope import Header, Kind, Message
from broker.errors import RemoteError
from broker.ids import new_message_id
from broker.service import HandlerError
from juki.config import ApplianceConfig, load
from nodes import messages
from nodes.env import NodeEnv
from nodes.registry_cards import destination_for
from nodes.stores import load_role_module
from store import identity, operators
from store.auditlog import UsageLogRow
from store.cards import CardRow, ReceivedDestinationRow
from store.codes import random_resident_code
from store.db import open_database
from store.journal import Outbox
from store.models import DestinationRow
from store.records import ChangeReason, IdentityRecord, RecordStatus, Sex, record_to_dict
from store.retention import purge
from store.schema import init_store
from tests.factories import resident as make_resident

ROOT = Path(__file__).resolve().parents[2]
CS, CARDMGMT, REGISTRY, TERMINAL = "cs.041009", "cardmgmt", "registry.041009", "term.041009.001"
OTHER_CS = "cs.042021"
# Tuesday 2025-04-01 10:00 JST
T0 = datetime(2025, 4, 1, 1, 0, tzinfo=UTC)
OP = {"operator_id": "op-0001", "task": "個人番号カード交付", "reason": "窓口での交付"}
PINS = {"kenhojo": "1357", "juki": "2468", "signing": "ABC123"}


class Wire:
    """In-process delivery between the handlers of several nodes sharing one store."""

    def __init__(self, config: ApplianceConfig, now: list[datetime], db: Any) -> None:
        self.config = config
        self.now = now
        self.db = db
        self.routes = config.route_table()
        self.schemas = messages.registry()
        self.pending: list[tuple[str, str, str, dict[str, Any]]] = []
        self.delivered: list[tuple[str, str, str, dict[str, Any]]] = []
        self.handlers: dict[str, dict[str, Any]] = {}
        for node_id in (CS, OTHER_CS, CARDMGMT):
            role = config.node(node_id).role
            env = NodeEnv(config, node_id, clock=lambda: self.now[0].timestamp())
            env.atomic = db.atomic
            self.handlers[node_id] = load_role_module(role).build(env).handlers

    def _check(self, sender: str, recipient: str, type: str, kind: str, body: Any) -> None:
        assert self.routes.allows(sender, recipient, type, kind), (sender, recipient, type)
        mt = self.schemas.get(type)
        assert mt is not None, type
        if kind == "reply":
            assert mt.reply is not None, type
            mt.reply.validate(body, "reply")
        else:
            assert Kind(kind) in mt.kinds, type
            mt.body.validate(body, "body")

    def _message(self, sender: str, recipient: str, type: str, kind: Kind, body: Any) -> Message:
        ms = int(self.now[0].timestamp() * 1000)
        header = Header(1, new_message_id(), kind, type, sender, recipient, ms, ms + 60_000)
        return Message(header, msgpack.unpackb(msgpack.packb(body), raw=False), b"")

    def _run(self, recipient: str, msg: Message) -> Any:
        handler = self.handlers[recipient][msg.header.type]
        ctx = _Ctx(self, recipient, msg)
        refused: HandlerError | None = None
        with self.db.atomic() as txn:
            try:
                result = handler(msg, ctx)
            except HandlerError as exc:
                if not exc.commit:  # else the refusal's audit rows stay, as in the service
                    txn.rollback()
                refused = exc
        if refused is not None:
            raise refused
        return result

    def notify(self, sender: str, recipient: str, type: str, body: dict[str, Any]) -> None:
        """A notice arriving from outside (the registry, say), processed at once."""
        self._check(sender, recipient, type, "notice", body)
        self.delivered.append((sender, recipient, type, body))
        self._run(recipient, self._message(sender, recipient, type, Kind.NOTICE, body))

    def login(self, operator_id: str = "op-0001", terminal: str = TERMINAL) -> None:
        """An operator with the card task and an open session at `terminal` (what T-01 leaves
        behind), so that operator requests pass the CS's session check."""
        with self.db.atomic():
            operators.ensure_default_tasks()
            operators.register_operator(operator_id, "試験", ["カード関連事務"], now=self.now[0])
            self.signer = Signer.generate()
            card = Signer.generate().verify_key
            self.session = operators.open_session(
                operator_id, terminal, card, self.signer.verify_key, now=self.now[0]
            ).session_id
        self.terminal = terminal

    def operate(self, type: str, body: dict[str, Any]) -> Any:
        """A signed operator request from the terminal, as tui/session.Session.sign makes it."""
        signed = {**body, "session": self.session}
        signed["signature"] = self.signer.sign(operators.command_message(type, signed))
        cs = self.config.cs_for_municipality(self.config.node(self.terminal).municipality or "")
        return self.request(self.terminal, cs, type, signed)

    def request(self, sender: str, recipient: str, type: str, body: dict[str, Any]) -> Any:
        self._check(sender, recipient, type, "request", body)
        try:
            data = self._run(recipient, self._message(sender, recipient, type, Kind.REQUEST, body))
        except HandlerError as exc:
            raise RemoteError(exc.code, exc.message, exc.title) from None
        self._check(recipient, sender, type, "reply", data)
        return data

    def pump(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """Deliver onward notices (and what they cause) until none are left."""
        done = []
        while self.pending:
            sender, recipient, type, body = self.pending.pop(0)
            done.append((sender, recipient, type, body))
            self.notify(sender, recipient, type, body)
        return done


class _Ctx:
    def __init__(self, wire: Wire, node_id: str, message: Message) -> None:
        self.wire, self.node_id, self.message = wire, node_id, message

    def now(self) -> float:
        return self.wire.now[0].timestamp()

    def send(self, recipient: str, type: str, body: dict[str, Any], cid: Any = None) -> str:
        self.wire._check(self.node_id, recipient, type, "notice", body)
        Outbox.create(
            msg_id=new_message_id(),
            recipient=recipient,
            type=type,
            body=msgpack.packb(body),
            created_at=self.now(),
            sent_at=self.now(),  # as if relayed at once
        )
        self.wire.pending.append((self.node_id, recipient, type, body))
        return "id"

    def call(self, recipient: str, type: str, body: dict[str, Any], timeout: Any = None) -> Any:
        return self.wire.request(self.node_id, recipient, type, body)


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[Wire]:
    config = load(ROOT / "appliance.toml")
    db = open_database(f"sqlite:///{tmp_path / 'store.db'}")
    for role in ("municipal_cs", "card_management"):
        load_role_module(role)
        init_store(db, role)
    w = Wire(config, [T0], db)
    w.login()
    yield w
    db.close()


def resident(**changes: Any) -> IdentityRecord:
    base = make_resident(
        seed=7,
        individual_number="123456789018",
        change_reason=ChangeReason.NUMBER_ASSIGNMENT,
        change_date=date(2025, 3, 1),
        sequence=2,
        timestamp=T0 - timedelta(days=30),
    )
    return replace(base, **changes)


def destination(person: IdentityRecord, number: str = "D041009-100") -> dict[str, Any]:
    return destination_for(
        record_to_dict(person),
        "041009",
        municipality_name="仙台市",
        management_number=number,
        processed_on=date(2025, 4, 1),
    )


def on_file(person: IdentityRecord) -> IdentityRecord:
    identity.save_record(person)
    return person


# ---------------------------------------------------------------- CS-7


def test_destination_is_kept_forwarded_unedited_and_marked_sent_on_ack(wire: Wire) -> None:
    person = on_file(resident())
    record = destination(person)
    sent_bytes = msgpack.packb(record)

    wire.notify(REGISTRY, CS, "cs.registry.destination", {"record": record})
    row = DestinationRow.get(DestinationRow.management_number == "D041009-100")
    assert msgpack.packb(row.content) == sent_bytes
    assert row.received_at == T0 and row.sent_at is None  # not linked yet

    forwarded = wire.pump()
    assert [(s, r, t) for s, r, t, _ in forwarded] == [
        (CS, CARDMGMT, "cardmgmt.cs.destination"),
        (CARDMGMT, CS, "cs.cardmgmt.destination_ack"),
    ]
    assert msgpack.packb(forwarded[0][3]["record"]) == sent_bytes  # 編集を加えず (V-9)
    kept = ReceivedDestinationRow.get(ReceivedDestinationRow.management_number == "D041009-100")
    assert msgpack.packb(kept.content) == sent_bytes
    assert kept.sender == CS

    row = DestinationRow.get(DestinationRow.management_number == "D041009-100")
    assert row.sent_at == T0 and row.acknowledged_at == T0
    # the relayed forward (a copy of file 3) does not linger in the CS's outbox
    assert Outbox.select().where(Outbox.type == "cardmgmt.cs.destination").count() == 0


def test_retention_removes_the_record_one_business_day_after_the_ack(wire: Wire) -> None:
    sent = on_file(resident())
    unsent = on_file(resident(resident_code=random_resident_code(random.Random(8))))
    wire.notify(REGISTRY, CS, "cs.registry.destination", {"record": destination(sent)})
    wire.pump()
    wire.pending.clear()
    wire.notify(REGISTRY, CS, "cs.registry.destination", {"record": destination(unsent, "D2")})
    wire.pending.clear()  # 機構 never acknowledges this one

    def left() -> set[str]:
        return {r.management_number for r in DestinationRow.select()}

    purge("municipal_cs", now=datetime(2025, 4, 1, 14, 59, tzinfo=UTC))  # 23:59 JST same day
    assert left() == {"D041009-100", "D2"}
    purge("municipal_cs", now=datetime(2025, 4, 1, 15, 0, 1, tzinfo=UTC))  # Wed 00:00:01 JST
    assert left() == {"D2"}  # unsent records wait for their linkage
    purge("municipal_cs", now=datetime(2026, 4, 1, tzinfo=UTC))
    assert left() == {"D2"}


def test_a_repeated_ack_does_not_restart_the_clock(wire: Wire) -> None:
    person = on_file(resident())
    wire.notify(REGISTRY, CS, "cs.registry.destination", {"record": destination(person)})
    wire.pump()
    wire.now[0] = T0 + timedelta(days=3)
    body = {"destination_id": "D041009-100", "resident_code": person.resident_code}
    wire.notify(CARDMGMT, CS, "cs.cardmgmt.destination_ack", {**body, "received_at": 0.0})
    assert DestinationRow.get().sent_at == T0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"address": "宮城県仙台市青葉区一番町三丁目1番1号"}, "address"),
        ({"name_kanji": "青葉\u3000花代"}, "name_kanji"),
        ({"birth_date": date(1990, 4, 2)}, "birth_date"),
        ({"sex": Sex.MALE}, "sex"),
        ({"individual_number": "999999999991"}, "individual_number"),
    ],
)
def test_a_record_older_than_the_cs_file_is_refused_by_cs7(
    wire: Wire, change: dict[str, Any], field: str
) -> None:
    person = resident()
    on_file(replace(person, **change, sequence=3))  # the CS already has newer 4情報 / number
    with pytest.raises(HandlerError) as caught:
        wire.notify(REGISTRY, CS, "cs.registry.destination", {"record": destination(person)})
    assert caught.value.code == "CS-7"
    assert field in caught.value.message
    assert DestinationRow.select().count() == 0 and wire.pending == []


def test_removed_and_unknown_persons_and_other_municipalities_are_refused(wire: Wire) -> None:
    person = resident()
    with pytest.raises(HandlerError) as caught:
        wire.notify(REGISTRY, CS, "cs.registry.destination", {"record": destination(person)})
    assert caught.value.code == "CS-7"

    on_file(replace(person, record_status=RecordStatus.REMOVED, change_reason=ChangeReason.DEATH))
    with pytest.raises(HandlerError) as caught:
        wire.notify(REGISTRY, CS, "cs.registry.destination", {"record": destination(person)})
    assert caught.value.code == "CS-7"

    on_file(person)
    other = {**destination(person), "municipality_code": "042021"}
    with pytest.raises(HandlerError) as caught:
        wire.notify(REGISTRY, CS, "cs.registry.destination", {"record": other})
    assert caught.value.code == "V-6"
    assert DestinationRow.select().count() == 0


def test_incomplete_or_inconsistent_records_are_refused_by_v1(wire: Wire) -> None:
    person = on_file(resident())
    record = destination(person)
    short = {k: v for k, v in record.items() if k != "print_category"}
    with pytest.raises(HandlerError) as caught:
        wire.notify(REGISTRY, CS, "cs.registry.destination", {"record": short})
    assert caught.value.code == "V-1" and "print_category" in caught.value.message

    wrong_length = {**record, "address_length": record["address_length"] + 1}
    with pytest.raises(HandlerError) as caught:
        wire.notify(REGISTRY, CS, "cs.registry.destination", {"record": wrong_length})
    assert caught.value.code == "V-1" and "address_length" in caught.value.message
    assert DestinationRow.select().count() == 0


def test_resending_a_record_is_idempotent_and_a_changed_resend_refused(wire: Wire) -> None:
    person = on_file(resident())
    record = destination(person)
    wire.notify(REGISTRY, CS, "cs.registry.destination", {"record": record})
    assert len(wire.pending) == 1
    wire.notify(REGISTRY, CS, "cs.registry.destination", {"record": dict(record)})
    assert len(wire.pending) == 1  # the first copy is on its way; nothing new sent
    edited = {**record, "print_category": "2"}
    with pytest.raises(HandlerError) as caught:
        wire.notify(REGISTRY, CS, "cs.registry.destination", {"record": edited})
    assert caught.value.code == "V-9"
    assert msgpack.packb(DestinationRow.get().content) == msgpack.packb(record)


def test_cardmgmt_refuses_a_destination_of_another_municipality(wire: Wire) -> None:
    person = on_file(resident())
    with pytest.raises(HandlerError) as caught:
        wire.notify(OTHER_CS, CARDMGMT, "cardmgmt.cs.destination", {"record": destination(person)})
    assert caught.value.code == "V-6"
    assert ReceivedDestinationRow.select().count() == 0


# ---------------------------------------------------------------- 申請, 交付, CS-8


def _cardmgmt_commands(wire: Wire) -> dict[str, Any]:
    env = NodeEnv(wire.config, CARDMGMT, clock=lambda: wire.now[0].timestamp())
    env.atomic = wire.db.atomic
    return load_role_module("card_management").build(env).commands


def applied_card(wire: Wire, person: IdentityRecord) -> str:
    wire.notify(REGISTRY, CS, "cs.registry.destination", {"record": destination(person)})
    wire.pump()
    answer = _cardmgmt_commands(wire)["cardmgmt.apply"]({"resident_code": person.resident_code})
    assert answer["state"] == "applied"
    return str(answer["serial"])


def issue(wire: Wire, person: IdentityRecord, **over: Any) -> dict[str, Any]:
    body = {
        **OP,
        "resident_code": person.resident_code,
        "serial": None,
        "pins": PINS,
        "presented": {"name_kanji": person.name_kanji, "birth_date": person.birth_date.isoformat()},
        **over,
    }
    return wire.operate("cs.op.card.issue", body)


def test_issue_returns_an_image_the_virtual_card_loads(wire: Wire) -> None:
    from tui.card.image import MyNumberImage, image_from_dict

    person = on_file(resident())
    serial = applied_card(wire, person)
    answer = issue(wire, person)
    assert answer["serial"] == serial and answer["state"] == "issued"
    assert answer["expires"] == "2035-04-01"  # 10th birthday after 2025-04-01
    image = image_from_dict(answer["image"])
    assert isinstance(image, MyNumberImage)
    assert (image.serial, image.resident_code, image.individual_number) == (
        serial,
        person.resident_code,
        person.individual_number,
    )
    assert (image.name, image.address, image.birth_date, image.sex) == (
        person.name_kanji,
        person.address,
        "19900401",
        "2",
    )
    assert {str(k): v for k, v in image.pins.items()} == PINS
    assert (image.municipality_code, image.municipality_name, image.expires) == (
        "041009",
        "仙台市",
        "20350401",
    )
    row = CardRow.get(CardRow.serial == serial)
    assert row.state == "issued" and row.issued_on == date(2025, 4, 1)
    # the usage log names the card and resident, never a PIN or the 個人番号
    logged = [r.target for r in UsageLogRow.select().where(UsageLogRow.task == OP["task"])]
    assert logged == [f"交付 card {serial} {person.resident_code}"]
    assert not any(p in t for t in logged for p in (*PINS.values(), str(person.individual_number)))


def test_issue_uses_the_cs_current_data_even_if_the_application_is_older(wire: Wire) -> None:
    person = on_file(resident())
    applied_card(wire, person)
    moved = on_file(replace(person, address="宮城県仙台市若林区荒町5番6号", sequence=3))
    image = issue(wire, moved)["image"]
    assert image["address"] == moved.address


def test_issue_refusals(wire: Wire) -> None:
    person = on_file(resident())
    with pytest.raises(RemoteError) as caught:
        issue(wire, person)
    assert caught.value.code == "no_application"

    serial = applied_card(wire, person)
    with pytest.raises(RemoteError) as caught:
        issue(wire, person, presented={"name_kanji": person.name_kanji})
    assert caught.value.code == "CS-2"  # 氏名 alone does not identify
    with pytest.raises(RemoteError) as caught:
        issue(wire, person, presented={"name_kanji": "別人\u3000太郎", "birth_date": "1990-04-01"})
    assert caught.value.code == "CS-2" and "name_kanji" in caught.value.message
    assert CardRow.get(CardRow.serial == serial).state == "applied"

    issue(wire, person)
    with pytest.raises(RemoteError) as caught:
        issue(wire, person, serial=serial)
    assert caught.value.code == "CS-8" and "issued" in caught.value.message
    # every attempt is in the usage log, refusals included
    outcomes = [r.outcome for r in UsageLogRow.select().where(UsageLogRow.task == OP["task"])]
    assert outcomes == [
        "refused:no_application",
        "refused:CS-2",
        "refused:CS-2",
        "ok",
        "refused:CS-8",
    ]


def event(wire: Wire, person: IdentityRecord, serial: str, name: str) -> dict[str, Any]:
    body = {**OP, "event": name, "serial": serial, "resident_code": person.resident_code}
    return wire.operate("cs.op.card.event", body)


def test_card_events_flow_to_cardmgmt_and_impossible_ones_are_refused(wire: Wire) -> None:
    person = on_file(resident())
    serial = applied_card(wire, person)
    issue(wire, person)

    assert event(wire, person, serial, "一時停止") == {
        "accepted": True,
        "checked": True,
        "state_before": "issued",
        "state_after": "suspended",
    }
    sent = wire.pump()
    assert [(t, b["event"], b["serial"]) for _, _, t, b in sent] == [
        ("cardmgmt.cs.card_event", "一時停止", serial)
    ]
    assert CardRow.get(CardRow.serial == serial).state == "suspended"

    with pytest.raises(RemoteError) as caught:
        event(wire, person, serial, "一時停止")
    assert caught.value.code == "CS-8"
    assert "suspended" in caught.value.message and "一時停止" in caught.value.message
    assert wire.pending == []  # nothing sent for a refused event

    event(wire, person, serial, "一時停止解除")
    event(wire, person, serial, "廃止")
    event(wire, person, serial, "回収")
    wire.pump()
    assert CardRow.get(CardRow.serial == serial).state == "collected"
    history = _cardmgmt_commands(wire)["cardmgmt.card"]({"serial": serial})["events"]
    assert [(e["event"], e["from"], e["to"]) for e in history] == [
        ("申請", None, "applied"),
        ("交付", "applied", "issued"),
        ("一時停止", "issued", "suspended"),
        ("一時停止解除", "suspended", "released"),
        ("廃止", "released", "abolished"),
        ("回収", "abolished", "collected"),
    ]


def test_cardmgmt_enforces_the_table_on_the_notice_too(wire: Wire) -> None:
    """A notice that slipped past the CS's pre-check (機構 did not answer it) is refused by 機構
    with the state named, and leaves the card as it was."""
    person = on_file(resident())
    serial = applied_card(wire, person)
    body = {
        "event": "返還",
        "serial": serial,
        "resident_code": person.resident_code,
        "operator_id": "op-0001",
        "terminal_id": TERMINAL,
        "on": "2025-04-01",
    }
    with pytest.raises(HandlerError) as caught:
        wire.notify(CS, CARDMGMT, "cardmgmt.cs.card_event", body)
    assert caught.value.code == "CS-8" and "applied" in caught.value.message
    assert CardRow.get(CardRow.serial == serial).state == "applied"

    stranger = {**body, "resident_code": random_resident_code(random.Random(99))}
    with pytest.raises(HandlerError) as caught:
        wire.notify(CS, CARDMGMT, "cardmgmt.cs.card_event", {**stranger, "event": "交付"})
    assert caught.value.code == "card_mismatch"

    wire.notify(CS, CARDMGMT, "cardmgmt.cs.card_event", {**body, "event": "交付"})
    row = CardRow.get(CardRow.serial == serial)
    assert (row.state, row.issued_on, row.expires) == ("issued", date(2025, 4, 1), date(2035, 4, 1))


def test_card_event_for_an_unknown_card_or_person(wire: Wire) -> None:
    person = on_file(resident())
    with pytest.raises(RemoteError) as caught:
        event(wire, person, "100000000000099", "廃止")
    assert caught.value.code == "not_found"
    stranger = resident(resident_code=random_resident_code(random.Random(5)))
    with pytest.raises(RemoteError) as caught:
        event(wire, stranger, "100000000000099", "廃止")
    assert caught.value.code == "not_found"


# ---------------------------------------------------------------- T-03 card check


def seen(person: IdentityRecord, **over: str) -> dict[str, str]:
    card = {
        "individual_number": person.individual_number or "",
        "name": person.name_kanji,
        "address": person.address,
        "birth_date": person.birth_date.strftime("%Y%m%d"),
        "sex": person.sex.value,
    }
    return {**card, **over}


def check(wire: Wire, person: IdentityRecord, card: dict[str, str], serial: str | None = None):
    body = {**OP, "resident_code": person.resident_code, "card": card, "serial": serial}
    return wire.operate("cs.op.card.check", body)


def results(answer: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    return {f["field"]: (f["result"], f["previous"]) for f in answer["fields"]}


def test_card_check_matches_field_by_field(wire: Wire) -> None:
    person = on_file(resident())
    answer = check(wire, person, seen(person))
    assert answer["verdict"] == "match"
    assert results(answer) == {
        f: ("match", False) for f in ("individual_number", "name", "address", "birth_date", "sex")
    }
    assert answer["record"]["resident_code"] == person.resident_code
    assert answer["card_state"] is None  # no serial given

    spaced = check(wire, person, seen(person, name="青葉 花子"))
    assert spaced["verdict"] == "match"  # an ASCII space on the chip is the same name


def test_card_check_after_a_move_reports_a_stale_card(wire: Wire) -> None:
    person = on_file(resident())
    moved = on_file(
        replace(
            person,
            address="宮城県仙台市若林区荒町5番6号",
            change_reason=ChangeReason.MOVE_WITHIN,
            sequence=3,
        )
    )
    answer = check(wire, person, seen(person))
    assert answer["verdict"] == "stale_card"
    assert results(answer)["address"] == ("mismatch", True)
    assert all(r == ("match", False) for f, r in results(answer).items() if f != "address")
    assert answer["record"]["address"] == moved.address

    assert check(wire, person, seen(moved))["verdict"] == "match"  # the rewritten card


def test_card_check_mismatch_when_a_value_was_never_on_file(wire: Wire) -> None:
    person = on_file(resident())
    answer = check(wire, person, seen(person, address="東京都千代田区丸の内一丁目1番1号"))
    assert answer["verdict"] == "mismatch"
    assert results(answer)["address"] == ("mismatch", False)
    forged = check(wire, person, seen(person, individual_number="999999999991"))
    assert forged["verdict"] == "mismatch"
    assert results(forged)["individual_number"] == ("mismatch", False)
    nobody = resident(resident_code=random_resident_code(random.Random(3)))
    assert check(wire, nobody, seen(nobody))["verdict"] == "not_found"


def test_card_check_reports_the_card_state(wire: Wire) -> None:
    person = on_file(resident())
    serial = applied_card(wire, person)
    issue(wire, person)
    answer = check(wire, person, seen(person), serial)
    assert (answer["card_state"], answer["card_usable"]) == ("issued", True)
    event(wire, person, serial, "一時停止")
    wire.pump()
    answer = check(wire, person, seen(person), serial)
    assert answer["verdict"] == "match"
    assert (answer["card_state"], answer["card_usable"]) == ("suspended", False)


def test_a_card_is_handed_over_only_where_it_was_sent_and_with_its_number(wire: Wire) -> None:
    person = on_file(resident())
    serial = applied_card(wire, person)

    wire.login("op-0002", "term.042021.001")  # 石巻市's counter
    with pytest.raises(RemoteError) as caught:
        issue(wire, person, operator_id="op-0002")
    assert caught.value.code == "wrong_municipality"

    wire.login("op-0003")
    renumbered = on_file(replace(person, individual_number="999999999991", sequence=3))
    with pytest.raises(RemoteError) as caught:
        issue(wire, renumbered, operator_id="op-0003")
    assert caught.value.code == "number_mismatch"  # 個人番号変更 since the application
    assert CardRow.get(CardRow.serial == serial).state == "applied"


def test_an_event_naming_someone_elses_card_is_refused_at_the_cs(wire: Wire) -> None:
    holder = on_file(resident())
    other = on_file(resident(resident_code=random_resident_code(random.Random(11))))
    serial = applied_card(wire, holder)
    with pytest.raises(RemoteError) as caught:
        event(wire, other, serial, "廃止")
    assert caught.value.code == "card_mismatch"
    assert wire.pending == [] and CardRow.get(CardRow.serial == serial).state == "applied"
