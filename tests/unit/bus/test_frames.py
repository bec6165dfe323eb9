"""Frame templates (bus.frames): a filled frame decodes as the codec's own frame would; shapes a
template cannot hold are refused at build with the field and the reason."""

from __future__ import annotations

import struct

import msgspec
import pytest
import zmq
from hypothesis import given, settings, strategies as st

from actors.trigger import SIGNAL_FIELDS
from bus.codec import Codec
from bus.frames import TemplateError, template
from bus.messages import Envelope, FxRate, Quote, Side, Signal, SignalLeg
from bus.pubsub import Publisher
from feeds.book import FX_FIELDS, QUOTE_FIELDS, TopOfBook
from helpers import inproc_pair, subscribed

ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
floats = st.floats(allow_nan=False, width=64)
ids = st.text(max_size=300)


def _signal(direction: Side = Side.BUY, closing: bool = False) -> Signal:
    legs = (SignalLeg(instrument="GC.COMEX", side=direction, qty=0, limit_px=0.0),
            SignalLeg(instrument="AU.SHFE", side=direction.opposite, qty=0, limit_px=0.0))
    return Signal(signal_id="", pair="AU_GC", direction=direction, closing=closing, legs=legs, spread=0.0, zscore=0.0,
                  expiry_ns=0, tick_recv_ns=0, signal_ns=0)


@settings(max_examples=300, deadline=None)
@given(seq=ints, ts=ints, sid=ids, qa=ints, pa=floats, qb=ints, pb=floats, spread=floats, z=floats, exp=ints,
       tick=ints, sig_ns=ints, step=ints, ev=ints, direction=st.sampled_from(Side), closing=st.booleans())
def test_signal_template_filled_with_any_values_decodes_as_the_codecs_frame(
        seq: int, ts: int, sid: str, qa: int, pa: float, qb: int, pb: float, spread: float, z: float, exp: int,
        tick: int, sig_ns: int, step: int, ev: int, direction: Side, closing: bool) -> None:
    codec = Codec()
    shape = _signal(direction, closing)
    t = template(codec, "sig.AU_GC", "trigger", 42, shape, SIGNAL_FIELDS)
    frame = t.frame(seq, ts, (sid, qa, pa, qb, pb, spread, z, exp, tick, sig_ns, step, ev))
    a, b = shape.legs
    want = Signal(signal_id=sid, pair="AU_GC", direction=direction, closing=closing,
                  legs=(SignalLeg(instrument=a.instrument, side=a.side, qty=qa, limit_px=pa),
                        SignalLeg(instrument=b.instrument, side=b.side, qty=qb, limit_px=pb)),
                  spread=spread, zscore=z, expiry_ns=exp, tick_recv_ns=tick, signal_ns=sig_ns, step=step, eval_ns=ev)
    env = Envelope(src="trigger", epoch=42, seq=seq, ts_ns=ts, body=want)
    assert codec.decode_frame(frame) == ("sig.AU_GC", env)
    assert codec.decode_frame(bytes(codec.encode_frame("sig.AU_GC", env))) == ("sig.AU_GC", env)


@settings(max_examples=100, deadline=None)
@given(bid=floats, ask=floats, bsz=floats, asz=floats, exch=ints, recv=ints, vseq=ints)
def test_quote_template_filled_decodes_to_the_quote_with_those_values(
        bid: float, ask: float, bsz: float, asz: float, exch: int, recv: int, vseq: int) -> None:
    codec = Codec()
    shape = Quote(venue="CME", symbol="GC", bid=0.0, ask=0.0, bid_size=0.0, ask_size=0.0, exch_ts_ns=0, recv_ns=0)
    t = template(codec, "md.CME.GC", "ingest-cme", 7, shape, QUOTE_FIELDS)
    topic, env = codec.decode_frame(t.frame(3, 4, (bid, ask, bsz, asz, exch, recv, vseq)))
    assert topic == "md.CME.GC"
    assert env == Envelope(src="ingest-cme", epoch=7, seq=3, ts_ns=4, body=Quote(
        venue="CME", symbol="GC", bid=bid, ask=ask, bid_size=bsz, ask_size=asz, exch_ts_ns=exch, recv_ns=recv,
        venue_seq=vseq))


