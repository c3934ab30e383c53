"""束ね送信 (bundles): several notices from one sender to one recipient under one envelope.

Every hop of the update path (registry → CS → prefecture → national) relays its outbox in
batches. Sealed one by one, each notice pays an Ed25519 signature at the sender, a verification
at the recipient, a persistent publish, a publisher confirm and a delivery — per update, per hop.
The outbox relay therefore seals the rows pending for one recipient as one `bundle` notice:

    body = {"items": [{"id": msg_id, "type": type, "cid": correlation_id | nil, "body": {…}}, …]}

What stays per item, so that a bundle is exactly as strict as the notices it carries:
- its own message id (the outbox row's), de-duplicated by the recipient's inbox: a row relayed
  twice — in two different bundles after a crash between publish and confirm — applies once;
- the route table, on the item's own type (the bundle itself passes only between nodes some
  route links, broker/routes.py);
- the item type's body schema (unknown fields refused);
- its own handler transaction (a savepoint), refusal record and dead letter: a refused item is
  dead-lettered as the whole signed bundle with `x-juki-item` naming it, so the evidence stays
  verifiable and the other items are not held back.

The envelope checks (signature, recipient, expiry, replay of the bundle's own id, decryption)
cover the bundle once: the signature covers the ciphertext, which holds every item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from broker.envelope import Header, Kind, Message
from broker.errors import Reason, Refused
from broker.ids import is_message_id
from broker.journal import OutboxEntry
from broker.schema import BUNDLE, BUNDLE_MAX_ITEMS

__all__ = ["BUNDLE", "BUNDLE_MAX_ITEMS", "Item", "is_bundle", "open_items", "pack"]


@dataclass(frozen=True, slots=True)
class Item:
    """One notice taken out of a bundle: a Message when it passed its checks, else the refusal.

    `header` is always set (with the bundle's sender, recipient and times), so a refusal can be
    recorded under the item's id and type.
    """

    header: Header
    message: Message | None
    refusal: Refused | None


def is_bundle(header: Header) -> bool:
    return header.kind is Kind.NOTICE and header.type == BUNDLE


_ARRAY_HEADER = msgpack.Packer().pack_array_header


def packed_body(entry: OutboxEntry) -> bytes:
    """The entry's body as msgpack: the journal's stored bytes when it has them."""
    packed = getattr(entry, "packed", None)
    return packed if packed is not None else msgpack.packb(entry.body)


def pack_wire(entries: list[OutboxEntry]) -> bytes:
    """msgpack.packb(pack(entries)), byte for byte, with each stored body spliced in as it is
    (a map's keys keep their order, so the layout is fixed: items → [id, type, cid, body])."""
    packb = msgpack.packb
    parts = [b"\x81\xa5items", _ARRAY_HEADER(len(entries))]
    for e in entries:
        parts.append(b"\x84\xa2id")
        parts.append(packb(e.msg_id))
        parts.append(b"\xa4type")
        parts.append(packb(e.type))
        parts.append(b"\xa3cid")
        parts.append(packb(e.correlation_id))
        parts.append(b"\xa4body")
        parts.append(packed_body(e))
    return b"".join(parts)


def pack(entries: Iterable[OutboxEntry]) -> dict[str, Any]:
    """The bundle body carrying `entries` (outbox rows for one recipient, in order)."""
    return {
        "items": [
            {"id": e.msg_id, "type": e.type, "cid": e.correlation_id, "body": e.body}
            for e in entries
        ]
    }


def open_items(
    bundle: Message,
    allows: Callable[[str, str, str, str], bool],
    validate: Callable[[Header, object], None],
) -> Iterator[Item]:
    """The items of an opened bundle, in order, each checked like a notice of its own.

    `allows` is RouteTable.allows, `validate` SchemaRegistry.validate_body. The bundle's body has
    already passed the bundle schema (every item has id, type, cid and a map body).
    """
    bh = bundle.header
    sender, recipient = bh.sender, bh.recipient
    for raw in bundle.body["items"]:
        item_type = raw["type"]
        header = Header(
            bh.version,
            raw["id"],
            Kind.NOTICE,
            item_type,
            sender,
            recipient,
            bh.issued_at,
            bh.deadline,
            raw.get("cid"),  # Optional: may be absent
        )
        body = raw["body"]
        refusal: Refused | None = None
        if not is_message_id(header.msg_id):
            refusal = Refused(Reason.MALFORMED, "bundle item id is not a message id")
        elif item_type == BUNDLE:
            refusal = Refused(Reason.MALFORMED, "a bundle inside a bundle")
        elif not allows(sender, recipient, item_type, "notice"):
            refusal = Refused(
                Reason.ROUTE_NOT_ALLOWED, f"notice {item_type!r} from {sender!r} to {recipient!r}"
            )
        else:
            try:
                validate(header, body)
            except Refused as exc:
                refusal = exc
        if refusal is None:
            yield Item(header, Message(header, body, bundle.wire), None)
        else:
            yield Item(header, None, refusal)
