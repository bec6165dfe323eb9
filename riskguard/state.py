"""The published risk state: thresholds with hysteresis, conditions, margin call and kill switch.

The computed level is the highest of:

- utilisation (total IM / equity, base currency) against the thresholds:
  ``>= warn`` WARN, ``>= reduce`` REDUCE_ONLY, ``>= halt`` HALTED. A level is
  entered as soon as its threshold is reached and left only once utilisation
  is below threshold - hysteresis, so a value hovering at a boundary does
  not flap;
- stale or missing FX: WARN (margin figures can no longer be trusted, so
  nothing new opens; closing trades go on);
- a margin call: REDUCE_ONLY.

The operator's kill switch forces HALTED; resuming returns to the computed
level. Every change of the published or computed level yields a `RiskChange`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence

import msgspec

from bus.messages import AccountMargin, MarginSnapshot, RiskLevel, RiskState
from configs.schema import RiskCfg

UTIL_CAP = 1e6  # utilisation reported when equity is gone; finite so it survives JSON


class RiskTransition(str, enum.Enum):
    ESCALATE = "ESCALATE"  # computed level went up
    DEESCALATE = "DEESCALATE"  # computed level went down
    KILL = "KILL"  # operator kill switch on
    RESUME = "RESUME"  # kill switch off, back to the computed level


class RiskChange(msgspec.Struct, frozen=True, kw_only=True):
    """One transition: published level prev -> state, computed level prev_computed -> computed."""

    transition: RiskTransition
    prev: RiskLevel
    state: RiskLevel
    prev_computed: RiskLevel
    computed: RiskLevel
    reason: str
    ts_ns: int

    @property
    def name(self) -> str:
        return f"{self.transition.value}:{self.prev.value}->{self.state.value}"


def utilisation(initial: float, equity: float) -> float:
    """IM / equity; `UTIL_CAP` when equity is gone but margin is needed, 0 with no margin."""
    if equity > 0.0:
        return min(initial / equity, UTIL_CAP)
    return UTIL_CAP if initial > 0.0 else 0.0


class MarginCallLatch:
    """Margin call per scope (an account or "total"), with hysteresis on the way out.

    A call starts when equity < maintenance x buffer has held for `grace_ns`
    (a pair trade legging in is briefly margined unhedged; that alone must not
    force REDUCE_ONLY and unwind the very trade) and ends once equity >=
    maintenance x buffer x (1 + hysteresis).
    """

    def __init__(self, buffer: float, hysteresis: float, grace_ns: int = 0) -> None:
        self.buffer = buffer
        self.hysteresis = hysteresis
        self.grace_ns = grace_ns
        self._on: set[str] = set()
        self._since: dict[str, int] = {}

    @classmethod
    def from_cfg(cls, cfg: RiskCfg) -> "MarginCallLatch":
        return cls(cfg.margin_call_buffer, cfg.hysteresis, int(cfg.margin_call_grace_ms * 1_000_000))

    def update(self, scope: str, equity: float, maintenance: float, now_ns: int = 0) -> bool:
        """Whether `scope` is in a margin call after this observation at `now_ns`."""
        line = maintenance * self.buffer
        if scope in self._on:
            if equity >= line * (1.0 + self.hysteresis) and equity >= 0.0:
                self._on.discard(scope)
        elif equity < line or equity < 0.0:
            since = self._since.setdefault(scope, now_ns)
            if now_ns - since >= self.grace_ns:
                self._on.add(scope)
                self._since.pop(scope, None)
        else:
            self._since.pop(scope, None)
        return scope in self._on

    def active(self) -> list[str]:
        return sorted(self._on)


def margin_call_reason(scope: str, equity: float, maintenance: float, buffer: float, ccy: str) -> str:
    return (
        f"RISK_MARGIN_CALL: account={scope} equity={equity:.2f} maintenance={maintenance:.2f} "
        f"buffer={buffer:g} ccy={ccy}"
    )


class RiskStateMachine:
    """NORMAL -> WARN -> REDUCE_ONLY -> HALTED from utilisation and conditions, plus the kill switch."""

    def __init__(
        self,
        cfg: RiskCfg,
        *,
        stale_fx_level: RiskLevel = RiskLevel.WARN,
        margin_call_level: RiskLevel = RiskLevel.REDUCE_ONLY,
    ) -> None:
        self.cfg = cfg
        self.stale_fx_level = stale_fx_level
        self.margin_call_level = margin_call_level
        self._thresholds = (
            (RiskLevel.WARN, cfg.warn_utilisation),
            (RiskLevel.REDUCE_ONLY, cfg.reduce_utilisation),
            (RiskLevel.HALTED, cfg.halt_utilisation),
        )
        self._util_level = RiskLevel.NORMAL
        self.computed = RiskLevel.NORMAL
        self.computed_reason = "RISK_OK: utilisation=0.0000"
        self.kill = False
        self.kill_reason = ""
        self.utilisation = 0.0

    @property
    def state(self) -> RiskLevel:
        """The published level: HALTED under the kill switch, else the computed level."""
        return RiskLevel.HALTED if self.kill else self.computed

    @property
    def reason(self) -> str:
        if self.kill:
            return f"RISK_KILL_SWITCH: reason={self.kill_reason or 'operator'}"
        return self.computed_reason

    def _level_at(self, u: float, shift: float) -> RiskLevel:
        level = RiskLevel.NORMAL
        for lv, thr in self._thresholds:
            if u >= thr - shift:
                level = lv
        return level

    def _threshold(self, level: RiskLevel) -> float:
        for lv, thr in self._thresholds:
            if lv is level:
                return thr
        return 0.0

    def update(
        self,
        now_ns: int,
        utilisation: float,
        *,
        margin_call: str | None = None,
        stale_fx: Sequence[str] = (),
    ) -> RiskChange | None:
        """Recompute from total utilisation and conditions; a `RiskChange` if a level moved.

        `margin_call` is the call's reason (None: no call); `stale_fx` lists
        stale or missing FX pairs.
        """
        u = utilisation if math.isfinite(utilisation) else UTIL_CAP
        self.utilisation = u
        up = self._level_at(u, 0.0)
        if up.rank >= self._util_level.rank:
            self._util_level = up
        else:
            held = self._level_at(u, self.cfg.hysteresis)
            self._util_level = held if held.rank < self._util_level.rank else self._util_level

        lv = self._util_level
        if lv is RiskLevel.NORMAL:
            reason = f"RISK_OK: utilisation={u:.4f}"
        else:
            thr = self._threshold(lv)
            reason = (
                f"RISK_UTILISATION_{lv.value}: utilisation={u:.4f} threshold={thr:.4f} "
                f"release={thr - self.cfg.hysteresis:.4f}"
            )
        # among equal levels the first cause named wins: margin call, utilisation, FX
        causes: list[tuple[RiskLevel, str]] = []
        if margin_call:
            causes.append((self.margin_call_level, margin_call))
        causes.append((lv, reason))
        if stale_fx:
            causes.append((self.stale_fx_level, f"RISK_FX_STALE: pairs={','.join(stale_fx)}"))
        computed, computed_reason = causes[0]
        for c_lv, c_reason in causes[1:]:
            if c_lv.rank > computed.rank:
                computed, computed_reason = c_lv, c_reason

        prev_state, prev_computed = self.state, self.computed
        self.computed, self.computed_reason = computed, computed_reason
        if computed is prev_computed:
            return None
        kind = RiskTransition.ESCALATE if computed.rank > prev_computed.rank else RiskTransition.DEESCALATE
        return RiskChange(
            transition=kind, prev=prev_state, state=self.state, prev_computed=prev_computed,
            computed=computed, reason=computed_reason, ts_ns=now_ns,
        )

    def set_kill(self, on: bool, reason: str, now_ns: int) -> RiskChange | None:
        """Kill switch on (HALTED) or off (back to computed); repeating the current setting is a no-op."""
        if on == self.kill:
            return None
        prev = self.state
        self.kill = on
        self.kill_reason = reason if on else ""
        kind = RiskTransition.KILL if on else RiskTransition.RESUME
        text = self.reason if on else f"RISK_RESUMED: reason={reason or 'operator'}; {self.computed_reason}"
        return RiskChange(
            transition=kind, prev=prev, state=self.state, prev_computed=self.computed,
            computed=self.computed, reason=text, ts_ns=now_ns,
        )

    def risk_state(self, now_ns: int) -> RiskState:
        """The bus message for the current state."""
        return RiskState(
            state=self.state, computed=self.computed, kill=self.kill, reason=self.reason,
            utilisation=self.utilisation, ts_ns=now_ns,
        )


def account_margin(
    account: str, currency: str, equity: float, initial: float, maintenance: float
) -> AccountMargin:
    """An `AccountMargin` with utilisation = initial / equity and headroom = equity - initial."""
    return AccountMargin(
        account=account, currency=currency, equity=equity, initial=initial, maintenance=maintenance,
        utilisation=utilisation(initial, equity), headroom=equity - initial,
    )


def margin_snapshot(
    base_currency: str,
    accounts: Sequence[AccountMargin],
    total: AccountMargin,
    margin_call: bool,
    now_ns: int,
    suggestion: str = "",
) -> MarginSnapshot:
    """A `MarginSnapshot`: `accounts` each in its own currency, `total` in `base_currency`."""
    return MarginSnapshot(
        base_currency=base_currency,
        accounts=tuple(accounts),
        total=total,
        margin_call=margin_call,
        suggestion=suggestion,
        ts_ns=now_ns,
    )
