"""Book: storing quotes, FX rates and feed status into the kernel's arrays."""

from __future__ import annotations

from signals_helpers import fx_rate, make_cfg, quote

from bus.messages import InstrumentStatus
from signals.book import Book
from signals.kernels import TM_DIRTY, TM_RECV, TM_STALE, KernelState


def book() -> tuple[Book, KernelState]:
    cfg = make_cfg(fx=True)
    inst = cfg.active_instruments()
    st = KernelState(1, len(inst), 2)
    return Book(list(inst), inst, st), st


def test_quote_is_stored_in_its_row_and_marked_dirty() -> None:
    b, st = book()
    assert b.on_quote(quote("B", 1.0, 1.2, bid_size=3, ask_size=4, recv_ns=77)) == 1
    assert b.top("B") == (1.0, 1.2, 3.0, 4.0)
    assert st.tm[1, TM_RECV] == 77 and st.tm[1, TM_DIRTY] == 1
    assert b.top("A") is None


def test_fx_rate_is_found_by_pair_name() -> None:
    b, st = book()
    assert b.on_fx(fx_rate("USDCNY", 7.2)) == 2
    assert b.top("USDCNY")[:2] == (7.2, 7.2)
    assert b.on_fx(fx_rate("EURUSD", 1.1)) == -1
    assert b.unknown == 1


def test_second_quote_before_evaluation_counts_as_conflated() -> None:
    b, st = book()
    b.on_quote(quote("A", 1.0, 1.1))
    b.on_quote(quote("A", 1.0, 1.2))
    st.run(0)
    b.on_quote(quote("A", 1.0, 1.3))
    assert (b.quotes, b.conflated) == (3, 1)


def test_status_sets_and_clears_stale_flag() -> None:
    b, st = book()
    assert b.on_status(InstrumentStatus(venue="VA", symbol="A", stale=True, age_ms=5000.0)) == 0
    assert st.tm[0, TM_STALE] == 1 and b.stale("A")
    b.on_status(InstrumentStatus(venue="VA", symbol="A", stale=False, age_ms=0.0))
    assert not b.stale("A")
    assert b.on_status(InstrumentStatus(venue="VZ", symbol="Z", stale=True, age_ms=0.0)) == -1
