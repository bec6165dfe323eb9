from __future__ import annotations

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from configs.schema import RiskCfg
from riskguard.margin import MarginCalculator, MarginPosition
from riskguard.scenario import (
    N_SCENARIOS,
    SCENARIO_MOVES,
    SCENARIO_VOL,
    SCENARIO_WEIGHTS,
    scenario_grid,
    scenario_grid_py,
    scenario_names,
)


def test_sixteen_scenarios_are_span_shaped():
    assert N_SCENARIOS == len(SCENARIO_MOVES) == len(SCENARIO_WEIGHTS) == len(SCENARIO_VOL) == 16
    assert list(SCENARIO_MOVES[:14]) == pytest.approx([0, 0, 1/3, 1/3, -1/3, -1/3, 2/3, 2/3, -2/3, -2/3, 1, 1, -1, -1])
    assert list(SCENARIO_MOVES[14:]) == [3.0, -3.0]
    assert list(SCENARIO_WEIGHTS) == [1.0] * 14 + [0.35, 0.35]
    assert list(SCENARIO_VOL) == [1, -1] * 7 + [0, 0]
    assert len(set(scenario_names())) == 16


def grid(qty, price, mult, fx, scan, group, n_groups):
    arr = lambda xs: np.array(xs, dtype=np.float64)  # noqa: E731
    return scenario_grid(arr(qty), arr(price), arr(mult), arr(fx), arr(scan), np.array(group, dtype=np.int64),
                         n_groups, SCENARIO_MOVES, SCENARIO_WEIGHTS)


def test_grid_of_one_long_position_by_hand():
    loss, risk, pos_risk, long_lots, short_lots = grid([2], [100.0], [10.0], [0.5], [0.1], [0], 1)
    exposure = 2 * 100.0 * 10.0 * 0.5 * 0.1  # 100 base-currency units per full scan range
    expected = [-exposure * m * w for m, w in zip(SCENARIO_MOVES, SCENARIO_WEIGHTS)]
    assert list(loss[0]) == pytest.approx(expected)
    assert loss[0][0] == loss[0][1]  # vol up and vol down coincide for futures
    assert risk[0] == pytest.approx(105.0)
    assert pos_risk[0] == pytest.approx(105.0)
    assert (long_lots[0], short_lots[0]) == (2.0, 0.0)


def test_group_members_move_together_and_net():
    loss, risk, pos_risk, long_lots, short_lots = grid([1, -2], [100.0, 50.0], [1, 1], [1, 1], [0.1, 0.1], [0, 0], 1)
    assert risk[0] == pytest.approx(0.0, abs=1e-9)
    assert list(pos_risk) == pytest.approx([10.5, 10.5])
    assert (long_lots[0], short_lots[0]) == (1.0, 2.0)


positions = st.lists(
    st.tuples(
        st.integers(-500, 500),
        st.floats(0.01, 1e5),
        st.sampled_from([1.0, 10.0, 50.0, 100.0, 1000.0, 125000.0]),
        st.floats(0.05, 10.0),
        st.floats(0.0, 0.5),
        st.integers(0, 4),
    ),
    min_size=0,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(positions)
def test_numba_grid_agrees_with_python_reference(rows):
    cols = list(zip(*rows)) if rows else [[]] * 6
    qty, price, mult, fx, scan, group = (list(c) for c in cols)
    got = grid(qty, price, mult, fx, scan, group, 5)
    ref = scenario_grid_py(qty, price, mult, fx, scan, group, 5, list(SCENARIO_MOVES), list(SCENARIO_WEIGHTS))
    for a, b in zip(got, ref):
        np.testing.assert_allclose(np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel(),
                                   rtol=1e-9, atol=1e-6)


def _scenario_calc(demo) -> MarginCalculator:
    insts = {k: msgspec.structs.replace(i, margin_model="scenario") for k, i in demo.instruments.items() if not i.fx}
    return MarginCalculator(insts, RiskCfg(broker_addon=1.3))


others = st.lists(
    st.tuples(st.sampled_from(["ES", "NQ", "CL", "6E"]), st.integers(-50, 50), st.floats(1.0, 1e4)),
    max_size=6,
)


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(["au", "GC", "HSI", "MHI"]),
    st.integers(-300, 300),
    st.integers(0, 300),
    st.floats(1.0, 1e5),
    others,
)
def test_scenario_margin_non_negative_and_monotone_in_abs_quantity(demo, subject, qty, extra, price, rest):
    calc = _scenario_calc(demo)
    book = [MarginPosition(account="a", instrument=k, qty=q, price=p, fx_to_base=1.0) for k, q, p in rest]

    def margin(q: int) -> float:
        mine = MarginPosition(account="a", instrument=subject, qty=q, price=price, fx_to_base=1.0)
        return calc.compute([*book, mine]).initial

    bigger = qty + extra if qty >= 0 else qty - extra
    m_small, m_big = margin(qty), margin(bigger)
    assert m_small >= 0.0
    assert m_big >= m_small - 1e-9 * max(1.0, m_small)
    assert margin(-qty) == pytest.approx(m_small)
