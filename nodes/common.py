"""共通の電文処理 (plumbing handlers every node answers): ping, echo and the demo notice."""

from __future__ import annotations

import logging
from typing import Any

from broker.envelope import Message
from broker.service import Context, Handler

log = logging.getLogger(__name__)


def on_ping(msg: Message, ctx: Context) -> dict[str, Any]:
    return {"node": ctx.node_id, "time": ctx.now()}


def on_echo(msg: Message, ctx: Context) -> dict[str, Any]:
    return {"payload": msg.body["payload"]}


def on_demo_notice(msg: Message, ctx: Context) -> None:
    log.info("%s: demo notice %d from %s", ctx.node_id, msg.body["seq"], msg.header.sender)


def plumbing_handlers() -> dict[str, Handler]:
    return {"ping": on_ping, "echo": on_echo, "demo.notice": on_demo_notice}
