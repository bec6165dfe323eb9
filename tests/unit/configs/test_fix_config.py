"""FIX venue configs: the FIX demo is valid; a bad FIX venue names every error at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.load import ConfigInvalid, load_config
from configs.schema import FixSymbolCfg
from feeds.fix.venue import FixSymbols, acceptor_sessions, md_session, order_session

ROOT = Path(__file__).resolve().parents[3]
CATALOGUE = ROOT / "configs" / "instruments.toml"

BASE = f"""
include = ["{CATALOGUE}"]
[venues.SHFE]
kind = "sim"
[venues.FX]
kind = "sim"
[instruments.au]
sim = {{ start = 556.0 }}
[instruments.GC]
sim = {{ start = 2400.0 }}
[instruments.USDCNH]
venue = "FX"
symbol = "USDCNH"
tick = 0.0001
multiplier = 1.0
currency = "CNH"
unit = "ccy"
fx = true
sim = {{ start = 7.2 }}
[instruments.USDCNY]
venue = "FX"
symbol = "USDCNY"
tick = 0.0001
multiplier = 1.0
currency = "CNY"
unit = "ccy"
fx = true
sim = {{ start = 7.2 }}
[pairs.au_gc]
leg_a = "au"
leg_b = "GC"
ratio_a = 3
currency = "CNY"
unit = "g"
[accounts.cn]
currency = "CNY"
balance = 300000.0
venues = ["SHFE", "COMEX"]
[actors.trigger]
kind = "trigger"
[actors.executor]
kind = "executor"
"""


def test_fix_demo_config_is_valid() -> None:
    cfg = load_config(ROOT / "configs" / "demo-fix.toml")
    assert cfg.venues["SHFE"].kind == "fix" and cfg.venues["COMEX"].kind == "fix"
    assert {"SHFE", "COMEX"} <= cfg.simulated_venues()
    comex = cfg.venues["COMEX"].fix
    assert comex is not None and not comex.ioc and not comex.market_orders and not comex.status_requests
    assert cfg.pairs["au_gc"].rollback_far_ticks > 0


def test_fix_venue_sessions_and_symbols_come_from_the_config(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "configs" / "demo-fix.toml")
    fx = cfg.venues["COMEX"].fix
    assert fx is not None
    orders = order_session(tmp_path, "COMEX", fx)
    md = md_session(tmp_path, "COMEX", fx)
    assert orders.session_id == "FIX.4.4:XMC->COMEX" and orders.port == 17411
    assert md is not None and md.session_id == "FIX.4.4:XMC-MD->COMEX" and md.port == 17411
    assert orders.store_dir.startswith(str(tmp_path / "state" / "fix" / "COMEX"))
    acc = acceptor_sessions(tmp_path, "COMEX", fx)
    assert [s.session_id for s in acc] == ["FIX.4.4:COMEX->XMC", "FIX.4.4:COMEX->XMC-MD"]
    syms = FixSymbols(cfg, "COMEX")
    gc = syms.wire("GC")
    assert gc is not None and (gc.symbol, gc.security_exchange, gc.quote_symbol) == ("GC", "CMX", "GCZ6")
    assert syms.instrument("GC") == gc
    assert isinstance(fx.symbols["GC"], FixSymbolCfg)


def test_bad_fix_venue_names_every_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XMC_TEST_NO_SUCH_PASSWORD", raising=False)
    (tmp_path / "bad.toml").write_text(BASE + """
[venues.COMEX]
kind = "fix"
[venues.COMEX.fix]
port = 70000
version = "FIX.5.0"
sender_comp_id = "X M C"
password_env = "XMC_TEST_NO_SUCH_PASSWORD"
symbols = { NOPE = "N" }
market_orders = false
typo = 1
[actors.ingest_comex]
kind = "ingest"
venue = "COMEX"
""")
    with pytest.raises(ConfigInvalid) as info:
        load_config(tmp_path / "bad.toml")
    text = str(info.value)
    for fragment in ("venues.COMEX.fix.port", "venues.COMEX.fix.version", "venues.COMEX.fix.sender_comp_id",
                     "venues.COMEX.fix.target_comp_id", "missing required key", "venues.COMEX.fix.typo"):
        assert fragment in text, fragment


def test_fix_venue_cross_checks_name_key_value_and_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XMC_TEST_NO_SUCH_PASSWORD", raising=False)
    (tmp_path / "bad.toml").write_text(BASE + """
[venues.COMEX]
kind = "fix"
[venues.COMEX.fix]
port = 17411
sender_comp_id = "XMC"
target_comp_id = "COMEX"
password_env = "XMC_TEST_NO_SUCH_PASSWORD"
symbols = { NOPE = "N" }
market_orders = false
[actors.ingest_comex]
kind = "ingest"
venue = "COMEX"
""")
    with pytest.raises(ConfigInvalid) as info:
        load_config(tmp_path / "bad.toml")
    errors = {e.path: e for e in info.value.errors}
    assert "XMC_TEST_NO_SUCH_PASSWORD" in str(errors["venues.COMEX.fix.password_env"].value)
    assert "not set" in errors["venues.COMEX.fix.password_env"].why
    assert "venues.COMEX.fix.symbols.NOPE" in errors
    assert "rollback_far_ticks" in errors["pairs.au_gc.rollback_far_ticks"].why
    assert "[fix.md]" in errors["actors.ingest_comex.venue"].why


def test_fix_password_is_never_in_the_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMC_TEST_PASSWORD", "hunter2-secret")
    (tmp_path / "ok.toml").write_text(BASE + """
[venues.COMEX]
kind = "fix"
[venues.COMEX.fix]
port = 17411
sender_comp_id = "XMC"
target_comp_id = "COMEX"
password_env = "XMC_TEST_PASSWORD"
password_file = "/nonexistent"
""")
    with pytest.raises(ConfigInvalid) as info:
        load_config(tmp_path / "ok.toml")
    assert "hunter2-secret" not in str(info.value)
    assert "not both" in str(info.value)
