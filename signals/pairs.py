"""How each pair's legs convert into the pair's currency and unit, from the config."""

from __future__ import annotations

from collections.abc import Collection

import msgspec

from configs.schema import InstrumentCfg, PairCfg
from configs.units import unit_factor


class LegConversion(msgspec.Struct, frozen=True, kw_only=True):
    """price_in_pair_terms = price * unit * (fx mid, or 1 / fx mid when invert; 1 when fx is None)."""

    instrument: str
    unit: float
    fx: str | None  # FX instrument key, None when the leg is already in the pair's currency
    invert: bool


def fx_route(ccy: str, target: str, fx_keys: Collection[str]) -> tuple[str | None, bool]:
    """The FX instrument that turns a price in `ccy` into `target`, and whether to divide by its mid.

    An FX key "USDCNY" means 1 USD = mid CNY: USD -> CNY multiplies, CNY -> USD divides.
    """
    if ccy == target:
        return None, False
    if f"{ccy}{target}" in fx_keys:
        return f"{ccy}{target}", False
    if f"{target}{ccy}" in fx_keys:
        return f"{target}{ccy}", True
    raise ValueError(f"CONFIG_FX_MISSING: from={ccy} to={target} have={','.join(sorted(fx_keys)) or 'none'}")


def leg_conversion(key: str, inst: InstrumentCfg, pair: PairCfg, fx_keys: Collection[str]) -> LegConversion:
    """Conversion of instrument `key` into `pair`'s currency and unit; ValueError if impossible."""
    unit = unit_factor(inst.unit, pair.unit)
    if unit is None:
        raise ValueError(f"CONFIG_UNIT_MISMATCH: leg={key} unit={inst.unit} pair_unit={pair.unit}")
    fx, invert = fx_route(inst.currency, pair.currency, fx_keys)
    return LegConversion(instrument=key, unit=unit, fx=fx, invert=invert)
