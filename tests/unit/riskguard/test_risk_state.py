from __future__ import annotations

import pytest

from bus.messages import RiskLevel
from configs.schema import RiskCfg
from riskguard.state import (
    UTIL_CAP,
    MarginCallLatch,
    RiskStateMachine,
    RiskTransition,
    account_margin,
    margin_call_reason,
    utilisation,
)

N, W, R, H = RiskLevel.NORMAL, RiskLevel.WARN, RiskLevel.REDUCE_ONLY, RiskLevel.HALTED


@pytest.fixture
def sm() -> RiskStateMachine:
    cfg = RiskCfg(warn_utilisation=0.8, reduce_utilisation=0.9, halt_utilisation=1.0, hysteresis=0.05)
    return RiskStateMachine(cfg)


def levels(sm: RiskStateMachine, us: list[float]) -> list[RiskLevel]:
    out = []
    for t, u in enumerate(us):
        sm.update(t, u)
        out.append(sm.state)
    return out


def test_utilisation_crossing_each_threshold_escalates(sm):
    assert levels(sm, [0.5, 0.8, 0.9, 1.0]) == [N, W, R, H]


def test_escalation_yields_named_transition_and_reason(sm):
    change = sm.update(7, 0.85)
    assert change.transition is RiskTransition.ESCALATE
    assert (change.prev, change.state, change.name) == (N, W, "ESCALATE:NORMAL->WARN")
    assert change.reason == "RISK_UTILISATION_WARN: utilisation=0.8500 threshold=0.8000 release=0.7500"
    assert change.ts_ns == 7


def test_jump_past_several_thresholds_goes_straight_to_highest(sm):
    assert levels(sm, [0.1, 1.3]) == [N, H]


def test_level_held_until_below_threshold_minus_hysteresis(sm):
    assert levels(sm, [0.82, 0.79, 0.76, 0.75, 0.7499]) == [W, W, W, W, N]


def test_no_flapping_when_oscillating_at_boundary(sm):
    changes = [sm.update(t, u) for t, u in enumerate([0.79, 0.81, 0.79, 0.81, 0.78, 0.80, 0.77])]
    assert [c.transition for c in changes if c] == [RiskTransition.ESCALATE]
    assert sm.state is W


def test_going_down_steps_to_level_still_held(sm):
    sm.update(0, 1.05)
    assert levels(sm, [0.96, 0.92, 0.86, 0.84]) == [H, R, R, W]
    change = sm.update(9, 0.5)
    assert change.transition is RiskTransition.DEESCALATE
    assert change.reason == "RISK_OK: utilisation=0.5000"


def test_stale_fx_holds_warn(sm):
    change = sm.update(0, 0.1, stale_fx=["USDCNH"])
    assert sm.state is W
    assert change.reason == "RISK_FX_STALE: pairs=USDCNH"
    sm.update(1, 0.1)
    assert sm.state is N


def test_stale_fx_does_not_lower_a_higher_level(sm):
    sm.update(0, 0.95, stale_fx=["USDCNH"])
    assert sm.state is R
    assert sm.reason.startswith("RISK_UTILISATION_REDUCE_ONLY:")


def test_margin_call_forces_reduce_only(sm):
    reason = margin_call_reason("cn", 90.0, 100.0, 1.2, "CNY")
    sm.update(0, 0.3, margin_call=reason)
    assert sm.state is R
    assert sm.reason == "RISK_MARGIN_CALL: account=cn equity=90.00 maintenance=100.00 buffer=1.2 ccy=CNY"


def test_kill_switch_overrides_computed_state(sm):
    sm.update(0, 0.1)
    change = sm.set_kill(True, "operator halt", 5)
    assert change.transition is RiskTransition.KILL
    assert (sm.state, sm.computed, sm.kill) == (H, N, True)
    assert sm.reason == "RISK_KILL_SWITCH: reason=operator halt"
    sm.update(6, 0.0)
    assert sm.state is H


def test_repeated_kill_is_a_no_op(sm):
    assert sm.set_kill(True, "a", 0) is not None
    assert sm.set_kill(True, "a", 1) is None
    assert sm.set_kill(False, "", 2) is not None
    assert sm.set_kill(False, "", 3) is None


def test_resume_returns_to_state_computed_meanwhile(sm):
    sm.set_kill(True, "x", 0)
    change = sm.update(1, 0.85)
    assert (change.prev, change.state, change.computed) == (H, H, W)
    change = sm.set_kill(False, "ok", 2)
    assert change.transition is RiskTransition.RESUME
    assert (change.prev, change.state) == (H, W)
    assert sm.state is W


def test_risk_state_message_carries_state_computed_and_kill(sm):
    sm.update(0, 0.85)
    sm.set_kill(True, "x", 1)
    msg = sm.risk_state(2)
    assert (msg.state, msg.computed, msg.kill, msg.utilisation, msg.ts_ns) == (H, W, True, 0.85, 2)


def test_non_finite_utilisation_halts(sm):
    sm.update(0, float("nan"))
    assert sm.state is H


def test_utilisation_of_lost_equity_is_capped():
    assert utilisation(50.0, 100.0) == 0.5
    assert utilisation(50.0, 0.0) == UTIL_CAP
    assert utilisation(50.0, -10.0) == UTIL_CAP
    assert utilisation(0.0, -10.0) == 0.0


def test_margin_call_latch_enters_below_buffer_and_leaves_above_hysteresis():
    latch = MarginCallLatch(buffer=1.2, hysteresis=0.05)  # line 120, release 126
    seq = [(130.0, False), (119.9, True), (124.0, True), (125.9, True), (126.0, False), (121.0, False)]
    for equity, expect in seq:
        assert latch.update("cn", equity, 100.0) is expect, equity
    assert latch.active() == []


def test_margin_call_latch_negative_equity_is_a_call():
    latch = MarginCallLatch(buffer=1.2, hysteresis=0.05)
    assert latch.update("hk", -1.0, 0.0)


def test_account_margin_builder_computes_utilisation_and_headroom():
    am = account_margin("cn", "CNY", 1000.0, 250.0, 200.0)
    assert (am.utilisation, am.headroom) == (0.25, 750.0)


def test_margin_call_latch_with_grace_ignores_a_brief_breach_and_latches_a_lasting_one() -> None:
    from riskguard.state import MarginCallLatch

    latch = MarginCallLatch(buffer=1.2, hysteresis=0.05, grace_ns=500)
    assert latch.update("cn", equity=100.0, maintenance=100.0, now_ns=1_000) is False  # breach starts
    assert latch.update("cn", equity=200.0, maintenance=100.0, now_ns=1_200) is False  # hedge filled: gone
    assert latch.update("cn", equity=100.0, maintenance=100.0, now_ns=2_000) is False  # a new breach
    assert latch.update("cn", equity=100.0, maintenance=100.0, now_ns=2_499) is False
    assert latch.update("cn", equity=100.0, maintenance=100.0, now_ns=2_500) is True
