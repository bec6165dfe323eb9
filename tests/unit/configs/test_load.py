"""Config loading: the demo is valid; a bad config names every error at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.load import ConfigInvalid, load_config
from configs.units import unit_factor

ROOT = Path(__file__).resolve().parents[3]


def test_demo_config_is_valid() -> None:
    cfg = load_config(ROOT / "configs" / "demo.toml")
    assert set(cfg.pairs) == {"au_gc", "hsi_mhi"}
    assert cfg.instruments["au"].tick == 0.02  # from the catalogue


def test_invalid_config_names_every_error_with_path_value_and_why(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(
        """
include = ["%s"]
[run]
seed = "seven"
heartbeat_s = -1
[venues.SHFE]
kind = "sim"
typo_key = 1
[instruments.au]
sim = { start = 500.0 }
[pairs.p]
leg_a = "au"
leg_b = "NOPE"
entry = 1.0
exit = 2.0
[accounts.cn]
currency = "CNY"
balance = 1.0
venues = ["SHFE"]
[actors.x]
kind = "teleporter"
"""
        % (ROOT / "configs" / "instruments.toml")
    )
    with pytest.raises(ConfigInvalid) as info:
        load_config(tmp_path / "bad.toml")
    text = str(info.value)
    for fragment in ("run.seed", "'seven'", "run.heartbeat_s", "venues.SHFE.typo_key", "unknown key", "actors.x.kind"):
        assert fragment in text, fragment
    assert len(info.value.errors) >= 4


def test_cross_reference_errors_are_all_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(
        """
include = ["%s"]
[venues.SHFE]
[instruments.au]
sim = { start = 500.0 }
[pairs.p]
leg_a = "au"
leg_b = "NOPE"
entry = 1.0
exit = 2.0
[accounts.cn]
currency = "CNY"
balance = 1.0
venues = ["SHFE", "LME"]
[actors.i]
kind = "ingest"
venue = "MOON"
"""
        % (ROOT / "configs" / "instruments.toml")
    )
    with pytest.raises(ConfigInvalid) as info:
        load_config(tmp_path / "bad.toml")
    paths = {e.path for e in info.value.errors}
    assert {"pairs.p.leg_b", "pairs.p.exit", "accounts.cn.venues[1]", "actors.i.venue", "accounts.cn.currency"} <= paths


def test_missing_file_and_broken_toml_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigInvalid, match="file not found"):
        load_config(tmp_path / "nope.toml")
    (tmp_path / "broken.toml").write_text("[run\nseed=1")
    with pytest.raises(ConfigInvalid, match="not valid TOML"):
        load_config(tmp_path / "broken.toml")


def test_unit_factor_converts_per_ounce_to_per_gram_and_refuses_mixed_groups() -> None:
    assert unit_factor("oz", "g") == pytest.approx(1 / 31.1034768)
    assert unit_factor("g", "oz") == pytest.approx(31.1034768)
    assert unit_factor("bbl", "g") is None


def test_lockstep_with_a_replay_feed_and_a_bad_start_names_both_errors(tmp_path: Path) -> None:
    (tmp_path / "ls.toml").write_text(
        f"""
include = ["{ROOT / "configs" / "demo.toml"}"]
[run.lockstep]
enabled = true
start_utc = "yesterday"
[venues.CME]
kind = "replay"
replay = {{ path = "{ROOT / "configs" / "demo.toml"}", format = "csv" }}
[actors.ingest_cme]
kind = "ingest"
venue = "CME"
"""
    )
    with pytest.raises(ConfigInvalid) as info:
        load_config(tmp_path / "ls.toml")
    found = {(e.path, e.value) for e in info.value.errors}
    assert ("run.lockstep.start_utc", "yesterday") in found
    assert ("actors.ingest_cme.venue", "CME") in found


def test_lockstep_demo_config_is_valid_and_starts_at_its_utc_time() -> None:
    from configs.load import lockstep_start_ns

    cfg = load_config(ROOT / "configs" / "lockstep.toml")
    assert cfg.run.lockstep.enabled and cfg.run.lockstep.steps > 0
    assert lockstep_start_ns("2026-01-05T02:00:00Z") == 1_767_578_400 * 10**9
