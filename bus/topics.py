"""Topic naming on the bus. Topics are dot-separated; subscribers filter by prefix."""

from __future__ import annotations

MD = "md."  # md.<venue>.<symbol>: Quote, FxRate, InstrumentStatus
SIG = "sig."  # sig.<pair>: Signal
EXEC = "exec."  # exec.order.<venue>, exec.report.<venue>, exec.stream
EXEC_ORDER = "exec.order."  # exec.order.<venue>: OrderRequest as sent
EXEC_REPORT = "exec.report."  # exec.report.<venue>: OrderEvent as received
RISK = "risk."  # risk.state, risk.margin, risk.alert, risk.deny
HB = "hb."  # hb.<actor>: Heartbeat
CTL = "ctl."  # ctl.kill: KillSwitch from the supervisor
ALERT = "alert."  # alert.<actor>: Alert

RAW = "raw."  # raw.<venue>.<instrument>: a simulated venue's own feed
VENUE = "venue."  # venue.fill.<venue>: a simulated venue's drop copy of its fills

RISK_STATE = "risk.state"
RISK_MARGIN = "risk.margin"
RISK_ALERT = "risk.alert"
RISK_DENY = "risk.deny"
# lockstep (run.lockstep): marginwatch's StepDone rides under risk.state, so a subscriber of the
# risk state gets it after every RiskState it covers; the trigger's StepDone goes to simex
RISK_STEP = "risk.state.step"
LOCKSTEP_DONE = "lockstep.done"
# a frame on this topic reaches no one: no subscription may match it (`subscribable`), so a PUB
# drops it before any pipe. The tick's path actors send one every run.keep_warm_ms to keep their
# send path in the CPU caches (`Publisher.warm`)
WARM = "~warm"
STEP_SYMBOL = "~step"  # raw.<venue>.~step / md.<venue>.~step: the Step marker on a venue's stream
CTL_KILL = "ctl.kill"
CTL_AUDIT = "ctl.audit"  # where the journal files the supervisor's ControlAudit
# the executor's durable execution stream (StreamEvent, StreamHead): fills, trade events, positions
EXEC_STREAM = "exec.stream"
EXEC_POSITIONS = "exec.positions"  # where the journal files a stream's Positions
EXEC_FILL = "exec.fill."  # where the journal files a stream's fills: exec.fill.<venue>
EXEC_TRADE = "exec.trade."  # where the journal files a stream's trade events: exec.trade.<pair>


def subscribable(prefix: str) -> bool:
    """False for a prefix that would match `WARM` (the empty prefix, "~", ...): no subscriber may
    hear the keep-warm frames."""
    return not WARM.startswith(prefix)


def md(venue: str, symbol: str) -> str:
    return f"md.{venue}.{symbol}"


def sig(pair: str) -> str:
    return f"sig.{pair}"


def exec_order(venue: str) -> str:
    return f"{EXEC_ORDER}{venue}"


def exec_report(venue: str) -> str:
    return f"{EXEC_REPORT}{venue}"


def exec_fill(venue: str) -> str:
    """Fills as the executor's trades hold them (one event per increase, however it was learnt)."""
    return f"{EXEC_FILL}{venue}"


def exec_trade(pair: str) -> str:
    return f"{EXEC_TRADE}{pair}"


def hb(actor: str) -> str:
    return f"hb.{actor}"


def alert(actor: str) -> str:
    return f"alert.{actor}"


def raw(venue: str, instrument: str = "") -> str:
    """A simulated venue's own feed of `instrument`; without one, the prefix of all of it."""
    return f"{RAW}{venue}.{instrument}"


def venue_fill(venue: str) -> str:
    return f"{VENUE}fill.{venue}"


def md_prefix(venue: str) -> str:
    """Every market-data topic of `venue`."""
    return f"{MD}{venue}."
