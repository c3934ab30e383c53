"""個人番号カード (My Number cards): card life cycle, 機構's card tables, the CS's 送付先 file.

Two sides live here because both are persistence plus domain rules and both stay free of the
network:

- 個人番号カード管理システム (cardmgmt, 機構): the 送付先 records it received (CS-7), one row per
  card with its state, and the event log of every state change (CS-8). The state machine is a
  table (`TRANSITIONS`) and one pure function (`transition`) so that the rule "which event is
  possible in which state" is data a test can enumerate, and the CS can check an operator's
  event before sending it.
- 市町村CS: file (3) 送付先情報 (`store.models.DestinationRow`). The record is kept exactly as
  the registry sent it (V-9 「編集を加えず」): the content column is the received map itself,
  never rebuilt from a dataclass. ``sent_at`` is set when cardmgmt acknowledges the record, which
  is when linkage (連携) is complete; store/retention.py deletes the row one business day after
  that. File (3) is never backed up (seed §5.7): `BACKUP_EXCLUDED_TABLES` says so for any backup
  tool.

Card life cycle (CS-8; states are 機構's, events are the CS's words)::

    applied ──交付──▶ issued ──一時停止──▶ suspended ──一時停止解除──▶ released
       │                 │ ◀───────────────────────────────一時停止─────┘
       └──廃止──▶ abolished ◀──廃止── issued / suspended / released
    issued / suspended / released / abolished ──返還──▶ returned   (the holder hands it back)
    issued / suspended / released / abolished ──回収──▶ collected  (the municipality takes it)

returned and collected are final. A suspended card (reported lost) can still be abolished,
returned or collected; an abolished card can only be physically disposed of (返還 / 回収).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal

import peewee

from store.db import translate_errors
from store.journal import Outbox
from store.models import BaseModel, DestinationRow, IsoDateField, MsgpackField, UtcMicrosField
from store.schema import register_tables

__all__ = [
    "BACKUP_EXCLUDED_TABLES",
    "CARD_STATE_LABELS",
    "TRANSITIONS",
    "USABLE_STATES",
    "Card",
    "CardEvent",
    "CardEventRow",
    "CardRow",
    "CardState",
    "CardStore",
    "CardTransitionError",
    "DestinationConflict",
    "ReceivedDestinationRow",
    "allowed_events",
    "card_expiry",
    "destination_content",
    "forget_relayed_destination_notices",
    "mark_destination_sent",
    "store_destination",
    "transition",
]


class CardState(StrEnum):
    """The state 機構 keeps for each card."""

    APPLIED = "applied"  # 申請済 (made, waiting at the municipality)
    ISSUED = "issued"  # 交付済
    SUSPENDED = "suspended"  # 一時停止
    RELEASED = "released"  # 一時停止解除済 (usable again)
    ABOLISHED = "abolished"  # 廃止
    COLLECTED = "collected"  # 回収済
    RETURNED = "returned"  # 返還済


CARD_STATE_LABELS: Mapping[CardState, str] = MappingProxyType(
    {
        CardState.APPLIED: "申請済",
        CardState.ISSUED: "交付済",
        CardState.SUSPENDED: "一時停止中",
        CardState.RELEASED: "一時停止解除済",
        CardState.ABOLISHED: "廃止",
        CardState.COLLECTED: "回収済",
        CardState.RETURNED: "返還済",
    }
)


class CardEvent(StrEnum):
    """CS-8 events, named as the seed names them."""

    ISSUE = "交付"
    SUSPEND = "一時停止"
    RELEASE = "一時停止解除"
    ABOLISH = "廃止"
    COLLECT = "回収"
    RETURN = "返還"


_S, _E = CardState, CardEvent
_IN_HAND = (_S.ISSUED, _S.SUSPENDED, _S.RELEASED)

TRANSITIONS: Mapping[tuple[CardState, CardEvent], CardState] = MappingProxyType(
    {
        (_S.APPLIED, _E.ISSUE): _S.ISSUED,
        (_S.APPLIED, _E.ABOLISH): _S.ABOLISHED,  # never collected from the counter
        (_S.ISSUED, _E.SUSPEND): _S.SUSPENDED,
        (_S.RELEASED, _E.SUSPEND): _S.SUSPENDED,
        (_S.SUSPENDED, _E.RELEASE): _S.RELEASED,
        **{(s, _E.ABOLISH): _S.ABOLISHED for s in _IN_HAND},
        **{(s, _E.RETURN): _S.RETURNED for s in (*_IN_HAND, _S.ABOLISHED)},
        **{(s, _E.COLLECT): _S.COLLECTED for s in (*_IN_HAND, _S.ABOLISHED)},
    }
)
"""(state, event) → next state; a pair not listed is an impossible transition."""

USABLE_STATES = frozenset({CardState.ISSUED, CardState.RELEASED})
"""States in which a card proves identity at the counter."""


class CardTransitionError(ValueError):
    """An event that the card's current state does not allow.

    Carries the state and the event so that the CS can show the operator both, and a rule id
    (``CS-8``) for the refusal record.
    """

    rule = "CS-8"

    def __init__(self, state: CardState, event: CardEvent) -> None:
        self.state = state
        self.event = event
        allowed = "、".join(e.value for e in allowed_events(state)) or "なし"
        super().__init__(
            f"{event.value} is not possible for a card in state {state.value} "
            f"({CARD_STATE_LABELS[state]}); allowed: {allowed}"
        )

    @property
    def title(self) -> str:
        return f"{CARD_STATE_LABELS[self.state]}のカードに{self.event.value}はできません"


def transition(state: CardState | str, event: CardEvent | str) -> CardState:
    """The state after `event`; raises CardTransitionError when the table has no such move."""
    s, e = CardState(state), CardEvent(event)
    try:
        return TRANSITIONS[(s, e)]
    except KeyError:
        raise CardTransitionError(s, e) from None


def allowed_events(state: CardState | str) -> list[CardEvent]:
    s = CardState(state)
    return [e for e in CardEvent if (s, e) in TRANSITIONS]


def card_expiry(birth_date: date, issued_on: date) -> date:
    """有効期限: the holder's 10th birthday after issue (5th when under 18 on the issue day).

    番号法施行規則 counts birthdays after the issue date; a 29 February birthday falls on
    28 February in common years (our choice; the rule does not say).
    """
    age = issued_on.year - birth_date.year
    if (issued_on.month, issued_on.day) < (birth_date.month, birth_date.day):
        age -= 1
    count = 10 if age >= 18 else 5
    year = issued_on.year
    if (birth_date.month, birth_date.day) <= (issued_on.month, issued_on.day):
        year += 1  # this year's birthday is on or before the issue day: not "after"
    year += count - 1
    try:
        return birth_date.replace(year=year)
    except ValueError:
        return date(year, 2, 28)


# --- 機構 (cardmgmt) tables --------------------------------------------------------------------


class ReceivedDestinationRow(BaseModel):
    """送付先情報 as 機構 received it from a CS (the map, unedited), used for the 通知書 mailing
    and as the application data of a card."""

    id = peewee.BigAutoField()
    management_number = peewee.CharField(max_length=64, unique=True)  # 1 送付先管理番号
    resident_code = peewee.CharField(max_length=11, index=True)  # 38
    municipality_code = peewee.CharField(max_length=6)  # 9
    sender = peewee.CharField(max_length=64)
    content = MsgpackField()
    received_at = UtcMicrosField(index=True)

    class Meta:
        table_name = "cardmgmt_destination"


class CardRow(BaseModel):
    """One card: who holds it, where it is handed over, and its state."""

    serial = peewee.CharField(max_length=15, primary_key=True)  # カード製造番号
    resident_code = peewee.CharField(max_length=11, index=True)
    individual_number = peewee.CharField(max_length=12)
    municipality_code = peewee.CharField(max_length=6)  # 交付市町村
    destination_number = peewee.CharField(max_length=64)  # the 送付先 the application came from
    state = peewee.CharField(max_length=16, index=True)
    applied_at = UtcMicrosField()
    issued_on = IsoDateField(null=True)
    expires = IsoDateField(null=True)
    updated_at = UtcMicrosField()

    class Meta:
        table_name = "card"


class CardEventRow(BaseModel):
    """Every state change of every card, with who asked for it (CS-8 linkage record)."""

    id = peewee.BigAutoField()
    serial = peewee.CharField(max_length=15, index=True)
    event = peewee.CharField(max_length=16)
    from_state = peewee.CharField(max_length=16, null=True)
    to_state = peewee.CharField(max_length=16)
    at = UtcMicrosField()
    sender = peewee.CharField(max_length=64)
    operator_id = peewee.CharField(max_length=64)
    msg_id = peewee.CharField(max_length=64, null=True)

    class Meta:
        table_name = "card_event"


class CardCounterRow(BaseModel):
    """The next カード製造番号 (one row)."""

    name = peewee.CharField(max_length=16, primary_key=True)
    value = peewee.BigIntegerField()

    class Meta:
        table_name = "card_counter"


register_tables("card_management", ReceivedDestinationRow, CardRow, CardEventRow, CardCounterRow)

SERIAL_BASE = 100_000_000_000_000
"""Serials start here so that every one has 15 significant digits."""


@dataclass(frozen=True, slots=True)
class Card:
    serial: str
    resident_code: str
    individual_number: str
    municipality_code: str
    destination_number: str
    state: CardState
    issued_on: date | None
    expires: date | None


def _card(row: CardRow) -> Card:
    return Card(
        serial=row.serial,
        resident_code=row.resident_code,
        individual_number=row.individual_number,
        municipality_code=row.municipality_code,
        destination_number=row.destination_number,
        state=CardState(row.state),
        issued_on=row.issued_on,
        expires=row.expires,
    )


class CardStore:
    """機構's card operations; each runs inside the caller's transaction."""

    @staticmethod
    def receive_destination(
        record: Mapping[str, Any], *, sender: str, now: datetime
    ) -> Literal["stored", "duplicate"]:
        """Keep a 送付先 record as received; the same 送付先管理番号 again is a no-op."""
        number = str(record["destination_id"])
        with translate_errors():
            existing = ReceivedDestinationRow.get_or_none(
                ReceivedDestinationRow.management_number == number
            )
            if existing is not None:
                return "duplicate"
            ReceivedDestinationRow.create(
                management_number=number,
                resident_code=str(record["resident_code"]),
                municipality_code=str(record["municipality_code"]),
                sender=sender,
                content=dict(record),
                received_at=now,
            )
        return "stored"

    @staticmethod
    def destination(management_number: str) -> dict[str, Any] | None:
        with translate_errors():
            row = ReceivedDestinationRow.get_or_none(
                ReceivedDestinationRow.management_number == management_number
            )
        return None if row is None else row.content

    @staticmethod
    def latest_destination(resident_code: str) -> dict[str, Any] | None:
        with translate_errors():
            row = (
                ReceivedDestinationRow.select()
                .where(ReceivedDestinationRow.resident_code == resident_code)
                .order_by(ReceivedDestinationRow.id.desc())
                .first()
            )
        return None if row is None else row.content

    @staticmethod
    def _next_serial() -> str:
        with translate_errors():
            row = CardCounterRow.get_or_none(CardCounterRow.name == "serial")
            if row is None:
                CardCounterRow.create(name="serial", value=SERIAL_BASE + 1)
                value = SERIAL_BASE + 1
            else:
                value = row.value + 1
                CardCounterRow.update(value=value).where(CardCounterRow.name == "serial").execute()
        return f"{value:015d}"

    @classmethod
    def apply(
        cls, destination: Mapping[str, Any], *, now: datetime, sender: str, operator_id: str
    ) -> Card:
        """申請: a new card made from a 送付先 record (its 交付申請書), in state applied."""
        serial = cls._next_serial()
        with translate_errors():
            CardRow.create(
                serial=serial,
                resident_code=str(destination["resident_code"]),
                individual_number=str(destination["individual_number"]),
                municipality_code=str(destination["municipality_code"]),
                destination_number=str(destination["destination_id"]),
                state=CardState.APPLIED.value,
                applied_at=now,
                updated_at=now,
            )
            CardEventRow.create(
                serial=serial,
                event="申請",
                from_state=None,
                to_state=CardState.APPLIED.value,
                at=now,
                sender=sender,
                operator_id=operator_id,
            )
        card = cls.get(serial)
        assert card is not None
        return card

    @staticmethod
    def get(serial: str) -> Card | None:
        with translate_errors():
            row = CardRow.get_or_none(CardRow.serial == serial)
        return None if row is None else _card(row)

    @staticmethod
    def cards_of(resident_code: str) -> list[Card]:
        with translate_errors():
            rows = list(
                CardRow.select()
                .where(CardRow.resident_code == resident_code)
                .order_by(CardRow.applied_at, CardRow.serial)
            )
        return [_card(r) for r in rows]

    @staticmethod
    def apply_event(
        serial: str,
        event: CardEvent,
        *,
        now: datetime,
        sender: str,
        operator_id: str,
        msg_id: str | None = None,
        issued_on: date | None = None,
        expires: date | None = None,
    ) -> tuple[CardState, CardState]:
        """Move the card by `event` (CardTransitionError when impossible); returns (from, to).

        The row is re-read inside the transaction, so two events for one card apply in order.
        """
        with translate_errors():
            row = CardRow.get_or_none(CardRow.serial == serial)
            if row is None:
                raise LookupError(f"no card {serial}")
            before = CardState(row.state)
            after = transition(before, event)
            changes: dict[Any, Any] = {CardRow.state: after.value, CardRow.updated_at: now}
            if issued_on is not None:
                changes[CardRow.issued_on] = issued_on
            if expires is not None:
                changes[CardRow.expires] = expires
            n = (
                CardRow.update(changes)
                .where((CardRow.serial == serial) & (CardRow.state == before.value))
                .execute()
            )
            if n != 1:  # pragma: no cover - another writer moved it between read and write
                raise CardTransitionError(before, event)
            CardEventRow.create(
                serial=serial,
                event=event.value,
                from_state=before.value,
                to_state=after.value,
                at=now,
                sender=sender,
                operator_id=operator_id,
                msg_id=msg_id,
            )
        return before, after

    @staticmethod
    def events(serial: str) -> list[dict[str, Any]]:
        with translate_errors():
            rows = list(
                CardEventRow.select().where(CardEventRow.serial == serial).order_by(CardEventRow.id)
            )
        return [
            {
                "event": r.event,
                "from": r.from_state,
                "to": r.to_state,
                "at": r.at.timestamp(),
                "sender": r.sender,
                "operator_id": r.operator_id,
            }
            for r in rows
        ]


# --- 市町村CS: file (3) 送付先情報 --------------------------------------------------------------

BACKUP_EXCLUDED_TABLES = frozenset({DestinationRow._meta.table_name})
"""Tables a backup must skip: 「送付先情報ファイルのバックアップは取得していない」 (seed §5.7)."""


class DestinationConflict(ValueError):
    """The same 送付先管理番号 arrived again with different content."""


def store_destination(
    record: Mapping[str, Any], *, now: datetime
) -> Literal["stored", "duplicate"]:
    """Keep a 送付先 record as received (the map itself, V-9); an identical resend is a no-op."""
    number = str(record["destination_id"])
    with translate_errors():
        row = DestinationRow.get_or_none(DestinationRow.management_number == number)
        if row is not None:
            if row.content != dict(record):
                raise DestinationConflict(
                    f"送付先管理番号 {number} was already received with different content"
                )
            return "duplicate"
        DestinationRow.create(
            management_number=number,
            resident_code=str(record["resident_code"]),
            content=dict(record),
            received_at=now,
        )
    return "stored"


def destination_content(management_number: str) -> dict[str, Any] | None:
    with translate_errors():
        row = DestinationRow.get_or_none(DestinationRow.management_number == management_number)
    return None if row is None else row.content


def mark_destination_sent(management_number: str, *, at: datetime) -> bool:
    """連携済み: cardmgmt has the record. Starts the one-business-day retention clock.

    False when the record is unknown (already purged, or never received here) or was already
    marked (a repeated acknowledgement must not restart the clock).
    """
    with translate_errors():
        n = (
            DestinationRow.update(sent_at=at, acknowledged_at=at)
            .where(
                (DestinationRow.management_number == management_number)
                & DestinationRow.sent_at.is_null()
            )
            .execute()
        )
    return n == 1


def forget_relayed_destination_notices(type_name: str) -> int:
    """Delete relayed outbox rows of the 送付先 forward: their bodies are copies of file (3),
    which must not outlive the record's own deletion (and is never backed up)."""
    with translate_errors():
        return int(
            Outbox.delete()
            .where((Outbox.type == type_name) & Outbox.sent_at.is_null(False))
            .execute()
        )
