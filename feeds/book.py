"""`TopOfBook`: the one normalised market-data record every feed produces.

The simulator and the replay adapters both emit it; the ingest actor turns it
into a bus `Quote` (or `FxRate` for a currency pair) by stamping its own
receive time (each instrument's frame is encoded once and its numbers written per record:
`frame_fields`, `frame_values`). `instrument` is the config's instrument key (``au``, ``GC``,
``USDCNH``); `symbol` is the venue's name for it as the config knows it
(`InstrumentCfg.symbol`: ``au2612``), which is what `Quote.symbol` and the
``md.<venue>.<symbol>`` topic carry. An FX rate's `FxRate.pair` is the
instrument key (``USDCNH``).
"""

from __future__ import annotations

import msgspec

from bus.messages import FxRate, Quote

QUOTE_FIELDS = ("bid", "ask", "bid_size", "ask_size", "exch_ts_ns", "recv_ns", "venue_seq")  # a Quote's numbers
FX_FIELDS = ("bid", "ask", "exch_ts_ns", "recv_ns")  # an FxRate's


class TopOfBook(msgspec.Struct, frozen=True, kw_only=True):
    """Best bid/ask of one instrument at one venue time."""

    venue: str
    instrument: str  # config instrument key
    symbol: str  # venue symbol (InstrumentCfg.symbol when the instrument is configured)
    bid: float
    ask: float
    bid_size: float
    ask_size: float
    ts_ns: int  # venue time (UTC ns for recorded data)
    seq: int = 0  # the venue's own update sequence number
    fx: bool = False  # a currency pair: publish as FxRate

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2.0

    def to_quote(self, recv_ns: int) -> Quote:
        """The bus `Quote` (its `symbol` is the venue symbol)."""
        return Quote(
            venue=self.venue,
            symbol=self.symbol,
            bid=self.bid,
            ask=self.ask,
            bid_size=self.bid_size,
            ask_size=self.ask_size,
            exch_ts_ns=self.ts_ns,
            recv_ns=recv_ns,
            venue_seq=self.seq,
        )

    def to_fx(self, recv_ns: int) -> FxRate:
        """The bus `FxRate`; `pair` is the instrument key (e.g. ``USDCNH``)."""
        return FxRate(pair=self.instrument, bid=self.bid, ask=self.ask, exch_ts_ns=self.ts_ns, recv_ns=recv_ns)

    def to_message(self, recv_ns: int) -> Quote | FxRate:
        return self.to_fx(recv_ns) if self.fx else self.to_quote(recv_ns)

    @property
    def frame_fields(self) -> tuple[str, ...]:
        """The fields of `to_message`'s message that change from one record to the next (`bus.frames`)."""
        return FX_FIELDS if self.fx else QUOTE_FIELDS

    def frame_values(self, recv_ns: int) -> tuple:
        """`to_message(recv_ns)`'s values of `frame_fields`, in that order."""
        if self.fx:
            return (self.bid, self.ask, self.ts_ns, recv_ns)
        return (self.bid, self.ask, self.bid_size, self.ask_size, self.ts_ns, recv_ns, self.seq)
