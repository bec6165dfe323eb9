"""The keep-warm frame (Publisher.warm on topics.WARM): no subscription matches it, so it never
leaves the publisher, moves no sequence and enters no replay buffer. Real inproc sockets."""

from __future__ import annotations

import zmq

from bus import topics
from bus.codec import Codec
from bus.messages import FxRate
from bus.pubsub import Publisher
from helpers import inproc_pair, subscribed


def test_no_topic_prefix_in_use_may_hear_the_keep_warm_frames() -> None:
    used = [v for k, v in vars(topics).items() if k.isupper() and isinstance(v, str) and k != "WARM"]
    assert used and all(topics.subscribable(p) for p in used)
    assert not topics.subscribable("") and not topics.subscribable("~") and not topics.subscribable(topics.WARM)


def test_warm_frame_reaches_no_subscriber_and_moves_no_sequence() -> None:
    with inproc_pair(zmq.XPUB, zmq.SUB) as (pub_sock, sub):
        subscribed(pub_sock, sub, topics.MD.encode())
        pub = Publisher(pub_sock, "ingest_a", 5, replay_depth=10)
        for _ in range(3):
            pub.warm()
        seq = pub.publish(topics.md("SHFE", "au"), FxRate(pair="USDCNH", bid=7.1, ask=7.2, exch_ts_ns=1, recv_ns=2))
        assert seq == 1 and pub.sent == 1
        assert pub.replay(topics.md("SHFE", "au"), 1, 1) and not pub.replay(topics.WARM, 0, 10)
        assert sub.poll(10_000)
        topic, env = Codec().decode_frame(sub.recv())  # the first frame to arrive is the real one
        assert (topic, env.seq) == (topics.md("SHFE", "au"), 1)
        assert not sub.poll(0)
