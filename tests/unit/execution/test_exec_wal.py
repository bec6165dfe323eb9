"""The write-ahead log: framing, torn tails, and recovery of open pair trades."""

from __future__ import annotations

from pathlib import Path

import pytest
from exec_support import MS, T0, Harness, fill, params, queries, reject, sends, signal, status, unknown

from bus.messages import OrderPurpose
from execution.ids import TradeIds
from execution.pairtrade import PairTrade, TradeState
from execution.wal import (
    AHEAD,
    MAGIC,
    Halted,
    OrderSent,
    ReportApplied,
    Resumed,
    TimerFired,
    TradeClosed,
    TradeOpened,
    WalWriteFailed,
    WriteAheadLog,
    compact,
    encode_frame,
    read_records,
    recover,
)


def _records() -> list:
    sig, p = signal(), params()
    trade = PairTrade("T000003", sig, p)
    a1, b1 = sends(trade.start(T0))
    return [
        TradeOpened(trade_id="T000003", signal=sig, params=p, now_ns=T0),
        OrderSent(order=a1),
        OrderSent(order=b1),
        ReportApplied(trade_id="T000003", report=fill(a1), now_ns=T0 + 1),
        TimerFired(trade_id="T000003", now_ns=T0 + 2),
        Halted(now_ns=T0 + 3, reason="RISK_HALT: level=HALTED"),
        Resumed(now_ns=T0 + 4),
        TradeClosed(trade_id="T000003", state="ROLLED_BACK", now_ns=T0 + 5),
    ]


def test_wal_round_trip_returns_every_record_in_order(tmp_path: Path) -> None:
    path = tmp_path / "state" / "exec.wal"  # the directory is created on open
    recs = _records()
    with WriteAheadLog(path, fsync=True) as wal:
        wal.append(recs[0])
        wal.append_many(recs[1:])
    got, scan = read_records(path)
    assert got == recs
    assert scan.reason == "" and scan.records == len(recs) and scan.dropped_bytes == 0
    with WriteAheadLog(path) as again:
        assert again.records == recs and again.scan.reason == ""


@pytest.mark.parametrize("cut", [1, 5, 9])
def test_wal_torn_tail_is_reported_set_aside_and_truncated(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "exec.wal"
    recs = _records()
    with WriteAheadLog(path) as wal:
        wal.append_many(recs)
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size - cut)  # the crash cut the last record short
    with WriteAheadLog(path) as wal:
        assert wal.records == recs[:-1]
        assert wal.scan.reason.startswith("WAL_TORN_TAIL: ")
        assert wal.scan.dropped_bytes > 0
        wal.append(recs[-1])
    side = list(tmp_path.glob("exec.wal.torn-*"))
    assert len(side) == 1 and side[0].stat().st_size == wal.scan.dropped_bytes
    got, scan = read_records(path)
    assert got == recs and scan.reason == ""


def test_wal_corrupt_crc_in_last_record_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "exec.wal"
    recs = _records()
    with WriteAheadLog(path) as wal:
        wal.append_many(recs)
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF
    path.write_bytes(bytes(data))
    with WriteAheadLog(path) as wal:
        assert wal.records == recs[:-1]
        assert "why=crc" in wal.scan.reason


def test_wal_foreign_file_is_set_aside_not_crashed_on(tmp_path: Path) -> None:
    path = tmp_path / "exec.wal"
    path.write_bytes(b"this is not a write-ahead log")
    with WriteAheadLog(path) as wal:
        assert wal.records == [] and wal.scan.reason.startswith("WAL_BAD_HEADER")
    assert path.read_bytes() == MAGIC
    assert (tmp_path / "exec.wal.torn-0").read_bytes() == b"this is not a write-ahead log"


def test_wal_torn_header_starts_a_fresh_log(tmp_path: Path) -> None:
    path = tmp_path / "exec.wal"
    path.write_bytes(MAGIC[:3])
    with WriteAheadLog(path) as wal:
        assert wal.scan.reason.startswith("WAL_TORN_HEADER")
        wal.append(_records()[0])
    assert len(read_records(path)[0]) == 1


