"""Fixtures of the feeds tests (builders live in feeds_support.py: conftest modules share one name)."""

from __future__ import annotations

import pytest

from configs.schema import SimVenueCfg


@pytest.fixture
def quiet_cfg() -> SimVenueCfg:
    """No randomness, 1 ms ack, 2 ms to the matching engine, no disconnects."""
    return SimVenueCfg(ack_latency_ms=1.0, fill_latency_ms=2.0)
