"""appliance.toml: the default topology loads, and mistakes are named, never defaulted."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from juki.config import ConfigError, load, parse

ROOT = Path(__file__).resolve().parents[2]


def _raw() -> dict:
    return tomllib.loads((ROOT / "appliance.toml").read_text(encoding="utf-8"))


def test_default_topology_has_every_node_of_design_section_2() -> None:
    config = load(ROOT / "appliance.toml")
    roles = {n.id: n.role for n in config.nodes.values()}
    assert [i for i, r in roles.items() if r == "prefecture"] == ["pref.04", "pref.13"]
    assert sorted(i for i, r in roles.items() if r == "municipal_cs") == [
        "cs.041009",
        "cs.042021",
        "cs.131016",
    ]
    assert config.single("national") == "national"
    assert config.single("card_management") == "cardmgmt"
    for code in ("041009", "042021", "131016"):
        assert f"registry.{code}" in roles
        assert any(r == "terminal" and i.startswith(f"term.{code}.") for i, r in roles.items())
    assert config.prefecture_node(config.municipalities["131016"].prefecture) == "pref.13"


def test_unknown_key_is_an_error_that_suggests_the_nearest_key() -> None:
    raw = _raw()
    raw["policy"]["clock_skew_secnds"] = 5
    with pytest.raises(ConfigError, match="clock_skew_seconds"):
        parse(raw, ROOT / "appliance.toml")


def test_unknown_role_and_dangling_municipality_are_refused() -> None:
    raw = _raw()
    raw["nodes"].append({"id": "x", "role": "municipal_css", "municipality": "041009"})
    with pytest.raises(ConfigError, match="municipal_cs"):
        parse(raw, ROOT / "appliance.toml")
    raw = _raw()
    raw["nodes"].append({"id": "cs.999999", "role": "municipal_cs", "municipality": "999999"})
    with pytest.raises(ConfigError, match="unknown municipality"):
        parse(raw, ROOT / "appliance.toml")


def test_an_inbox_keep_shorter_than_a_notices_validity_is_refused() -> None:
    # a notice still valid on the wire would be refused as stale, or its id forgotten too soon
    raw = _raw()
    raw["policy"]["notice_ttl_seconds"] = 40 * 86400
    raw["policy"]["inbox_keep_days"] = 40
    with pytest.raises(ConfigError, match="inbox_keep_days"):
        parse(raw, ROOT / "appliance.toml")
    raw["policy"]["inbox_keep_days"] = 41
    assert parse(raw, ROOT / "appliance.toml").policy.inbox_keep_days == 41


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "nope.toml")


def test_route_table_encodes_the_seeds_who_talks_to_whom() -> None:
    rt = load(ROOT / "appliance.toml").route_table()
    # terminals talk only to their own municipality's CS
    assert rt.allows("term.041009.001", "cs.041009", "ping", "request")
    assert not rt.allows("term.131016.001", "cs.041009", "ping", "request")
    assert not rt.allows("term.041009.001", "pref.04", "ping", "request")
    # a reply travels back along the request's route only
    assert rt.allows("cs.041009", "term.041009.001", "ping", "reply")
    assert not rt.allows("cs.041009", "term.131016.001", "ping", "reply")
    # only the registry feeds the CS (V-6), and only its own municipality's
    assert rt.allows("registry.041009", "cs.041009", "cs.registry.identity_update", "notice")
    assert not rt.allows("registry.041009", "cs.042021", "cs.registry.identity_update", "notice")
    assert not rt.allows("term.041009.001", "cs.041009", "cs.registry.identity_update", "notice")
    # the CS notifies its own prefecture only; the prefecture forwards to national
    assert rt.allows("cs.041009", "pref.04", "pref.cs.identity_update", "notice")
    assert not rt.allows("cs.041009", "pref.13", "pref.cs.identity_update", "notice")
    assert rt.allows("pref.13", "national", "national.pref.identity_update", "notice")
    assert not rt.allows("cs.041009", "national", "national.pref.identity_update", "notice")
    # CS ↔ CS only across municipalities (特例転入)
    assert rt.allows("cs.041009", "cs.131016", "cs.transfer.moveout", "notice")
    assert not rt.allows("cs.041009", "cs.041009", "cs.transfer.moveout", "notice")
    # a terminal cannot pose as a CS or the registry by message type
    assert not rt.allows("term.041009.001", "cs.041009", "cs.transfer.moveout", "notice")
    assert rt.allows("term.041009.001", "cs.041009", "cs.op.search", "request")