def test_wal_open_writer_keeps_a_zero_fill_that_reads_as_a_clean_end(tmp_path: Path) -> None:
    """What a kill -9 leaves: the frames, then the writer's allocated zeros; nothing is torn."""
    path, recs = tmp_path / "exec.wal", _records()
    with WriteAheadLog(path) as wal:
        wal.append_many(recs[:3])
        killed = path.read_bytes()  # the file as the page cache holds it while the writer runs
        assert len(killed) > wal.end and not killed[wal.end:].strip(b"\0")
    (tmp_path / "killed.wal").write_bytes(killed)
    with WriteAheadLog(tmp_path / "killed.wal") as again:
        assert again.records == recs[:3] and again.scan.reason == "" and again.scan.dropped_bytes == 0
        again.append_many(recs[3:])  # the next frame goes right after the last one
    assert read_records(tmp_path / "killed.wal")[0] == recs
    assert (tmp_path / "killed.wal").stat().st_size == path.stat().st_size + sum(
        len(encode_frame(r)) for r in recs[3:])  # closed: the zero fill is cut off


def test_wal_frame_cut_short_inside_the_zero_fill_is_set_aside_without_the_fill(tmp_path: Path) -> None:
    path, recs = tmp_path / "exec.wal", _records()
    with WriteAheadLog(path) as wal:
        wal.append_many(recs[:2])
        end = wal.end
    frame = encode_frame(recs[2])
    torn = path.read_bytes() + frame[:len(frame) // 2] + bytes(AHEAD)  # killed halfway through the copy
    path.write_bytes(torn)
    with WriteAheadLog(path) as wal:
        assert wal.records == recs[:2] and wal.scan.reason.startswith(f"WAL_TORN_TAIL: offset={end} ")
    assert (tmp_path / f"exec.wal.torn-{end}").read_bytes() == frame[:len(frame) // 2].rstrip(b"\0")
    assert read_records(path)[0] == recs[:2]


def test_wal_grows_past_its_allocation_and_keeps_every_record(tmp_path: Path) -> None:
    path, recs = tmp_path / "exec.wal", _records()
    rounds = AHEAD // sum(len(encode_frame(r)) for r in recs) + 2
    with WriteAheadLog(path, fsync=True) as wal:
        for _ in range(rounds):
            for r in recs:
                wal.append(r)
        assert wal.end > AHEAD
    got, scan = read_records(path)
    assert got == recs * rounds and scan.reason == "" and path.stat().st_size == scan.valid_bytes


def test_wal_ready_between_appends_changes_no_byte(tmp_path: Path) -> None:
    """`ready` faults the next pages in by writing the bytes they hold: the log reads the same."""
    recs = _records() * 40  # past a page boundary several times
    with WriteAheadLog(tmp_path / "plain.wal") as plain:
        plain.append_many(recs)
    with WriteAheadLog(tmp_path / "ready.wal") as wal:
        for r in recs:
            wal.ready()
            wal.append(r)
            wal.ready()
    assert (tmp_path / "ready.wal").read_bytes() == (tmp_path / "plain.wal").read_bytes()


def test_wal_second_writer_is_refused_with_wal_locked(tmp_path: Path) -> None:
    path = tmp_path / "exec.wal"
    with WriteAheadLog(path) as wal:
        wal.append(_records()[0])
        with pytest.raises(WalWriteFailed, match=r"^WAL_LOCKED: path=\S+exec\.wal "):
            WriteAheadLog(path)
        wal.append(_records()[1])  # the first writer is untouched
    assert read_records(path)[0] == _records()[:2]
    with WriteAheadLog(path) as again:  # closed: free again
        assert len(again.records) == 2


def _scripted_trade(path: Path) -> tuple[Harness, list[tuple[int, dict]]]:
    """A trade driven through rejects, a timeout and a rollback; (WAL size, snapshot) per step."""
    h = Harness.open(path, "T000042", signal(qty_a=2, qty_b=2), params(), T0)
    marks = [(h.wal.end, h.trade.snapshot())]
    a1, b1 = h.sent
    steps = [
        lambda: h.report(fill(a1, cum=1, leaves=1), T0 + 1 * MS),
        lambda: h.report(reject(b1), T0 + 2 * MS),
        lambda: h.timer(T0 + 100 * MS),                       # a1 and b2 in doubt
        lambda: h.report(status(a1, cum=2, leaves=0), T0 + 110 * MS),
        lambda: h.report(unknown(h.sent[-1]), T0 + 120 * MS),  # b2 never arrived: resubmit b3
        lambda: h.report(reject(h.sent[-1]), T0 + 130 * MS),  # b3 rejected: budget spent, roll back a
        lambda: h.report(fill(h.sent[-1], cum=1, leaves=0), T0 + 140 * MS),  # unwind fills 1 of 2
    ]
    for step in steps:
        step()
        marks.append((h.wal.end, h.trade.snapshot()))
    return h, marks


def test_recovery_after_crash_at_every_step_matches_the_uninterrupted_machine(tmp_path: Path) -> None:
    path = tmp_path / "exec.wal"
    h, marks = _scripted_trade(path)
    h.wal.close()
    assert h.trade.state is TradeState.ROLLING_BACK
    full = path.read_bytes()
    for k, (size, snap) in enumerate(marks):
        crashed = tmp_path / f"crash-{k}.wal"
        crashed.write_bytes(full[:size])
        state = recover(crashed)
        trade = state.trades["T000042"]
        assert trade.snapshot() == snap, f"step {k}"
        assert {o.cl_ord_id for o in state.in_doubt} == {o.cl_ord_id for o in trade.live_orders()}
        assert state.to_send == ()
        assert state.next_trade_n == 43


def test_recovery_lists_in_doubt_orders_and_resume_queries_them(tmp_path: Path) -> None:
    path = tmp_path / "exec.wal"
    h, _ = _scripted_trade(path)
    h.wal.close()
    state = recover(path)
    live = [o.cl_ord_id for o in state.trades["T000042"].live_orders()]
    assert live == ["T000042.a3"] and [o.cl_ord_id for o in state.in_doubt] == live  # the second unwind
    with WriteAheadLog(path) as wal:
        wal.append(Resumed(now_ns=T0 + 5000 * MS))
        acts = [a for _, a in state.resume(T0 + 5000 * MS)]
        assert queries(acts) == live and sends(acts) == []
        trade = state.trades["T000042"]
        assert trade.instruments_in_doubt() == frozenset({"au"})
        # the log replays to the same place, Resumed record included
        assert recover(path).trades["T000042"].snapshot() == trade.snapshot()
        # the venue says the unwind filled while we were down: the trade settles, no fill lost
        answer = status(state.in_doubt[0], cum=1, leaves=0)
        wal.append(ReportApplied(trade_id="T000042", report=answer, now_ns=T0 + 5001 * MS))
        trade.on_report(answer, T0 + 5001 * MS)
    assert trade.state is TradeState.ROLLED_BACK
    assert trade.legs_view()[0].net_qty == 0
    final = recover(path)
    assert final.trades == {} and final.closed == {"T000042": "ROLLED_BACK"}


def test_crash_after_logging_an_input_before_sending_lists_the_orders_to_send(tmp_path: Path) -> None:
    path = tmp_path / "exec.wal"
    h = Harness.open(path, "T000001", signal(), params(), T0)
    a1, b1 = h.sent
    h.report(fill(a1), T0 + 1)
    # the executor logs the reject, the machine decides to resubmit b, and the process dies
    h.wal.append(ReportApplied(trade_id="T000001", report=reject(b1), now_ns=T0 + 2))
    wanted = sends(h.trade.on_report(reject(b1), T0 + 2))
    h.wal.close()
    state = recover(path)
    assert [o.cl_ord_id for o in state.to_send] == [o.cl_ord_id for o in wanted] == ["T000001.b2"]
    assert state.in_doubt == ()
    with WriteAheadLog(path) as wal:
        wal.append(Resumed(now_ns=T0 + 10 * MS))
        acts = [a for _, a in state.resume(T0 + 10 * MS)]
    resent = sends(acts)
    assert [o.cl_ord_id for o in resent] == ["T000001.b2"] and resent[0].sent_ns == T0 + 10 * MS
    assert resent[0].price == wanted[0].price and resent[0].purpose is OrderPurpose.RESUBMIT


def test_crash_after_order_logged_but_never_sent_resubmits_under_a_new_id(tmp_path: Path) -> None:
    path = tmp_path / "exec.wal"
    h = Harness.open(path, "T000001", signal(), params(), T0)  # both OrderSent logged; assume b1 never left
    h.report(fill(h.sent[0]), T0 + 1)
    h.wal.close()
    state = recover(path)
    assert [o.cl_ord_id for o in state.in_doubt] == ["T000001.b1"]
    with WriteAheadLog(path) as wal:
        wal.append(Resumed(now_ns=T0 + 10 * MS))
        state.resume(T0 + 10 * MS)
    trade = state.trades["T000001"]
    acts = trade.on_report(unknown(state.in_doubt[0]), T0 + 11 * MS)
    assert [o.cl_ord_id for o in sends(acts)] == ["T000001.b2"]


def test_recovery_skips_settled_trades_and_resumes_trade_ids(tmp_path: Path) -> None:
    path = tmp_path / "exec.wal"
    done = Harness.open(path, "X-000007", signal(), params(), T0)
    for o in list(done.sent):
        done.report(fill(o), T0 + 1)
    assert done.trade.state is TradeState.COMPLETED
    done.wal.append(TradeClosed(trade_id="X-000007", state="COMPLETED"))
    done.wal.close()
    state = recover(path)
    assert state.trades == {} and state.closed == {"X-000007": "COMPLETED"}
    ids = TradeIds("X-", state.next_trade_n)
    assert ids.next() == "X-000008"


def test_recovery_uses_current_params_when_the_record_has_none(tmp_path: Path) -> None:
    path = tmp_path / "exec.wal"
    with WriteAheadLog(path) as wal:
        wal.append(TradeOpened(trade_id="T000001", signal=signal(), now_ns=T0))
    assert recover(path).errors[0].startswith("WAL_NO_PARAMS")
    state = recover(path, {"au_gc": params()})
    assert list(state.trades) == ["T000001"] and [o.cl_ord_id for o in state.to_send] == ["T000001.a1", "T000001.b1"]


def test_compact_keeps_open_trades_and_the_id_counter(tmp_path: Path) -> None:
    path = tmp_path / "exec.wal"
    done = Harness.open(path, "T000001", signal(), params(), T0)
    for o in list(done.sent):
        done.report(fill(o), T0 + 1)
    done.wal.close()
    h, _ = _scripted_trade(tmp_path / "other.wal")
    h.wal.close()
    # one log with a settled trade followed by an open one
    with WriteAheadLog(path) as wal:
        wal.append_many(read_records(tmp_path / "other.wal")[0])
    before = recover(path)
    n_before = len(read_records(path)[0])
    compact(path)
    kept, scan = read_records(path)
    after = recover(path)
    assert scan.reason == "" and len(kept) < n_before
    assert not any(getattr(r, "trade_id", "") == "T000001" for r in kept)
    assert list(after.trades) == ["T000042"] == list(before.trades)
    assert after.trades["T000042"].snapshot() == before.trades["T000042"].snapshot()
    assert after.next_trade_n == before.next_trade_n == 43


def test_compact_of_only_settled_trades_keeps_the_next_trade_number(tmp_path: Path) -> None:
    path = tmp_path / "exec.wal"
    done = Harness.open(path, "T000009", signal(), params(), T0)
    for o in list(done.sent):
        done.report(fill(o), T0 + 1)
    done.wal.close()
    compact(path)
    kept, _ = read_records(path)
    state = recover(path)
    assert len(kept) == 1 and state.trades == {} and state.next_trade_n == 10
