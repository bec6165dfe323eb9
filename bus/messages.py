"""Every message kind on the xmc bus, one frozen msgspec Struct per concept.

Messages form one tagged union (`Message`); the tag field is ``k`` and the tag
is the class name, so a frame names its own kind. Times ending in ``_ns`` are
``time.monotonic_ns()`` unless named ``exch_ts_ns``/``venue_ts_ns`` (venue
clock, UTC ns).
"""

from __future__ import annotations

import enum
from typing import Union

import msgspec


class _Msg(msgspec.Struct, frozen=True, kw_only=True, tag_field="k", tag=True):
    """Base of every bus message."""


class Side(str, enum.Enum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> "Side":
        return Side.SELL if self is Side.BUY else Side.BUY


class TimeInForce(str, enum.Enum):
    DAY = "DAY"  # rests on the book until filled or cancelled
    IOC = "IOC"  # fill what is possible now (FAK), cancel the rest


class OrderPurpose(str, enum.Enum):
    OPEN = "OPEN"
    RESUBMIT = "RESUBMIT"
    ROLLBACK = "ROLLBACK"
    FLATTEN = "FLATTEN"


class ExecType(str, enum.Enum):
    """Kind of an execution report, after FIX ExecType."""

    ACK = "ACK"
    REJECT = "REJECT"
    FILL = "FILL"  # a fill; the report's leaves_qty says if the order is done
    CANCELLED = "CANCELLED"  # cancelled on request, or IOC remainder expired
    CANCEL_REJECT = "CANCEL_REJECT"
    STATUS = "STATUS"  # answer to a status query; unknown orders come as REJECT


class RiskLevel(str, enum.Enum):
    NORMAL = "NORMAL"
    WARN = "WARN"
    REDUCE_ONLY = "REDUCE_ONLY"
    HALTED = "HALTED"

    @property
    def rank(self) -> int:
        return _RISK_RANK[self]


_RISK_RANK = {RiskLevel.NORMAL: 0, RiskLevel.WARN: 1, RiskLevel.REDUCE_ONLY: 2, RiskLevel.HALTED: 3}


class TradeState(str, enum.Enum):
    """A pair trade's state (`execution.pairtrade` holds the transitions between them)."""

    NEW = "NEW"
    WORKING = "WORKING"  # entry orders out (both legs, or the lead leg)
    HEDGING = "HEDGING"  # lead mode: lead filled, hedge leg out
    RESUBMITTING = "RESUBMITTING"  # at least one leg resubmitted for its remainder
    ROLLING_BACK = "ROLLING_BACK"  # cancelling entries, unwinding what is not in ratio
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    ROLLED_BACK = "ROLLED_BACK"
    BROKEN = "BROKEN"
    REJECTED = "REJECTED"  # the executor refused the signal: no trade was made, nothing filled

    @property
    def terminal(self) -> bool:
        """No order of the trade is working and none will be sent unless a late fill reopens it."""
        return self in _TERMINAL_STATES


_TERMINAL_STATES = frozenset({TradeState.COMPLETED, TradeState.CANCELLED, TradeState.ROLLED_BACK,
                              TradeState.BROKEN, TradeState.REJECTED})


class RejectCode(enum.StrEnum):
    """Reason codes (the ``CATEGORY_CONDITION`` before a reason's ``:``) that code matches on:
    build and test reasons with these, never with a retyped string."""

    SESSION_DOWN = "SESSION_DOWN"  # the request never reached the venue: its session was down
    ORDER_UNKNOWN = "ORDER_UNKNOWN"  # the venue does not know the order (never arrived, or forgotten)
    VENUE_REJECT = "VENUE_REJECT"  # the venue refused the order

    def of(self, reason: str) -> bool:
        """True if `reason` carries this code."""
        return reason.startswith(self.value)


class ActorState(str, enum.Enum):
    """An actor's lifecycle: starting → ready → running ⇄ degraded → stopping → stopped, or faulted."""

    STARTING = "starting"
    READY = "ready"
    RUNNING = "running"
    DEGRADED = "degraded"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAULTED = "faulted"

    @property
    def live(self) -> bool:
        """Up and heartbeating (ready, running or degraded)."""
        return self in (ActorState.READY, ActorState.RUNNING, ActorState.DEGRADED)


class Severity(str, enum.Enum):
    INFO = "INFO"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


# --- market data -----------------------------------------------------------


class Quote(_Msg):
    """Normalised top of book of one instrument."""

    venue: str
    symbol: str
    bid: float
    ask: float
    bid_size: float
    ask_size: float
    exch_ts_ns: int  # venue time, UTC ns
    recv_ns: int  # monotonic ns when ingest received it
    venue_seq: int = 0  # the venue's own update sequence number


class FxRate(_Msg):
    """A currency pair's rate, e.g. pair='USDCNH', 1 USD = mid CNH."""

    pair: str
    bid: float
    ask: float
    exch_ts_ns: int
    recv_ns: int

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2.0


class InstrumentStatus(_Msg):
    """Feed health of one instrument (stale-feed detection)."""

    venue: str
    symbol: str
    stale: bool
    age_ms: float
    reason: str = ""


class Step(_Msg):
    """Lockstep: simex released market step `step` at venue time `ts_ns`.

    It follows every quote of that step on its venue's stream, so a consumer
    holding a venue's Step k has all of that venue's quotes up to step k.
    """

    step: int  # 0: the probe before the market opens
    ts_ns: int  # venue time, UTC ns
    venue: str
    fill_qty: int  # total quantity the simulated venues had filled at release


class StepDone(_Msg):
    """Lockstep: the publisher finished step `step` (trigger: evaluated, its trades ended;
    marginwatch: risk evaluated with the step's quotes and every fill before it)."""

    step: int


# --- signals and orders ------------------------------------------------------


class SignalLeg(_Msg):
    instrument: str
    side: Side
    qty: int
    limit_px: float


class Signal(_Msg):
    """A request for one pair trade."""

    signal_id: str
    pair: str
    direction: Side  # BUY = buy the spread (buy leg A, sell leg B)
    closing: bool  # True when the trade reduces the pair's inventory
    legs: tuple[SignalLeg, ...]
    spread: float
    zscore: float
    expiry_ns: int
    tick_recv_ns: int  # receive time of the quote that triggered it
    signal_ns: int
    step: int = 0  # lockstep: the market step it was priced on (0: not in lockstep)
    eval_ns: int = 0  # when the trigger began the evaluation that priced it (its wake for the tick)


class OrderRequest(_Msg):
    cl_ord_id: str
    trade_id: str
    account: str
    venue: str
    instrument: str
    side: Side
    qty: int
    price: float | None  # None: marketable at any price
    tif: TimeInForce = TimeInForce.DAY
    purpose: OrderPurpose = OrderPurpose.OPEN
    tick_recv_ns: int = 0
    sent_ns: int = 0


class CancelRequest(_Msg):
    cl_ord_id: str
    venue: str
    instrument: str


class StatusRequest(_Msg):
    cl_ord_id: str
    venue: str


class OrderEvent(_Msg):
    """An execution report from a venue (after FIX 35=8)."""

    cl_ord_id: str
    exec_type: ExecType
    venue: str
    instrument: str
    side: Side
    order_qty: int
    cum_qty: int
    leaves_qty: int
    last_qty: int = 0
    last_px: float = 0.0
    avg_px: float = 0.0
    exec_id: str = ""
    venue_order_id: str = ""
    reason: str = ""  # CATEGORY_CONDITION: key=value
    venue_ts_ns: int = 0
    recv_ns: int = 0
    account: str = ""  # on the execution stream's fills: the account the trade's leg trades for


class LegView(_Msg):
    instrument: str
    side: Side
    target_qty: int
    filled_qty: int
    avg_price: float
    net_qty: int  # signed position after all fills of this trade, unwinds included
    sub_accounts: tuple[str, ...] = ()


class PairTradeEvent(_Msg):
    """One transition of a pair trade's state machine."""

    trade_id: str  # "" for a refused signal (state REJECTED)
    pair: str
    state: TradeState
    prev_state: TradeState | None  # None: the trade's first event, or a refused signal
    transition: str
    direction: Side
    legs: tuple[LegView, ...]
    reason: str = ""
    resubmits: int = 0
    rollbacks: int = 0
    signal_id: str = ""
    tick_recv_ns: int = 0
    ts_ns: int = 0


# --- the execution stream ------------------------------------------------------


class PairUnits(_Msg):
    """Ratio units a pair's settled trades hold (+ long the spread)."""

    pair: str
    units: int


class InstrumentPosition(_Msg):
    """Signed lots held on one instrument for one account, from every fill of every trade."""

    account: str
    instrument: str
    qty: int


class Positions(_Msg):
    """The executor's one position view, as of the stream event that carries it."""

    pairs: tuple[PairUnits, ...]
    instruments: tuple[InstrumentPosition, ...]


class StreamEvent(_Msg):
    """One event of the executor's durable execution stream (topic ``exec.stream``).

    ``seq`` comes from the executor's write-ahead log: 1, 2, 3, ... for the life of the run
    directory, across restarts. The body is a fill (an OrderEvent with exec_type FILL, once per
    increase of what a trade holds), a PairTradeEvent (opened, every transition, a refused
    signal) or the Positions after them.
    """

    seq: int
    body: Union[OrderEvent, PairTradeEvent, Positions]


class StreamHead(_Msg):
    """The newest ``seq`` of the execution stream, published on a timer: a follower that holds
    less asks for the rest (`StreamSince`)."""

    head: int


class StreamSince(_Msg):
    """Ask the executor for the stream's events with seq > ``since`` (at most ``limit``)."""

    since: int
    limit: int = 0  # 0: the executor's batch size


class StreamBatch(_Msg):
    """The answer to `StreamSince`: events in seq order, and the stream's head when sent."""

    events: tuple[StreamEvent, ...]
    head: int


# --- risk --------------------------------------------------------------------


class RiskState(_Msg):
    state: RiskLevel
    computed: RiskLevel  # what margin alone says, before the kill switch
    kill: bool
    reason: str
    utilisation: float
    ts_ns: int


class AccountMargin(_Msg):
    account: str
    currency: str
    equity: float
    initial: float
    maintenance: float
    utilisation: float
    headroom: float


class MarginSnapshot(_Msg):
    base_currency: str
    accounts: tuple[AccountMargin, ...]
    total: AccountMargin
    margin_call: bool
    suggestion: str = ""
    ts_ns: int = 0


class Alert(_Msg):
    severity: Severity
    code: str  # machine-readable CATEGORY_CONDITION
    text: str
    actor: str = ""
    trade_id: str = ""
    ts_ns: int = 0


class KillSwitch(_Msg):
    """Operator's kill switch, re-published by the supervisor while it holds."""

    halted: bool
    reason: str
    ts_ns: int
    by: str = ""  # who set it: "operator:<name>" (tcp, CURVE), "local:<user>" (ipc), or the actor that asked


class ControlAudit(_Msg):
    """A control command the supervisor received (halt, resume, restart, down), who sent it and
    what came of it; the supervisor sends one to every journal, which files it."""

    cmd: str
    args: dict[str, str]
    by: str
    ok: bool
    reason: str = ""
    ts_ns: int = 0


# --- runtime and control -----------------------------------------------------


class Heartbeat(_Msg):
    actor: str
    pid: int
    state: ActorState
    msgs_in: int
    msgs_out: int
    decode_errors: int
    gaps: int
    dups: int
    detail: dict[str, float] = {}
    ts_ns: int = 0


class Control(_Msg):
    """A command to an actor or the supervisor: stop, halt, resume, restart, status, ..."""

    cmd: str
    args: dict[str, str] = {}


class CmdAck(_Msg):
    ok: bool
    reason: str = ""
    data: dict[str, str] = {}


class ReplayRequest(_Msg):
    """Ask a publisher for the frames of a topic from seq `first` to `last`."""

    topic: str
    first: int
    last: int


class ReplaySince(_Msg):
    """Ask a publisher for every buffered frame of the topics under `prefix` newer than `since`.

    `since` maps topic -> last seq the asker holds for the publisher's epoch
    `epoch`; for another epoch (the publisher restarted) everything buffered
    is sent. This is how observers off the tick's path (journal, margin watch)
    take market data in batches instead of waking on every tick.
    """

    prefix: str
    since: dict[str, int]
    epoch: int = 0


class Replayed(_Msg):
    """One frame resent from a publisher's replay buffer (answer to ReplayRequest)."""

    topic: str
    frame: bytes


Message = Union[
    Quote,
    FxRate,
    InstrumentStatus,
    Step,
    StepDone,
    SignalLeg,
    Signal,
    OrderRequest,
    CancelRequest,
    StatusRequest,
    OrderEvent,
    LegView,
    PairTradeEvent,
    PairUnits,
    InstrumentPosition,
    Positions,
    StreamEvent,
    StreamHead,
    StreamSince,
    StreamBatch,
    RiskState,
    AccountMargin,
    MarginSnapshot,
    Alert,
    KillSwitch,
    ControlAudit,
    Heartbeat,
    Control,
    CmdAck,
    ReplayRequest,
    ReplaySince,
    Replayed,
]

ALL_MESSAGES: tuple[type[_Msg], ...] = Message.__args__  # type: ignore[attr-defined]


class Envelope(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """What travels in a frame: publisher id, its epoch, per-topic sequence, origin time, body."""

    src: str
    epoch: int  # publisher start time; a new epoch means the publisher restarted
    seq: int  # per (src, topic) on PUB/SUB; request id on command channels
    ts_ns: int  # monotonic ns when the frame was sent
    body: Message
