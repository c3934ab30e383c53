"""電文一覧（カード）(card message types): CS-7 送付先情報通知, CS-8 card life-cycle events and
the card-based identity check. Kept apart from nodes/messages.py so the card work has its own file."""

from __future__ import annotations

from broker.schema import MessageType

CARD_CATALOGUE: tuple[MessageType, ...] = ()
