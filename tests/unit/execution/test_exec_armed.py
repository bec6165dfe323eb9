"""Armed entries (`execution.armed`): a signal sent from its armed entry leaves exactly the
log the ordinary path writes, its orders leave only after their records are written, and
every check still applies (what does not fit goes the ordinary way, which decides)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import msgspec
import pytest

from bench.executor import demo_engine, fill_all
from bus.messages import RiskLevel, Side
from configs.schema import Config
from execution.armed import FastPathDiverged
from execution.engine import Effect, Emit, EngineStepFailed, ExecutionEngine, Log, SendWire
from execution.wal import OrderSent, TradeOpened, WriteAheadLog, read_records
from tests.unit.execution.test_exec_engine import MS, T0, demo_config, make_signal


@pytest.fixture(scope="module")
def demo() -> Config:
    return demo_config()


def acts(effects: list[Effect]) -> list[Effect]:
    return [e for e in effects if not isinstance(e, Log)]


def test_armed_signals_leave_the_same_log_and_effects_as_the_ordinary_path(demo: Config, tmp_path: Path) -> None:
    armed, plain = demo_engine(tmp_path / "armed.wal"), demo_engine(tmp_path / "plain.wal")
    now = T0
    for i in range(40):
        now += 10 * MS
        pair = ("au_gc", "hsi_mhi")[i % 2]
        direction = (Side.BUY, Side.SELL)[i // 2 % 2]
        units = 2 if i % 7 == 3 else 1  # another size than armed: the ordinary path on both
        sig = make_signal(demo, pair, f"s{i}", now, direction=direction, units=units, closing=i % 5 == 4)
        armed.rehearse(now)
        got = [fill_all(eng, eng.on_signal(sig, now), now) for eng in (armed, plain)]
        assert acts(got[0]) == acts(got[1])
    assert armed.stats["armed_sent"] > 25 and plain.stats["armed_sent"] == 0
    armed.wal.close()
    plain.wal.close()
    # each armed entry is one small record that reads back as the ordinary path's records
    assert read_records(tmp_path / "armed.wal")[0] == read_records(tmp_path / "plain.wal")[0]
    assert (tmp_path / "armed.wal").stat().st_size < (tmp_path / "plain.wal").stat().st_size


def test_armed_orders_leave_only_after_their_records_are_written(demo: Config, tmp_path: Path) -> None:
    path = tmp_path / "e.wal"
    eng = demo_engine(path)
    eng.rehearse(T0)
    seen: list[str] = []

    def send(wire: list[Effect]) -> None:
        logged = {r.order.cl_ord_id for r in read_records(path)[0] if isinstance(r, OrderSent)}
        for e in wire:
            assert isinstance(e, SendWire)
            parent = e.order.cl_ord_id.split("/")[0]
            assert parent in logged, f"{e.order.cl_ord_id} sent before its record"
            seen.append(e.order.cl_ord_id)

    rest = eng.on_signal(make_signal(demo, "au_gc", "s1", T0), T0, send=send)
    assert eng.stats["armed_sent"] == 1
    assert seen and not [e for e in rest if isinstance(e, SendWire)]
    assert [type(e).__name__ for e in acts(rest)] == ["Emit"]  # the trade's first event, after the orders
    assert eng.open and eng.head == 1


def test_an_input_disarms_the_entries_until_they_are_armed_again(demo: Config, tmp_path: Path) -> None:
    eng = demo_engine(tmp_path / "e.wal")
    eng.arm(T0)
    assert len(eng.armed) == 8  # 2 pairs x 2 directions x opening/closing
    effects = eng.on_signal(make_signal(demo, "au_gc", "s1", T0), T0)
    assert eng.armed == ()  # the trade moved the generation
    eng.arm(T0)
    assert {k[0] for k in eng.armed} == {"hsi_mhi"}  # au_gc has a trade open: busy
    fill_all(eng, effects, T0 + MS)
    eng.arm(T0 + MS)
    assert len(eng.armed) == 8


def test_reduce_only_arms_closing_entries_only_and_halted_none(demo: Config, tmp_path: Path) -> None:
    eng = demo_engine(tmp_path / "e.wal")
    eng.level = RiskLevel.REDUCE_ONLY
    eng.arm(T0)
    assert eng.armed and all(closing for _, _, closing in eng.armed)
    eng.level = RiskLevel.HALTED
    eng.arm(T0)
    assert eng.armed == ()


@pytest.mark.parametrize("case", ["other_size", "expired", "venue_down", "price_nan", "rate_full", "notional"])
def test_a_signal_the_armed_entry_does_not_cover_goes_the_ordinary_way(demo: Config, tmp_path: Path, case: str) -> None:
    eng = demo_engine(tmp_path / "e.wal")
    now = T0
    sig = make_signal(demo, "au_gc", "s1", now, units=2 if case == "other_size" else 1,
                      expiry_ns=now - 1 if case == "expired" else None, closing=case == "notional")
    if case == "price_nan":
        sig = msgspec.structs.replace(sig, legs=(msgspec.structs.replace(sig.legs[0], limit_px=float("nan")), sig.legs[1]))
    if case == "notional":  # 3 lots x 1000 g x 200,000 CNY / 7.2 is past the 50M USD order notional limit (closing:
        # the margin what-if, which would refuse it first, never judges a reduction)
        sig = msgspec.structs.replace(sig, legs=(msgspec.structs.replace(sig.legs[0], limit_px=200_000.0), sig.legs[1]))
    if case == "rate_full":
        eng.limits._sent.extend([now] * int(eng.limits.cfg.max_orders_per_s - 1))
    eng.arm(now)
    effects = eng.on_signal(sig, now, ("COMEX",) if case == "venue_down" else ())
    assert eng.stats["armed_sent"] == 0
    first = next(e.event.body for e in effects if isinstance(e, Emit))
    if case == "other_size":
        assert first.trade_id  # the ordinary path opens it
    elif case in ("notional", "rate_full"):
        assert first.trade_id and eng.stats["denied"] >= 1  # opened, its order denied by the limit
    else:
        assert first.state.value == "REJECTED", first


def test_a_diverging_ordinary_path_stops_the_engine_and_the_log_holds_what_was_sent(demo: Config,
                                                                                     tmp_path: Path) -> None:
    path = tmp_path / "e.wal"
    eng = demo_engine(path)
    eng.arm(T0)
    key = ("au_gc", Side.BUY, False)
    entry = eng._armed[key]
    (a1, q1), (a2, q2) = entry.parts[0]  # au's split across cn's two sub-accounts, the other way round
    eng._armed[key] = dataclasses.replace(entry, parts=(((a1, q2), (a2, q1)), *entry.parts[1:]))
    sent: list[Effect] = []
    with pytest.raises(FastPathDiverged, match="EXEC_FAST_PATH_DIVERGED: record="):
        eng.on_signal(make_signal(demo, "au_gc", "s1", T0), T0, send=sent.extend)
    assert [e for e in sent if isinstance(e, SendWire)]  # the orders were out when it was found
    eng.wal.close()
    records = read_records(path)[0]
    assert isinstance(records[0], TradeOpened)
    again = ExecutionEngine(demo, WriteAheadLog(path))  # the restart: the trade from the log, its orders in doubt
    assert len(again.open) == 1 and {o.cl_ord_id for o in again.recovered.in_doubt} == {"T000001.a1", "T000001.b1"}


def test_a_send_that_fails_after_the_armed_write_leaves_the_trade_in_memory_as_in_the_log(demo: Config,
                                                                                           tmp_path: Path) -> None:
    path = tmp_path / "e.wal"
    eng = demo_engine(path)
    eng.arm(T0)

    def send(wire: list[Effect]) -> None:
        raise OSError("the session's socket is gone")

    with pytest.raises(OSError):
        eng.on_signal(make_signal(demo, "au_gc", "s1", T0), T0, send=send)
    assert eng.open == {"T000001"} and eng.head == 1  # bookkept as the log says
    eng.wal.close()
    again = ExecutionEngine(demo, WriteAheadLog(path))  # and a restart agrees: its orders are in doubt
    assert again.open == eng.open and again.stream == eng.stream


@pytest.mark.parametrize("armed", [True, False])
def test_an_input_failing_halfway_stops_the_engine_and_the_restart_agrees_with_the_log(
        demo: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, armed: bool) -> None:
    """A bug after the trade is registered (its actions worked out, nothing committed) must not
    leave memory ahead of the log: the engine stops; armed, the orders were out and the log
    has them (in doubt after the restart); unarmed, nothing was written or sent."""
    path = tmp_path / "e.wal"
    eng = demo_engine(path)
    if armed:
        eng.arm(T0)
    run = eng._run

    def buggy(*args: object) -> None:
        run(*args)
        raise RuntimeError("a bug")

    monkeypatch.setattr(eng, "_run", buggy)
    sent: list[Effect] = []
    with pytest.raises(EngineStepFailed, match=r"^EXEC_STEP_FAILED: input=signal error=RuntimeError\('a bug'\)"):
        eng.on_signal(make_signal(demo, "au_gc", "s1", T0), T0, send=sent.extend)
    assert bool(sent) is armed
    eng.wal.close()
    again = ExecutionEngine(demo, WriteAheadLog(path))
    if armed:
        assert again.open == {"T000001"}
        assert {o.cl_ord_id for o in again.recovered.in_doubt} == {"T000001.a1", "T000001.b1"}
    else:
        assert not again.open and again.head == 0 and len(read_records(path)[0]) == 0
