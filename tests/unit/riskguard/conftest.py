from __future__ import annotations

import re
from pathlib import Path

import pytest

from configs.load import load_config
from configs.schema import Config

DEMO = Path(__file__).resolve().parents[3] / "configs" / "demo.toml"
REASON = re.compile(r"^[A-Z]+_[A-Z_]+: [a-z_]+=\S+( [a-z_]+=\S+)*$")


@pytest.fixture(scope="session")
def demo() -> Config:
    return load_config(DEMO)


@pytest.fixture(scope="session")
def reason_format() -> re.Pattern[str]:
    """CATEGORY_CONDITION: key=value [key=value ...]"""
    return REASON