def test_template_int_field_given_an_int_beyond_int64_raises_and_builds_no_frame() -> None:
    fx = FxRate(pair="USDCNH", bid=0.0, ask=0.0, exch_ts_ns=0, recv_ns=0)
    t = template(Codec(), "md.FX.USDCNH", "ingest-fx", 1, fx, FX_FIELDS)
    with pytest.raises(struct.error):
        t.frame(1, 2, (1.0, 2.0, 2**64, 3))


@pytest.mark.parametrize("fields, reason", [
    (("closing",), "TEMPLATE_FIELD_TYPE: field=closing"),
    (("direction",), "TEMPLATE_FIELD_TYPE: field=direction"),
    (("spread", "signal_id"), "TEMPLATE_FIELD_ORDER: fields=seq,ts_ns,spread,signal_id frame order=seq,ts_ns,signal_id,spread"),
    (("signal_id", "pair"), "TEMPLATE_FIELD_TYPE: fields=signal_id,pair more than one str field"),
    (("legs.0.nope",), "TEMPLATE_FIELD_UNKNOWN: field=legs.0.nope"),
    (("legs.qty",), "TEMPLATE_FIELD_UNKNOWN: field=legs.qty"),
    (("legs.9.qty",), "TEMPLATE_FIELD_UNKNOWN: field=legs.9.qty"),
])
def test_template_of_a_shape_it_cannot_hold_names_the_field_and_why(fields: tuple[str, ...], reason: str) -> None:
    with pytest.raises(TemplateError, match=reason.replace("(", r"\(")):
        template(Codec(), "sig.AU_GC", "trigger", 1, _signal(), fields)


def test_publish_template_shares_the_topics_sequence_and_replay_with_publish() -> None:
    with inproc_pair(zmq.XPUB, zmq.SUB) as (pub_sock, sub):
        subscribed(pub_sock, sub, b"sig.")
        pub = Publisher(pub_sock, "trigger", 9, replay_depth=10)
        shape = _signal()
        t = pub.template("sig.AU_GC", shape, SIGNAL_FIELDS)
        values = ("s-1", 1, 2.0, 3, 4.0, 5.0, 6.0, 7, 8, 9, 0, 10)
        first = pub.publish("sig.AU_GC", shape)
        second = pub.publish_template(t, values)
        assert second == first + 1
        codec = Codec()
        frames = [codec.decode_frame(sub.recv()) for _ in range(2)]
        assert [env.seq for _, env in frames] == [first, second]
        assert frames[1][1].body.signal_id == "s-1" and frames[1][1].body.eval_ns == 10
        assert codec.decode_frame(pub.replay("sig.AU_GC", second, second)[0]) == frames[1]


@settings(max_examples=100, deadline=None)
@given(bid=floats, ask=floats, bsz=floats, asz=floats, ts=ints, seq=ints, recv=ints, fx=st.booleans())
def test_top_of_book_frame_values_fill_its_messages_template_to_that_message(
        bid: float, ask: float, bsz: float, asz: float, ts: int, seq: int, recv: int, fx: bool) -> None:
    codec = Codec()
    first = TopOfBook(venue="FX" if fx else "CME", instrument="USDCNH" if fx else "ES", symbol="USDCNH" if fx else "ESZ6",
                      bid=1.0, ask=2.0, bid_size=3.0, ask_size=4.0, ts_ns=5, seq=6, fx=fx)
    t = template(codec, "md.x", "ingest", 1, first.to_message(7), first.frame_fields)
    tob = msgspec.structs.replace(first, bid=bid, ask=ask, bid_size=bsz, ask_size=asz, ts_ns=ts, seq=seq)
    _, env = codec.decode_frame(t.frame(1, 2, tob.frame_values(recv)))
    assert env.body == tob.to_message(recv)
