"""`MarginWatch`: the pure core of the marginwatch actor.

Feed it quotes, FX rates, fills and the kill switch; call `evaluate(now_ns)`
on a timer (`RiskCfg.snapshot_interval_ms`) to get the margin snapshot, the
risk state, new alerts and whether the state changed (publish at once then).

An amount that cannot be converted for want of an FX rate counts as zero
(equity) or is left out (a position's margin), and the missing pair is
reported with the stale FX pairs, which holds the state at WARN or above.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from bus.messages import (
    AccountMargin,
    Alert,
    FxRate,
    KillSwitch,
    MarginSnapshot,
    OrderEvent,
    Quote,
    RiskLevel,
    RiskState,
    Severity,
)
from configs.schema import Config
from riskguard.fx import FxTable
from riskguard.ledger import Ledger, PositionView
from riskguard.margin import MarginCalculator, MarginPosition, MarginResult
from riskguard.scenario import warm_up as _warm_scenarios
from riskguard.state import (
    MarginCallLatch,
    RiskChange,
    RiskStateMachine,
    account_margin,
    margin_call_reason,
    margin_snapshot,
    utilisation,
)
from riskguard.transfer import suggest_transfer

_SEVERITY = {
    RiskLevel.NORMAL: Severity.INFO,
    RiskLevel.WARN: Severity.WARNING,
    RiskLevel.REDUCE_ONLY: Severity.CRITICAL,
    RiskLevel.HALTED: Severity.CRITICAL,
}


class Evaluation(NamedTuple):
    snapshot: MarginSnapshot
    state: RiskState
    alerts: list[Alert]
    changed: bool  # published or computed level or kill flag differs from the last evaluation


class MarginWatch:
    """Ledger + FX + margin + risk state, driven by messages and an explicit clock."""

    def __init__(
        self,
        cfg: Config,
        *,
        actor: str = "marginwatch",
        calendar_charge: Mapping[str, float] | None = None,
        cross_account_credits: bool = True,
        fx_equivalents: Mapping[str, str] | None = None,
    ) -> None:
        self.cfg = cfg
        self.actor = actor
        self.base = cfg.run.base_currency
        self.fx = FxTable(self.base, expected=sorted(cfg.fx_instruments()), equivalents=fx_equivalents)
        self.ledger = Ledger.from_config(cfg)
        self.calc = MarginCalculator.from_config(
            cfg, calendar_charge=calendar_charge, cross_account_credits=cross_account_credits
        )
        self.sm = RiskStateMachine(cfg.risk)
        self.latch = MarginCallLatch.from_cfg(cfg.risk)
        self.last_margin: MarginResult | None = None
        self._pending: list[RiskChange] = []
        self._active: dict[str, Alert] = {}
        self._last: tuple[RiskLevel, RiskLevel, bool] | None = None

    @staticmethod
    def warm_up() -> None:
        """Compile or load the numba scenario kernel; call before reporting ready."""
        _warm_scenarios()

    # --- inputs ------------------------------------------------------------------

    def on_quote(self, q: Quote) -> None:
        """Mark the instrument; a quote of an FX instrument (e.g. USDCNH) also updates FX."""
        key = self.ledger.on_quote(q)
        if key is not None and self.cfg.instruments[key].fx:
            mid = self.ledger.mark(key)
            if mid is not None:
                self.fx.update(key, mid, q.recv_ns)

    def on_fx(self, rate: FxRate) -> None:
        self.fx.on_fx(rate)

    def on_fill(self, ev: OrderEvent, account: str | None = None) -> bool:
        """Apply a FILL execution report (others are ignored; repeated exec ids too); True if applied."""
        return self.ledger.on_fill(ev, account) is not None

    def set_kill(self, on: bool, reason: str, now_ns: int) -> RiskChange | None:
        """Operator kill switch; the returned change (if any) should be published at once."""
        change = self.sm.set_kill(on, reason, now_ns)
        if change is not None:
            self._pending.append(change)
        return change

    def on_kill(self, msg: KillSwitch) -> RiskChange | None:
        return self.set_kill(msg.halted, msg.reason, msg.ts_ns)

    def positions(self) -> list[PositionView]:
        return self.ledger.positions()

    # --- evaluation --------------------------------------------------------------

    def evaluate(self, now_ns: int) -> Evaluation:
        """Recompute margin, equity and risk state at `now_ns`."""
        fx, base, risk = self.fx, self.base, self.cfg.risk
        missing: set[str] = set()

        def conv(amount: float, src: str, dst: str) -> float:
            if amount == 0.0 or src == dst:
                return amount
            r = fx.try_rate(src, dst)
            if r is None:
                missing.add(src + dst)
                return 0.0
            return amount * r

        views = [v for v in self.ledger.positions() if v.qty != 0]
        mpos = []
        for v in views:
            r = fx.try_rate(v.currency, base)
            if r is None:
                missing.add(v.currency + base)
                continue
            price = v.mark if v.mark is not None else v.avg_price
            mpos.append(
                MarginPosition(account=v.account, instrument=v.instrument, qty=v.qty, price=price, fx_to_base=r)
            )
        result = self.calc.compute(mpos)
        self.last_margin = result

        accounts: list[AccountMargin] = []
        calls: list[tuple[str, str]] = []  # (scope, reason)
        eq_base = im_base = mm_base = 0.0
        for name, acct in self.cfg.accounts.items():
            ccy = acct.currency
            equity = acct.balance + sum(
                conv(v.realised + v.unrealised, v.currency, ccy) for v in self.ledger.positions(name)
            )
            req = result.account(name)
            im, mm = conv(req.initial, base, ccy), conv(req.maintenance, base, ccy)
            accounts.append(account_margin(name, ccy, equity, im, mm))
            eq_base += conv(equity, ccy, base)
            im_base += req.initial
            mm_base += req.maintenance
            if self.latch.update(name, equity, mm, now_ns):
                calls.append((name, margin_call_reason(name, equity, mm, risk.margin_call_buffer, ccy)))
        total = account_margin("total", base, eq_base, im_base, mm_base)
        if self.latch.update("total", eq_base, mm_base, now_ns):
            calls.append(("total", margin_call_reason("total", eq_base, mm_base, risk.margin_call_buffer, base)))

        stale_pairs = fx.stale(now_ns, int(risk.fx_stale_ms * 1e6))
        # a missing conversion already explained by a stale pair of one of its currencies is not repeated
        unexplained = {m for m in missing if not any(m[:3] in p or m[3:] in p for p in stale_pairs)}
        stale = sorted(set(stale_pairs) | unexplained)
        change = self.sm.update(
            now_ns, utilisation(im_base, eq_base), margin_call=calls[0][1] if calls else None, stale_fx=stale
        )
        if change is not None:
            self._pending.append(change)

        target = max(risk.warn_utilisation - risk.hysteresis, 0.01)
        sugg = suggest_transfer(accounts, fx.rate, base, target, trigger=risk.warn_utilisation)
        snapshot = margin_snapshot(base, accounts, total, bool(calls), now_ns, sugg.text if sugg else "")
        state = self.sm.risk_state(now_ns)

        alerts = [
            Alert(
                severity=_SEVERITY[c.state],
                code=f"RISK_STATE_{c.state.value}", text=f"{c.name}: {c.reason}", actor=self.actor, ts_ns=c.ts_ns,
            )
            for c in self._pending
        ]
        self._pending.clear()
        conditions: dict[str, tuple[Severity, str, str]] = {}
        for scope, reason in calls:
            conditions[f"margin_call:{scope}"] = (Severity.CRITICAL, "RISK_MARGIN_CALL", reason)
        for pair in stale:
            conditions[f"fx:{pair}"] = (Severity.WARNING, "RISK_FX_STALE", f"RISK_FX_STALE: pair={pair}")
        for a in accounts:
            if a.utilisation >= risk.warn_utilisation:
                text = f"RISK_ACCOUNT_UTILISATION: account={a.account} utilisation={a.utilisation:.4f}"
                if sugg is not None and sugg.dst == a.account:
                    text += f"; {sugg.text}"
                conditions[f"util:{a.account}"] = (Severity.WARNING, "RISK_ACCOUNT_UTILISATION", text)
        alerts += self._edges(conditions, now_ns)

        key = (state.state, state.computed, state.kill)
        changed = key != self._last
        self._last = key
        return Evaluation(snapshot, state, alerts, changed)

    def _edges(self, conditions: dict[str, tuple[Severity, str, str]], now_ns: int) -> list[Alert]:
        """Alerts for conditions that started or ended since the last evaluation."""
        out = []
        for key, (sev, code, text) in conditions.items():
            if key not in self._active:
                alert = Alert(severity=sev, code=code, text=text, actor=self.actor, ts_ns=now_ns)
                self._active[key] = alert
                out.append(alert)
        for key in [k for k in self._active if k not in conditions]:
            old = self._active.pop(key)
            out.append(
                Alert(severity=Severity.INFO, code=f"{old.code}_CLEARED", text=f"cleared: {old.text}",
                      actor=self.actor, ts_ns=now_ns)
            )
        return out
