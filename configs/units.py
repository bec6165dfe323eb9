"""Physical units prices are quoted in, and conversion between them."""

from __future__ import annotations

TROY_OUNCE_G = 31.1034768

# unit -> (group, size of one unit in the group's base unit)
UNIT_GROUPS: dict[str, tuple[str, float]] = {
    "g": ("mass", 1.0),
    "kg": ("mass", 1000.0),
    "oz": ("mass", TROY_OUNCE_G),
    "bbl": ("volume", 1.0),
    "pt": ("index", 1.0),
    "ccy": ("currency", 1.0),
}


def unit_factor(src: str, dst: str) -> float | None:
    """Multiply a price per `src` by this to get the price per `dst`; None if incompatible."""
    if src not in UNIT_GROUPS or dst not in UNIT_GROUPS:
        return None
    g1, s1 = UNIT_GROUPS[src]
    g2, s2 = UNIT_GROUPS[dst]
    if g1 != g2:
        return None
    return s2 / s1
