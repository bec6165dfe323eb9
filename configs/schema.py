"""The config schema: one TOML file decoded into these typed Structs.

Every Struct forbids unknown fields so a typo is an error, not a silent
default. Cross-references (a pair's legs, an actor's venue) are checked in
`configs.load`, which reports every error at once.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Rate = Annotated[float, Meta(ge=0.0, le=1.0)]
PosFloat = Annotated[float, Meta(gt=0.0)]
NonNegFloat = Annotated[float, Meta(ge=0.0)]
PosInt = Annotated[int, Meta(gt=0)]
NonNegInt = Annotated[int, Meta(ge=0)]


class _Cfg(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class LockstepCfg(_Cfg):
    """Deterministic market replay on the simulated exchange: same seed, same trades.

    simex releases the market one step (all quotes due at one venue time) at a
    time and waits until the trigger has evaluated it and every trade it
    started has ended; venue time stands still while a trade is in flight.
    """

    enabled: bool = False
    start_utc: str = "2026-01-05T02:00:00Z"  # venue time of the first step
    steps: NonNegInt = 0  # the market closes after this many steps (0: never)


class RunCfg(_Cfg):
    seed: int = 42
    base_currency: str = "USD"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    heartbeat_s: PosFloat = 0.5
    heartbeat_timeout_s: PosFloat = 5.0
    ready_timeout_s: PosFloat = 60.0
    restart_backoff_s: PosFloat = 0.25
    restart_backoff_max_s: PosFloat = 5.0
    max_restarts: PosInt = 5  # crashes within restart_window_s before an actor is faulted
    restart_window_s: PosFloat = 60.0
    stop_timeout_s: PosFloat = 5.0
    # "latency": pin ingest/trigger/executor to cpu 0 and the rest to cpu 1
    cpu_profile: Literal["none", "latency"] = "none"
    # scheduling niceness of the actors off the tick's path (marginwatch, journal): a tick wakes
    # many processes at once on 2 cores, and the ingest -> trigger -> executor path should win
    background_nice: Annotated[int, Meta(ge=0, le=19)] = 10
    # > 0: the tick's path (ingest, trigger, executor, their ZeroMQ I/O threads) runs SCHED_FIFO at
    # this priority, so a tick's wake-ups never queue behind other work (needs CAP_SYS_NICE; without
    # it the actors say so and run as usual). They block in poll, so they never hog a CPU.
    realtime_priority: Annotated[int, Meta(ge=0, le=98)] = 0
    # > 0: every this many ms the tick's path actors send a frame on a topic no one subscribes to
    # (`bus.topics.WARM`: their PUB drops it, nothing reaches the wire), so a tick's or a signal's
    # send finds the send path in the CPU caches; 0: off
    keep_warm_ms: Annotated[float, Meta(ge=0.0, le=1000.0)] = 1.0
    lockstep: LockstepCfg = LockstepCfg()


class EndpointsCfg(_Cfg):
    transport: Literal["ipc", "tcp"] = "ipc"
    # tcp: the host actors bind and connect on; "{actor}" gives each actor its own host
    # (its docker-compose service name) and makes actors bind on every interface
    host: str = "127.0.0.1"
    base_port: Annotated[int, Meta(ge=1024, le=65000)] = 17100
    hwm: PosInt = 100_000  # send/receive high-water mark for events
    # tcp: the CURVE key directory (`xmc keys init DIR`; relative to this file). With it every tcp
    # socket is authenticated and encrypted; without it tcp may not listen beyond loopback
    # unless `plaintext = true` says so explicitly
    curve_keys: str = ""
    plaintext: bool = False


class SimVenueCfg(_Cfg):
    """Behaviour of a simulated venue; all rates are per order, seeded."""

    ack_latency_ms: NonNegFloat = 0.5
    fill_latency_ms: NonNegFloat = 1.0
    reject_rate: Rate = 0.0
    partial_rate: Rate = 0.0
    drop_rate: Rate = 0.0  # orders never answered (the executor must query)
    disconnect_every_s: NonNegFloat = 0.0  # 0: never
    disconnect_for_s: NonNegFloat = 0.5
    band_ticks: PosInt = 100  # limit orders further than this from the mid are rejected


class ReplayCfg(_Cfg):
    path: str
    format: Literal["dbn", "csv"] = "dbn"
    pace: Literal["recorded", "fast"] = "fast"
    speed: PosFloat = 1.0  # with pace=recorded: 2.0 replays twice as fast
    loop: bool = False
    # venue symbol (raw symbol or instrument id as text) -> instrument key
    symbols: dict[str, str] = {}
    # start only once this many subscriptions to the venue's quotes exist (or after wait_timeout_s)
    wait_subscribers: NonNegInt = 0
    wait_timeout_s: PosFloat = 10.0


Port = Annotated[int, Meta(ge=1, le=65535)]
CompId = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class FixSymbolCfg(_Cfg):
    """How a venue names one instrument on FIX (tag 55, optional tag 207)."""

    symbol: str
    security_exchange: str = ""


class FixMdCfg(_Cfg):
    """The market-data session of a FIX venue (the ingest actor logs on with it)."""

    sender_comp_id: CompId
    target_comp_id: str = ""  # "": the venue's order-session target_comp_id
    host: str = ""  # "": the order session's host
    port: Annotated[int, Meta(ge=0, le=65535)] = 0  # 0: the order session's port
    depth: PosInt = 1  # MarketDepth asked for (1: top of book)


class FixVenueCfg(_Cfg, kw_only=True):
    """A venue reached over FIX (QuickFIX initiator): the order session and its capabilities.

    Secrets never sit in the TOML: `password_env` names an environment variable,
    `password_file` a file (read at start, stripped) holding the logon password (tag 554).
    """

    host: str = "127.0.0.1"
    port: Port
    version: Literal["FIX.4.2", "FIX.4.4"] = "FIX.4.2"
    sender_comp_id: CompId
    target_comp_id: CompId
    heartbeat_s: Annotated[int, Meta(ge=1, le=300)] = 30
    reconnect_s: Annotated[int, Meta(ge=1, le=300)] = 5
    logon_timeout_s: Annotated[int, Meta(ge=1, le=300)] = 10
    store_dir: str = ""  # "": <run dir>/state/fix/<venue>/<session> (sequence numbers survive restarts)
    reset_on_logon: bool = False  # True resets sequence numbers at every logon (only if the venue asks)
    account: str = ""  # tag 1 on every order ("": the account's sub-account or name is not sent)
    username: str = ""  # tag 553 on Logon
    password_env: str = ""
    password_file: str = ""
    symbols: dict[str, str | FixSymbolCfg] = {}  # instrument -> venue symbol (default: the instrument's symbol)
    # capabilities: real venues differ, and xmc adapts instead of assuming
    ioc: bool = True  # False: IOC is emulated (a DAY order cancelled as soon as it is acknowledged)
    market_orders: bool = True  # False: unwinds must be marketable limits (pairs need rollback_far_ticks > 0)
    status_requests: bool = True  # False: an order in doubt is resolved by a cancel request and its answer
    validate: bool = True  # check incoming messages against QuickFIX's data dictionary
    md: FixMdCfg | None = None


class VenueCfg(_Cfg):
    kind: Literal["sim", "replay", "fix"] = "sim"
    stale_ms: PosFloat = 2000.0  # no update within this: the instrument is stale
    sim: SimVenueCfg = SimVenueCfg()
    replay: ReplayCfg | None = None
    fix: FixVenueCfg | None = None


class SimPriceCfg(_Cfg):
    """Price process of a simulated instrument."""

    start: PosFloat
    vol_bp: NonNegFloat = 2.0  # stdev of a step, basis points
    spread_ticks: PosInt = 1
    size: PosInt = 20  # mean top-of-book size
    interval_ms: PosFloat = 20.0  # one quote per instrument per interval
    drift_bp: float = 0.0  # per step; a negative drift makes a falling market


class InstrumentCfg(_Cfg):
    venue: str
    symbol: str
    tick: PosFloat
    multiplier: PosFloat
    currency: str
    unit: str = "pt"  # unit the price is quoted per: g, oz, kg, bbl, pt, ccy
    hours: list[str] = []  # UTC sessions "HH:MM-HH:MM"; empty: always open
    margin_model: Literal["fixed", "percent", "scenario"] = "percent"
    margin_fixed: NonNegFloat = 0.0  # per lot, instrument currency
    margin_pct: Rate = 0.1  # of notional
    scan_range_pct: Rate = 0.08  # scenario model: price scan range
    commodity: str = ""  # group for calendar/inter-commodity spread charges
    fx: bool = False  # a currency pair quoted by the venue (USDCNH, USDHKD)
    sim: SimPriceCfg | None = None


class PairCfg(_Cfg):
    leg_a: str  # inner (domestic) leg
    leg_b: str  # outer (foreign) leg
    ratio_a: PosInt = 1
    ratio_b: PosInt = 1
    currency: str = "USD"  # both legs compared in this currency ...
    unit: str = "pt"  # ... per this unit
    mode: Literal["spread", "ratio", "zscore"] = "zscore"
    entry: PosFloat = 2.0  # open when |value| crosses this
    exit: NonNegFloat = 0.5  # close when |value| falls under this
    lots: PosInt = 1  # ratio units per trade
    min_size: NonNegFloat = 1.0  # both legs' top of book must show this (in ratio)
    max_quote_age_ms: PosFloat = 500.0
    cooldown_ms: NonNegFloat = 200.0
    max_inventory: PosInt = 3  # open pair trades' ratio units, per direction
    ewma_halflife: PosFloat = 200.0  # in ticks
    hedge_window: Annotated[int, Meta(ge=2)] = 200
    warmup_ticks: NonNegInt = 50
    expiry_ms: PosFloat = 500.0
    send_mode: Literal["both", "lead"] = "both"
    lead_leg: Literal["a", "b"] = "a"
    order_timeout_ms: PosFloat = 250.0
    max_resubmits: NonNegInt = 3
    payup_ticks: NonNegInt = 1
    slippage_budget_ticks: NonNegInt = 5
    deadline_ms: PosFloat = 2000.0
    rollback_attempts: PosInt = 5
    entry_tif: Literal["IOC", "DAY"] = "IOC"  # entry and resubmit orders
    # unwind limit this far through the touch (the executor's latest quote; before it has one, through the
    # entry price); 0: no limit (a market order). Required > 0 on a venue without market orders.
    rollback_far_ticks: NonNegInt = 0
    halt_unwinds_all: bool = True  # on REDUCE_ONLY/HALTED also unwind completed ratio units of a trade in flight
    # basis of the simulated market: mean-reverting, sometimes opening past the triggers
    sim_basis_bp: NonNegFloat = 0.0
    sim_basis_reversion: Rate = 0.05
    sim_basis_vol_bp: NonNegFloat = 1.0


class SubAccountCfg(_Cfg):
    name: str
    capacity: PosFloat = 1.0  # weight for capacity-weighted allocation
    max_lots: PosInt = 5000  # concentration cap per instrument
    tags: list[str] = []  # compliance tags
    deny: list[str] = []  # instruments this sub-account may not trade
    allow: list[str] = []  # if set, only these


class AccountCfg(_Cfg):
    currency: str
    balance: float
    venues: list[str]
    allocation: Literal["single", "round_robin", "capacity"] = "single"
    sub_accounts: list[SubAccountCfg] = []
    iceberg_visible: NonNegInt = 0  # 0: no slicing


class SpreadCreditCfg(_Cfg):
    a: str
    b: str
    rate: Rate


class LimitsCfg(_Cfg):
    max_order_qty: PosInt = 50
    max_order_notional: PosFloat = 5e7  # base currency
    max_position: PosInt = 100  # per instrument, lots
    max_pair_position: PosInt = 20  # per pair, ratio units
    max_orders_per_s: PosFloat = 200.0
    price_band_ticks: PosInt = 50
    # pre-trade margin what-if: an opening pair trade is refused if filling both legs would take
    # an account's utilisation (initial margin / equity) past this (reductions are never refused)
    whatif_utilisation: Annotated[float, Meta(gt=0.0, le=10.0)] = 0.8


class RiskCfg(_Cfg):
    warn_utilisation: Rate = 0.8
    reduce_utilisation: Rate = 0.9
    halt_utilisation: Annotated[float, Meta(ge=0.0, le=10.0)] = 1.0
    hysteresis: Rate = 0.05
    margin_call_buffer: Annotated[float, Meta(ge=1.0)] = 1.2
    margin_call_grace_ms: NonNegFloat = 750.0  # a breach must last this long to be a margin call
    maintenance_ratio: Rate = 0.8  # maintenance = initial x this
    broker_addon: Annotated[float, Meta(ge=1.0, le=3.0)] = 1.0
    fx_stale_ms: PosFloat = 5000.0
    snapshot_interval_ms: PosFloat = 500.0
    spread_credits: list[SpreadCreditCfg] = []
    calendar_charges: dict[str, NonNegFloat] = {}  # per commodity: charge per spread lot, base currency
    cross_account_credits: bool = True  # spread credits across accounts (the desk's combined view)
    limits: LimitsCfg = LimitsCfg()


TICK_PATH = frozenset({"ingest", "trigger", "executor"})  # actor kinds a tick crosses on its way to the orders


class ActorCfg(_Cfg):
    kind: Literal["simex", "ingest", "trigger", "executor", "marginwatch", "journal"]
    venue: str = ""  # ingest: the venue it reads
    # simex: the venues it simulates (empty: every sim venue); a FIX venue named here is served by
    # simex's FIX acceptor on the venue's host and port, with the venue's `sim` behaviour
    venues: list[str] = []
    # simex: FIX venues (also in `venues`) whose market data simex serves while their orders go to a
    # real FIX venue, such as a broker's test gateway
    md_only: list[str] = []
    enabled: bool = True


class Config(_Cfg):
    run: RunCfg = RunCfg()
    endpoints: EndpointsCfg = EndpointsCfg()
    include: list[str] = []  # other TOML files merged in first (e.g. the catalogue)
    venues: dict[str, VenueCfg] = {}
    instruments: dict[str, InstrumentCfg] = {}
    pairs: dict[str, PairCfg] = {}
    accounts: dict[str, AccountCfg] = {}
    risk: RiskCfg = RiskCfg()
    actors: dict[str, ActorCfg] = {}

    def active_instruments(self) -> dict[str, InstrumentCfg]:
        """Instruments on a configured venue; the rest of the catalogue is inert."""
        return {k: i for k, i in self.instruments.items() if i.venue in self.venues}

    def simulated_venues(self) -> set[str]:
        """Venues whose market and orders the embedded simulator makes: every `sim` venue, and each
        FIX venue a simex actor serves as a FIX acceptor."""
        out = {n for n, v in self.venues.items() if v.kind == "sim"}
        for a in self.actors.values():
            if a.kind == "simex" and a.enabled:
                out.update(v for v in a.venues if v in self.venues and self.venues[v].kind == "fix")
        return out

    def fx_instruments(self) -> dict[str, InstrumentCfg]:
        return {k: i for k, i in self.active_instruments().items() if i.fx}

    def venue_instruments(self, venue: str) -> dict[str, InstrumentCfg]:
        return {k: i for k, i in self.instruments.items() if i.venue == venue}

    def account_for_venue(self, venue: str) -> str | None:
        for name, acct in self.accounts.items():
            if venue in acct.venues:
                return name
        return None
