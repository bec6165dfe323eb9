"""Codec round trip of every bus message, and bad frames raising FrameError."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from bus.codec import Codec, FrameError, to_builtins
from bus.messages import ALL_MESSAGES, Envelope, Quote, Side

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
text = st.text(max_size=12)


st.register_type_strategy(float, finite)
st.register_type_strategy(str, text)
st.register_type_strategy(int, st.integers(min_value=-(2**62), max_value=2**62))

any_message = st.one_of([st.builds(cls) for cls in ALL_MESSAGES])
envelopes = st.builds(
    Envelope,
    src=text,
    epoch=st.integers(min_value=0, max_value=2**63 - 1),
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    ts_ns=st.integers(min_value=0, max_value=2**63 - 1),
    body=any_message,
)


@settings(max_examples=300, deadline=None)
@given(env=envelopes, topic=st.text(alphabet="abcdefghijklmnopqrstuvwxyz.0123456789_", min_size=1, max_size=30))
def test_every_message_round_trips_through_a_frame_unchanged(env: Envelope, topic: str) -> None:
    codec = Codec()
    got_topic, got = codec.decode_frame(bytes(codec.encode_frame(topic, env)))
    assert got_topic == topic
    assert got == env


def test_every_message_kind_is_in_the_union() -> None:
    assert {c.__name__ for c in ALL_MESSAGES} >= {
        "Quote", "FxRate", "Signal", "OrderRequest", "OrderEvent", "PairTradeEvent", "RiskState",
        "MarginSnapshot", "Alert", "Heartbeat", "Control", "CmdAck",
    }


@pytest.mark.parametrize(
    "frame",
    [b"", b"no-separator", b"|payload-without-topic", b"md.x|\xff\xfe garbage", b"md.x|" + msgspec.msgpack.encode([1, 2])],
)
def test_garbage_frame_raises_frame_error_with_reason(frame: bytes) -> None:
    with pytest.raises(FrameError) as info:
        Codec().decode_frame(frame)
    assert str(info.value)


def test_wrong_type_body_raises_frame_error_naming_the_field() -> None:
    codec = Codec()
    bad = msgspec.msgpack.encode(["src", 1, 1, 1, {"k": "Quote", "venue": "X"}])
    with pytest.raises(FrameError, match="missing required field"):
        codec.decode(bad)


def test_to_builtins_names_the_kind() -> None:
    q = Quote(venue="SHFE", symbol="au", bid=1.0, ask=2.0, bid_size=1, ask_size=1, exch_ts_ns=1, recv_ns=2)
    assert to_builtins(q)["k"] == "Quote"
    assert Side.BUY.opposite is Side.SELL and Side.SELL.sign == -1
