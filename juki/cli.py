"""`juki`: the one command line of the appliance.

Headless subcommands never import Textual (only `juki terminal` does, lazily); a test proves it.
Exit codes are documented in juki/exitcodes.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from juki import exitcodes
from juki.config import ApplianceConfig, ConfigError, load

Handler = Callable[[argparse.Namespace, ApplianceConfig], int]


def _passphrase(config: ApplianceConfig) -> bytes | None:
    value = os.environ.get(config.passphrase_env)
    return value.encode() if value else None


# ---------------------------------------------------------------- keys


def cmd_keys_init(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from broker.keys import init_keys

    created = init_keys(
        config.keys_dir,
        config.trust_file,
        list(config.nodes),
        _passphrase(config),
        force=args.force,
    )
    kept = len(config.nodes) - len(created)
    print(
        f"created {len(created)} identities, kept {kept} existing; trust file {config.trust_file}"
    )
    return exitcodes.OK


def cmd_keys_rotate(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from broker.keys import rotate_keys

    config.node(args.node)
    rotate_keys(config.keys_dir, config.trust_file, args.node, _passphrase(config))
    print(f"rotated {args.node}; restart the nodes so they reload {config.trust_file}")
    return exitcodes.OK


# ---------------------------------------------------------------- store


def cmd_store_init(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from nodes.stores import init_node_store

    targets = (
        [n for n in config.nodes if config.nodes[n].role != "terminal"] if args.all else [args.node]
    )
    if not targets or targets == [None]:
        raise ConfigError("name a NODE_ID or pass --all")
    for node_id in targets:
        created = init_node_store(config, node_id)
        print(f"{node_id}: {config.store_url(node_id)} ({len(created)} tables created)")
    return exitcodes.OK


def cmd_audit_verify(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from nodes.stores import verify_audit

    result = verify_audit(config, args.node)
    print(result.describe() if hasattr(result, "describe") else result)
    return exitcodes.OK if result.ok else exitcodes.VERIFY


def cmd_seed(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from nodes.seeding import seed_population

    seed_population(
        config, args.municipality, args.residents, seed=args.seed, progress=not args.quiet
    )
    return exitcodes.OK


def cmd_purge(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from nodes.stores import purge_node

    report = purge_node(config, args.node)
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return exitcodes.OK


# ---------------------------------------------------------------- broker / nodes


def cmd_broker_export(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from nodes.runtime import broker_definitions

    text = json.dumps(broker_definitions(config), indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
        print(f"wrote {args.output}")
    else:
        print(text)
    return exitcodes.OK


def cmd_dead_letters(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from juki.deadletters import list_dead

    _check_broker(config)
    total, dead = list_dead(config, args.limit)
    if args.json:
        rows = [{**vars(d)} for d in dead]
        print(json.dumps({"total": total, "shown": rows}, ensure_ascii=False, indent=2))
        return exitcodes.OK
    print(f"dead-letter queue {config.broker.dead_letter_queue}: {total} message(s)")
    for d in dead:
        what = f"{d.item} (in bundle {d.msg_id})" if d.item else (d.msg_id or "(unreadable)")
        print(f"  {d.issued_at or '?':19}  {d.node or '?':16} {d.reason:18} {d.type or '?'}")
        print(f"      id {what}  from {d.sender or '?'}  attempts {d.attempts}")
        if d.detail:
            print(f"      {d.detail[:200]}")
    if total > len(dead):
        print(f"  … {total - len(dead)} more (--limit)")
    return exitcodes.OK


def cmd_requeue(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from juki.deadletters import requeue

    _check_broker(config)
    report = requeue(config, args.ids)
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        for msg_id in report.requeued:
            print(f"{msg_id}: handed back to the node that refused it")
        for msg_id, why in report.skipped.items():
            print(f"{msg_id}: kept — {why}")
        for msg_id in report.not_found:
            print(f"{msg_id}: not in the dead-letter queue")
    return exitcodes.OK if not report.skipped and not report.not_found else exitcodes.FAILURE


def cmd_node(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from nodes.runtime import run_node

    return run_node(config, args.node_id)


def cmd_up(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from juki import supervisor

    if supervisor.running_pid(config):
        print(f"the appliance is already running (pid {supervisor.running_pid(config)})")
        return exitcodes.OK
    _check_broker(config)
    ids = supervisor.daemon_ids(config, args.role)
    if args.detach:
        pid = supervisor.detach(config, args.role)
        print(
            f"started {len(ids)} nodes in the background (supervisor pid {pid}); "
            f"logs in {config.var_dir / 'log'}"
        )
        return exitcodes.OK
    print(f"starting {len(ids)} nodes: {', '.join(ids)} (Ctrl-C stops them)")
    return supervisor.run(config, ids)


def cmd_down(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from juki import supervisor

    if supervisor.down(config):
        print("stopped")
        return exitcodes.OK
    print("the appliance was not running")
    return exitcodes.NODE_DOWN


def cmd_ctl(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from juki import ctl

    return ctl.main(args, config)


def cmd_ping(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from nodes.client import ping

    config.node(args.sender)
    config.node(args.recipient)
    if not config.route_table().allows(args.sender, args.recipient, "ping", "request"):
        print(
            f"juki: the route table does not allow {args.sender} to send requests to "
            f"{args.recipient}; the recipient would refuse it (route_not_allowed)",
            file=sys.stderr,
        )
        return exitcodes.FAILURE
    answer, seconds = ping(config, args.sender, args.recipient, timeout=args.timeout)
    print(f"{args.recipient} answered {args.sender} in {seconds * 1000:.1f} ms: {answer}")
    return exitcodes.OK


# ---------------------------------------------------------------- registry and simulation

REGISTRY_KINDS = {
    "birth": "birth",
    "death": "death",
    "move-within": "move_within",
    "move-out": "move_out",
    "move-out-abroad": "move_out_abroad",
    "correction": "correction",
    "number-request": "number_request",
}


def cmd_registry(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from broker.control import control_request

    node = f"registry.{args.municipality}"
    endpoint = config.control_endpoint(config.node(node).id)
    if args.event == "status":
        answer = control_request(endpoint, "registry.status", timeout=10.0)
    else:
        params: dict[str, Any] = {"kind": REGISTRY_KINDS[args.event]}
        if args.resident_code:
            params["resident_code"] = args.resident_code
        if args.to:
            params["to_municipality"] = args.to
        if args.parent:
            params["parent"] = args.parent
        if args.date:
            params["on"] = args.date
        answer = control_request(endpoint, "registry.event", timeout=30.0, **params)
    print(json.dumps(answer, ensure_ascii=False, indent=2, default=str))
    return exitcodes.OK if answer.get("ok") else exitcodes.FAILURE


def cmd_simulate(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from rich.progress import Progress

    from nodes.simulate import simulate

    with Progress(transient=True, disable=args.quiet) as bar:
        task = bar.add_task(f"異動 {args.municipality}", total=args.duration)

        def show(report: Any) -> None:
            bar.update(task, completed=report.seconds, description=f"異動 {report.total} 件")

        report = simulate(
            config, args.municipality, args.rate, args.duration, seed=args.seed, progress=show
        )
    print(json.dumps(report.to_dict(), ensure_ascii=False))
    return exitcodes.OK


def cmd_consistency_run(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from rich.progress import Progress

    from nodes.consistency import run_check

    with Progress(transient=True) as bar:
        task = bar.add_task(f"整合性確認 {args.municipality}", total=None)

        def show(e: Any) -> None:
            bar.update(task, completed=e.done, total=e.total, description=e.description)

        report = run_check(config, args.municipality, repair=args.repair, progress=show)
    if args.json:
        Path(args.json).write_text(
            json.dumps(report.to_dict(), ensure_ascii=False, indent=2), encoding="utf-8"
        )
    print(report.describe())
    return exitcodes.OK if report.ok else exitcodes.VERIFY


# ---------------------------------------------------------------- cards and terminal


def cmd_card_insert(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from tui.card.slots import insert_card

    pid = insert_card(Path(args.image), args.slot, config.var_dir / "run")
    print(f"card {args.image} inserted in slot {args.slot} (virtual card pid {pid})")
    return exitcodes.OK


def cmd_card_remove(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from tui.card.slots import remove_card

    removed = remove_card(args.slot, config.var_dir / "run")
    print(f"slot {args.slot}: {'card removed' if removed else 'no card was inserted'}")
    return exitcodes.OK


def cmd_terminal(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from nodes.client import client_for
    from tui.app import run_terminal  # the only place Textual is loaded

    config.node(args.terminal_id)
    return run_terminal(
        config, args.terminal_id, clients=lambda: client_for(config, args.terminal_id)
    )


def cmd_operator_add(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from nodes.cs_sessions import add_operator
    from tui.operator_cards import write_operator_cards

    cs = config.cs_for_municipality(args.municipality)
    op = add_operator(
        config, cs, args.operator_id, args.name, args.task, card_serial=args.serial, hand=args.hand
    )
    [path] = write_operator_cards(config, args.municipality, [op])
    print(f"{op.operator_id}: registered at {cs} ({', '.join(op.tasks)}); card image {path}")
    return exitcodes.OK


def cmd_operator_demo(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from nodes.cs_sessions import demo_operators
    from tui.operator_cards import write_operator_cards

    ops = demo_operators(config, args.municipality)
    paths = write_operator_cards(config, args.municipality, ops)
    for op, path in zip(ops, paths, strict=True):
        print(f"{op.operator_id} ({op.name}): {', '.join(op.tasks)} — card {path}")
    print(f"insert one: juki card insert {paths[1]} --slot 1; then juki terminal")
    return exitcodes.OK


def cmd_demo(args: argparse.Namespace, config: ApplianceConfig) -> int:
    from juki.demo import main as demo_main

    flags = ["--config", str(config.path), "--slot", str(args.slot), "--timeout", str(args.timeout)]
    if args.municipality:
        flags += ["--municipality", args.municipality]
    if args.terminal:
        flags += ["--terminal", args.terminal]
    return demo_main(flags)


# ---------------------------------------------------------------- plumbing


def _check_broker(config: ApplianceConfig) -> None:
    from nodes.client import check_broker

    check_broker(config)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="juki", description="住基ネット appliance emulation")
    p.add_argument("--config", help="appliance.toml (default: $JUKI_CONFIG or ./appliance.toml)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    keys = sub.add_parser("keys", help="node identities and the trust file").add_subparsers(
        dest="sub", required=True
    )
    k = keys.add_parser(
        "init", help="create one identity per node and terminal; never overwrites without --force"
    )
    k.add_argument("--force", action="store_true")
    k.set_defaults(func=cmd_keys_init)
    k = keys.add_parser("rotate", help="replace one node's keys and update the trust file")
    k.add_argument("node")
    k.set_defaults(func=cmd_keys_rotate)

    store = sub.add_parser("store", help="node stores").add_subparsers(dest="sub", required=True)
    s = store.add_parser("init", help="create or migrate a node's store")
    s.add_argument("node", nargs="?")
    s.add_argument("--all", action="store_true", help="every daemon of the topology")
    s.set_defaults(func=cmd_store_init)
    s = store.add_parser(
        "purge", help="apply the retention rules now; forget relayed notices and stale inbox ids"
    )
    s.add_argument("node")
    s.set_defaults(func=cmd_purge)

    audit = sub.add_parser("audit", help="audit logs").add_subparsers(dest="sub", required=True)
    a = audit.add_parser("verify", help="verify a node's hash-chained usage log")
    a.add_argument("node")
    a.set_defaults(func=cmd_audit_verify)

    s = sub.add_parser("seed", help="load a synthetic population into a municipality's stores")
    s.add_argument("--municipality", required=True)
    s.add_argument("--residents", type=int, default=1000)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_seed)

    broker = sub.add_parser("broker", help="RabbitMQ topology and dead letters").add_subparsers(
        dest="sub", required=True
    )
    b = broker.add_parser("export", help="write the topology as a RabbitMQ definitions file")
    b.add_argument("-o", "--output")
    b.set_defaults(func=cmd_broker_export)
    b = broker.add_parser(
        "dead-letters", help="list refused messages with their reasons (the queue keeps them)"
    )
    b.add_argument("--limit", type=int, default=20)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_dead_letters)
    b = broker.add_parser(
        "requeue", help="hand dead-lettered notices back to the node that refused them"
    )
    b.add_argument("ids", nargs="+", metavar="MSG_ID")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_requeue)

    n = sub.add_parser("node", help="run one node daemon in the foreground")
    n.add_argument("node_id")
    n.set_defaults(func=cmd_node)

    u = sub.add_parser("up", help="run every daemon of the topology, supervised")
    u.add_argument("--detach", action="store_true", help="run in the background")
    u.add_argument("--role", action="append", help="only nodes of this role (repeatable)")
    u.set_defaults(func=cmd_up)
    d = sub.add_parser("down", help="stop a detached appliance")
    d.set_defaults(func=cmd_down)

    c = sub.add_parser("ctl", help="ask nodes over their control sockets")
    c.add_argument("action", choices=["status", "health", "drain", "stop"])
    c.add_argument("node", nargs="?", help="one node (default: all daemons for status)")
    c.add_argument("--json", action="store_true")
    c.add_argument(
        "--wait", type=float, default=0.0, help="status: wait up to N s for all nodes healthy"
    )
    c.set_defaults(func=cmd_ctl)

    pg = sub.add_parser(
        "ping", help="send a sealed ping from one identity to a node and time the reply"
    )
    pg.add_argument("recipient")
    pg.add_argument("--from", dest="sender", default="term.041009.001")
    pg.add_argument("--timeout", type=float, default=5.0)
    pg.set_defaults(func=cmd_ping)

    r = sub.add_parser("registry", help="scripted 異動 at an existing registry (既存住基システム)")
    r.add_argument("event", choices=[*REGISTRY_KINDS, "status"])
    r.add_argument("--municipality", default="041009")
    r.add_argument("--resident-code")
    r.add_argument("--to", help="move-out: the destination 市町村コード")
    r.add_argument("--parent", help="birth: a parent's 住民票コード (same household)")
    r.add_argument("--date", help="異動年月日 (YYYY-MM-DD, default today)")
    r.set_defaults(func=cmd_registry)

    sm = sub.add_parser("simulate", help="drive a registry with a realistic mix of 異動")
    sm.add_argument("--municipality", default="041009")
    sm.add_argument("--rate", type=float, default=10.0, help="異動 per second")
    sm.add_argument("--duration", type=float, default=10.0, help="seconds")
    sm.add_argument("--seed", type=int)
    sm.add_argument("--quiet", action="store_true")
    sm.set_defaults(func=cmd_simulate)

    card = sub.add_parser("card", help="virtual cards in the vpcd reader").add_subparsers(
        dest="sub", required=True
    )
    ci = card.add_parser("insert", help="insert a virtual card from an image file")
    ci.add_argument("image")
    ci.add_argument("--slot", type=int, default=0)
    ci.set_defaults(func=cmd_card_insert)
    cr = card.add_parser("remove", help="remove the virtual card from a slot")
    cr.add_argument("--slot", type=int, default=0)
    cr.set_defaults(func=cmd_card_remove)

    cn = sub.add_parser("consistency", help="CS-6 整合性確認: CS ↔ prefecture ↔ national")
    csub = cn.add_subparsers(dest="consistency_cmd", required=True)
    cr2 = csub.add_parser("run", help="compare by digest walk; --repair re-sends the CS's records")
    cr2.add_argument("--municipality", required=True)
    cr2.add_argument("--repair", action="store_true")
    cr2.add_argument("--json", metavar="FILE")
    cr2.set_defaults(func=cmd_consistency_run)

    opr = sub.add_parser("operator", help="operators at a municipal CS").add_subparsers(
        dest="sub", required=True
    )
    o = opr.add_parser("add", help="register, enrol (emulated hand) and write an operator card")
    o.add_argument("operator_id")
    o.add_argument("--name", required=True)
    o.add_argument("--task", action="append", default=[], help="事務 from the 対応表 (repeatable)")
    o.add_argument("--municipality", default="041009")
    o.add_argument("--serial", default="900000000000001", help="15-digit card serial")
    o.add_argument("--hand", help="emulated person whose captures match (default: operator id)")
    o.set_defaults(func=cmd_operator_add)
    o = opr.add_parser("demo", help="demo 操作者管理者/窓口担当者/監査担当者 with card images")
    o.add_argument("--municipality", default="041009")
    o.set_defaults(func=cmd_operator_demo)

    dm = sub.add_parser("demo", help="scripted demo: birth → 個人番号 → card → counter check")
    dm.add_argument("--municipality")
    dm.add_argument("--terminal")
    dm.add_argument("--slot", type=int, default=0)
    dm.add_argument("--timeout", type=float, default=60.0)
    dm.set_defaults(func=cmd_demo)

    t = sub.add_parser("terminal", help="open the 統合端末 (Textual)")
    t.add_argument("--terminal-id", default="term.041009.001")
    t.set_defaults(func=cmd_terminal)
    return p


def _error_exit(title: str, exc: BaseException, code: int) -> int:
    print(f"juki: {title}: {exc}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # pika logs every failed reconnect attempt at ERROR with a traceback; broker/amqp.py already
    # logs the outage and the retry in one line
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    try:
        config = load(args.config)
        result: Any = args.func(args, config)
        return int(result)
    except ConfigError as exc:
        return _error_exit("設定エラー", exc, exitcodes.CONFIG)
    except KeyboardInterrupt:
        return exitcodes.INTERRUPTED
    except Exception as exc:  # translate our typed errors; anything else is a real bug
        code = _classify(exc)
        if code is None:
            raise
        return _error_exit(getattr(exc, "title", type(exc).__name__), exc, code)


def _classify(exc: BaseException) -> int | None:
    from broker import errors as berr

    if isinstance(exc, berr.BrokerUnavailable):
        return exitcodes.BROKER
    if isinstance(exc, berr.KeyStoreError):
        return exitcodes.CONFIG
    if isinstance(exc, berr.BrokerError):
        return exitcodes.FAILURE
    name = type(exc).__name__
    if name == "ControlUnavailable":
        return exitcodes.NODE_DOWN
    if hasattr(exc, "title"):
        return exitcodes.FAILURE
    return None


if __name__ == "__main__":
    sys.exit(main())
