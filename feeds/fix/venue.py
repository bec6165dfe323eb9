"""A FIX venue's config turned into what the engines need: session specs, symbols, logon fields.

Both sides use it: xmc's initiators (executor: the order session; ingest: the
market-data session) and simex's acceptor, which mirrors the same sessions
with the CompIDs swapped.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from configs.schema import Config, FixSymbolCfg, FixVenueCfg
from feeds.fix import wire
from feeds.fix.session import SessionSpec, read_secret


class VenueSymbol(msgspec.Struct, frozen=True, kw_only=True):
    instrument: str  # config key (au, GC)
    symbol: str  # tag 55 on the wire
    security_exchange: str = ""  # tag 207, when the venue wants it
    quote_symbol: str = ""  # InstrumentCfg.symbol: what Quote.symbol and md.<venue>.<symbol> carry


class FixSymbols:
    """Instrument <-> wire symbol of one FIX venue (default: the instrument's configured symbol)."""

    def __init__(self, cfg: Config, venue: str) -> None:
        fx = cfg.venues[venue].fix
        mapping = fx.symbols if fx is not None else {}
        self.by_instrument: dict[str, VenueSymbol] = {}
        for key, inst in cfg.venue_instruments(venue).items():
            m = mapping.get(key, inst.symbol)
            if isinstance(m, FixSymbolCfg):
                vs = VenueSymbol(instrument=key, symbol=m.symbol, security_exchange=m.security_exchange,
                                 quote_symbol=inst.symbol)
            else:
                vs = VenueSymbol(instrument=key, symbol=m, quote_symbol=inst.symbol)
            self.by_instrument[key] = vs
        self.by_symbol = {vs.symbol: vs for vs in self.by_instrument.values()}

    def wire(self, instrument: str) -> VenueSymbol | None:
        return self.by_instrument.get(instrument)

    def instrument(self, symbol: str) -> VenueSymbol | None:
        return self.by_symbol.get(symbol)


def store_dir(run_dir: str | Path, venue: str, role: str, fx: FixVenueCfg) -> str:
    """Where QuickFIX keeps a session's sequence numbers and sent messages (survives restarts)."""
    if fx.store_dir and role != "acceptor":
        return str(Path(fx.store_dir) / role)
    return str(Path(run_dir) / "state" / "fix" / venue / role)


def order_session(run_dir: str | Path, venue: str, fx: FixVenueCfg) -> SessionSpec:
    """The executor's order session (initiator side)."""
    return SessionSpec(begin_string=fx.version, sender_comp_id=fx.sender_comp_id, target_comp_id=fx.target_comp_id,
                       host=fx.host, port=fx.port, store_dir=store_dir(run_dir, venue, "orders", fx),
                       heartbeat_s=fx.heartbeat_s, reconnect_s=fx.reconnect_s, logon_timeout_s=fx.logon_timeout_s,
                       reset_on_logon=fx.reset_on_logon, validate=fx.validate)


def md_session(run_dir: str | Path, venue: str, fx: FixVenueCfg) -> SessionSpec | None:
    """The ingest actor's market-data session (initiator side), None if the venue has none."""
    md = fx.md
    if md is None:
        return None
    return SessionSpec(begin_string=fx.version, sender_comp_id=md.sender_comp_id,
                       target_comp_id=md.target_comp_id or fx.target_comp_id, host=md.host or fx.host,
                       port=md.port or fx.port, store_dir=store_dir(run_dir, venue, "md", fx),
                       heartbeat_s=fx.heartbeat_s, reconnect_s=fx.reconnect_s, logon_timeout_s=fx.logon_timeout_s,
                       reset_on_logon=fx.reset_on_logon, validate=fx.validate)


def acceptor_sessions(run_dir: str | Path, venue: str, fx: FixVenueCfg, orders: bool = True) -> list[SessionSpec]:
    """simex's side of the venue's sessions: CompIDs swapped, listening on the venue's host and port(s).
    `orders=False`: the market-data session only (the orders go to a real FIX venue)."""
    out = []
    for spec in (order_session(run_dir, venue, fx) if orders else None, md_session(run_dir, venue, fx)):
        if spec is None:
            continue
        out.append(msgspec.structs.replace(
            spec, sender_comp_id=spec.target_comp_id, target_comp_id=spec.sender_comp_id, reset_on_logon=False,
            store_dir=str(Path(run_dir) / "state" / "fix" / venue / "acceptor")))
    return out


def logon_fields(fx: FixVenueCfg) -> dict[int, str]:
    """Username and password for our Logon; the password is read from its env var or file now."""
    out: dict[int, str] = {}
    if fx.username:
        out[wire.USERNAME] = fx.username
    password = read_secret(fx.password_env, fx.password_file)
    if password:
        out[wire.PASSWORD] = password
    return out
