"""Trading hours, FX routing and the inventory ledger on their own."""

from __future__ import annotations

import pytest

from configs.hours import clock, is_open, parse_sessions
from signals.inventory import Inventory
from signals.pairs import fx_route

H = 3600 * 1_000_000_000
DAY = 19_000 * 24 * H


def test_empty_hours_is_always_open() -> None:
    assert is_open(parse_sessions([]), DAY + 5 * H)


def test_session_end_is_exclusive() -> None:
    s = parse_sessions(["01:00-02:30"])
    assert is_open(s, DAY + H)
    assert is_open(s, DAY + 2 * H + 29 * 60 * 10**9)
    assert not is_open(s, DAY + 2 * H + 30 * 60 * 10**9)
    assert not is_open(s, DAY + 59 * 60 * 10**9)


def test_session_ending_2359_runs_through_midnight() -> None:
    s = parse_sessions(["22:00-23:59"])
    assert is_open(s, DAY + 23 * H + 59 * 60 * 10**9 + 30 * 10**9)
    assert not is_open(s, DAY + 24 * H)


def test_session_crossing_midnight_wraps() -> None:
    s = parse_sessions(["21:00-02:30"])
    assert is_open(s, DAY + 23 * H) and is_open(s, DAY + H)
    assert not is_open(s, DAY + 3 * H)


def test_bad_hours_text_raises_with_reason() -> None:
    with pytest.raises(ValueError, match="HOURS_FORMAT: value='25:00-26:00'"):
        parse_sessions(["25:00-26:00"])


def test_clock_formats_utc_time_of_day() -> None:
    assert clock(DAY + 13 * H + 5 * 60 * 10**9 + 7 * 10**9) == "13:05:07"


def test_fx_route_multiplies_direct_and_divides_inverse_pairs() -> None:
    assert fx_route("USD", "CNY", {"USDCNY"}) == ("USDCNY", False)
    assert fx_route("CNY", "USD", {"USDCNY"}) == ("USDCNY", True)
    assert fx_route("HKD", "HKD", set()) == (None, False)
    with pytest.raises(ValueError, match="CONFIG_FX_MISSING: from=EUR to=CNY"):
        fx_route("EUR", "CNY", {"USDCNY"})


def test_inventory_done_releases_named_signal_and_moves_position() -> None:
    inv = Inventory([3])
    inv.add("p-1", 0, 1, False, 2, deadline_ns=100)
    assert inv.exposure_if_opened(0, 1, 1) == 3
    inv.done(0, 1, False, 2, "p-1")
    assert inv.position[0] == 2 and not inv.pending
    assert inv.exposure_if_opened(0, 1, 1) == 3
    assert inv.closable(0, -1) == 2 and inv.closable(0, 1) == 0


def test_inventory_done_without_id_releases_oldest_matching_signal() -> None:
    inv = Inventory([5])
    inv.add("p-1", 0, -1, False, 1, deadline_ns=100)
    inv.add("p-2", 0, -1, False, 1, deadline_ns=100)
    inv.done(0, -1, False, 1)
    assert list(inv.pending) == ["p-2"]
    assert inv.position[0] == -1


def test_inventory_unmatched_done_still_moves_position() -> None:
    inv = Inventory([5])
    inv.done(0, 1, False, 1, "gone")
    assert inv.unmatched == 1 and inv.position[0] == 1


def test_inventory_expire_releases_only_past_deadlines() -> None:
    inv = Inventory([5])
    inv.add("a", 0, 1, False, 1, deadline_ns=100)
    inv.add("b", 0, 1, False, 1, deadline_ns=200)
    assert inv.expire(99) == 0
    assert inv.expire(150) == 1
    assert list(inv.pending) == ["b"] and inv.expired == 1
