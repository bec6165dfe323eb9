from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bus.messages import FxRate, Quote
from configs.schema import InstrumentCfg, ReplayCfg
from feeds.adapter import FeedStats, PacedFeed
from feeds.book import TopOfBook
from feeds.replay import CsvReplay, DbnReplay, ReplayError, open_replay, replay_feed

DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "databento"
BBO1M = DATA / "ESZ5-ESH6.glbx-mdp3.bbo-1m.2025-12-19T1425.dbn.zst"
S = 1_000_000_000


class ListAdapter:
    """An in-memory adapter over fixed due times (seconds)."""

    def __init__(self, times_s: list[int]) -> None:
        self.venue = "V"
        self.path = "<memory>"
        self.stats = FeedStats()
        self.times = times_s

    def records(self) -> Iterator[tuple[int, TopOfBook]]:
        for i, t in enumerate(self.times):
            yield t * S, TopOfBook(venue="V", instrument="I", symbol="I", bid=1.0, ask=2.0, bid_size=1, ask_size=1,
                                   ts_ns=t * S, seq=i)


def test_paced_fast_releases_everything_now_in_bounded_batches() -> None:
    feed = PacedFeed(ListAdapter([10, 20, 30, 40, 50]), pace="fast")
    assert len(feed.poll(0, max_records=3)) == 3
    assert len(feed.poll(0, max_records=3)) == 2
    assert feed.done and feed.next_due_ns() is None and feed.poll(0) == []


def test_paced_recorded_releases_on_the_recorded_clock_scaled_by_speed() -> None:
    feed = PacedFeed(ListAdapter([100, 101, 103]), pace="recorded", speed=2.0)
    start = 7 * S
    assert [q.seq for q in feed.poll(start)] == [0]
    assert feed.next_due_ns() == start + S // 2
    assert feed.poll(start + S // 2 - 1) == []
    assert [q.seq for q in feed.poll(start + S // 2)] == [1]
    assert feed.next_due_ns() == start + 3 * S // 2
    assert [q.seq for q in feed.poll(start + 10 * S)] == [2]
    assert feed.done


def test_paced_loop_restarts_with_time_moving_forward() -> None:
    feed = PacedFeed(ListAdapter([0, 1, 2]), pace="fast", loop=True)
    got = feed.poll(0, max_records=7)
    assert [q.ts_ns // S for q in got] == [0, 1, 2, 3, 4, 5, 6]
    assert feed.loops == 2 and not feed.done


def test_paced_loop_over_an_empty_recording_ends() -> None:
    feed = PacedFeed(ListAdapter([]), loop=True)
    assert feed.done and feed.poll(0) == []


def test_paced_rejects_non_positive_speed() -> None:
    with pytest.raises(ValueError, match="REPLAY_SPEED_INVALID"):
        PacedFeed(ListAdapter([1]), speed=0.0)


def test_open_replay_builds_the_configured_adapter_relative_to_base_dir(tmp_path: Path) -> None:
    assert isinstance(open_replay("CME", ReplayCfg(path=str(BBO1M))), DbnReplay)
    (tmp_path / "q.csv").write_text("ts_event,symbol,bid_px,ask_px,bid_sz,ask_sz\n1,ES,1,2,3,4\n")
    es = InstrumentCfg(venue="CME", symbol="ESZ6", tick=0.25, multiplier=50.0, currency="USD")
    rp = open_replay("CME", ReplayCfg(path="q.csv", format="csv", symbols={"ES": "es"}), tmp_path, {"es": es})
    assert isinstance(rp, CsvReplay)
    assert [(q.instrument, q.symbol, q.fx) for _, q in rp.records()] == [("es", "ESZ6", False)]
    with pytest.raises(ReplayError):
        open_replay("CME", ReplayCfg(path="missing.dbn.zst"), tmp_path)


def test_replay_feed_at_recorded_pace_spreads_bbo_minutes() -> None:
    feed = replay_feed("CME", ReplayCfg(path=str(BBO1M), pace="recorded", speed=60.0))
    first = feed.poll(0)
    assert len(first) == 2  # both instruments' first minute share a ts_recv
    assert feed.next_due_ns() == S  # one recorded minute at 60x
    assert len(feed.poll(S)) == 2


def test_top_of_book_converts_to_bus_messages() -> None:
    q = TopOfBook(venue="FX", instrument="USDCNH", symbol="USDCNH", bid=7.1, ask=7.2, bid_size=1, ask_size=2,
                  ts_ns=5, seq=9, fx=True)
    fx = q.to_message(recv_ns=11)
    assert isinstance(fx, FxRate) and (fx.pair, fx.bid, fx.ask, fx.exch_ts_ns, fx.recv_ns) == ("USDCNH", 7.1, 7.2, 5, 11)
    quote = q.to_quote(recv_ns=11)
    assert isinstance(quote, Quote) and (quote.symbol, quote.venue_seq, quote.exch_ts_ns) == ("USDCNH", 9, 5)
    au = TopOfBook(venue="SHFE", instrument="au", symbol="au2612", bid=1, ask=2, bid_size=1, ask_size=1, ts_ns=1)
    assert au.to_message(0).symbol == "au2612"  # type: ignore[union-attr]
