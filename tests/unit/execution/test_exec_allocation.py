"""Sub-account allocation and iceberg slicing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bus.messages import Side
from configs.schema import AccountCfg, SubAccountCfg
from execution.allocation import Allocator, SubAlloc, iceberg_slices, slice_allocation


def account(allocation: str, *subs: SubAccountCfg, iceberg: int = 0) -> AccountCfg:
    return AccountCfg(currency="CNY", balance=1e6, venues=["SHFE"], allocation=allocation,  # type: ignore[arg-type]
                      sub_accounts=list(subs), iceberg_visible=iceberg)


A = SubAccountCfg(name="cn-a", capacity=2.0, max_lots=100)
B = SubAccountCfg(name="cn-b", capacity=1.0, max_lots=100)


def parts(alloc) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    return [(p.account, p.qty) for p in alloc.parts]


def test_account_without_sub_accounts_takes_everything() -> None:
    alloc = Allocator("hk", account("single")).allocate("GC", Side.BUY, 7)
    assert parts(alloc) == [("hk", 7)] and alloc.complete and alloc.reason == ""


def test_single_puts_everything_on_the_first_eligible_sub_account() -> None:
    denied_a = SubAccountCfg(name="cn-a", deny=["au"])
    alloc = Allocator("cn", account("single", denied_a, B)).allocate("au", Side.BUY, 5)
    assert parts(alloc) == [("cn-b", 5)]


def test_round_robin_deals_lots_and_rotates_the_start_between_orders() -> None:
    alloc = Allocator("cn", account("round_robin", A, B))
    assert parts(alloc.allocate("au", Side.BUY, 3)) == [("cn-a", 2), ("cn-b", 1)]
    assert parts(alloc.allocate("au", Side.BUY, 3)) == [("cn-a", 1), ("cn-b", 2)]
    assert parts(alloc.allocate("au", Side.BUY, 1)) == [("cn-a", 1)]
    assert parts(alloc.allocate("au", Side.BUY, 1)) == [("cn-b", 1)]


def test_capacity_splits_by_weight() -> None:
    alloc = Allocator("cn", account("capacity", A, B)).allocate("au", Side.BUY, 9)
    assert parts(alloc) == [("cn-a", 6), ("cn-b", 3)]


def test_capacity_cap_counts_current_position_and_overflows_to_others() -> None:
    small = SubAccountCfg(name="cn-a", capacity=2.0, max_lots=10)
    alloc = Allocator("cn", account("capacity", small, B)).allocate("au", Side.BUY, 9, {"cn-a": 8})
    assert parts(alloc) == [("cn-a", 2), ("cn-b", 7)]


def test_selling_against_a_long_position_has_room_past_max_lots() -> None:
    small = SubAccountCfg(name="cn-a", max_lots=5)
    alloc = Allocator("cn", account("single", small)).allocate("au", Side.SELL, 12, {"cn-a": 7})
    assert parts(alloc) == [("cn-a", 12)]


def test_allocation_short_of_capacity_says_so() -> None:
    small = SubAccountCfg(name="cn-a", max_lots=3)
    alloc = Allocator("cn", account("round_robin", small)).allocate("au", Side.BUY, 5)
    assert alloc.placed == 3 and not alloc.complete
    assert alloc.reason == "ALLOC_CAPACITY: instrument=au wanted=5 placed=3 eligible=1"


def test_allow_list_excludes_other_instruments() -> None:
    only_gc = SubAccountCfg(name="cn-a", allow=["GC"])
    alloc = Allocator("cn", account("round_robin", only_gc, B)).allocate("au", Side.BUY, 4)
    assert parts(alloc) == [("cn-b", 4)]


def test_iceberg_slices_cut_children_of_at_most_visible_lots() -> None:
    assert iceberg_slices(7, 3) == (3, 3, 1)
    assert iceberg_slices(6, 3) == (3, 3)
    assert iceberg_slices(7, 0) == (7,)
    assert iceberg_slices(0, 3) == ()


def test_slice_allocation_keeps_sub_account_of_each_child() -> None:
    alloc = Allocator("cn", account("capacity", A, B)).allocate("au", Side.BUY, 9)
    assert slice_allocation(alloc, 4) == (
        SubAlloc(account="cn-a", qty=4), SubAlloc(account="cn-a", qty=2), SubAlloc(account="cn-b", qty=3))


_subs = st.lists(
    st.builds(
        SubAccountCfg,
        name=st.sampled_from(["s0", "s1", "s2", "s3", "s4"]),
        capacity=st.floats(0.1, 10.0),
        max_lots=st.integers(1, 30),
        deny=st.lists(st.sampled_from(["au", "GC"]), max_size=1),
        allow=st.lists(st.sampled_from(["au", "GC"]), max_size=1),
    ),
    min_size=1, max_size=5, unique_by=lambda s: s.name,
)


@settings(max_examples=300, deadline=None)
@given(subs=_subs, rule=st.sampled_from(["single", "round_robin", "capacity"]), qty=st.integers(0, 120),
       side=st.sampled_from([Side.BUY, Side.SELL]), held=st.lists(st.integers(-40, 40), min_size=5, max_size=5),
       calls=st.integers(1, 3))
def test_allocation_never_overplaces_breaks_caps_or_uses_denied_accounts(
        subs: list[SubAccountCfg], rule: str, qty: int, side: Side, held: list[int], calls: int) -> None:
    positions = {f"s{i}": h for i, h in enumerate(held)}
    alloc = Allocator("cn", account(rule, *subs))
    for _ in range(calls):
        got = alloc.allocate("au", side, qty, positions)
        by = {s.name: s for s in subs}
        assert got.placed == sum(p.qty for p in got.parts) <= qty
        assert (got.placed < qty) == got.reason.startswith("ALLOC_CAPACITY: instrument=au")
        for p in got.parts:
            sub = by[p.account]
            assert p.qty > 0
            assert "au" not in sub.deny and (not sub.allow or "au" in sub.allow)
            assert side.sign * positions[p.account] + p.qty <= sub.max_lots  # concentration cap
        eligible_room = sum(max(0, s.max_lots - side.sign * positions[s.name]) for s in subs
                            if "au" not in s.deny and (not s.allow or "au" in s.allow))
        if rule != "single":
            assert got.placed == min(qty, eligible_room)  # splitting rules place all they can
