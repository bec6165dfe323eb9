from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from configs.load import load_config
from configs.schema import Config

DEMO = Path(__file__).resolve().parents[3] / "configs" / "demo.toml"
REASON = re.compile(r"^[A-Z]+_[A-Z_]+: [a-z_]+=\S+( [a-z_]+=\S+)*$")


# the hand-computed expectations assume these balances, whatever the demo is tuned to
BALANCES = {"cn": 2_500_000.0, "hk": 4_000_000.0}


@pytest.fixture(scope="session")
def demo() -> Config:
    cfg = load_config(DEMO)
    accounts = {k: msgspec.structs.replace(a, balance=BALANCES[k]) for k, a in cfg.accounts.items()}
    risk = msgspec.structs.replace(cfg.risk, margin_call_grace_ms=0.0)  # these tests check the call itself
    return msgspec.structs.replace(cfg, accounts=accounts, risk=risk)


@pytest.fixture(scope="session")
def reason_format() -> re.Pattern[str]:
    """CATEGORY_CONDITION: key=value [key=value ...]"""
    return REASON
