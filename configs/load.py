"""Load a TOML config into `Config`, reporting every error at once.

msgspec stops at the first error, so the loader walks the schema itself:
every key is checked against its field's type, unknown and missing keys are
named, and cross-references are checked after the types. Each error carries
the file, the key path, the offending value and why.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import msgspec

from configs.schema import Config
from configs.units import UNIT_GROUPS, unit_factor

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")  # hosts only this machine can reach


class ConfigError(msgspec.Struct, frozen=True):
    file: str
    path: str
    value: Any
    why: str

    def __str__(self) -> str:
        shown = repr(self.value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return f"{self.file}: {self.path} = {shown}: {self.why}"


class ConfigInvalid(Exception):
    """Raised with every error found in a config."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


_MISSING = object()
_HOURS = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _walk(value: Any, tp: Any, path: str, out: list[tuple[str, Any, str]]) -> None:
    """Check `value` against annotation `tp`, appending (path, value, why) for each error."""
    if _is_struct(tp):
        if not isinstance(value, dict):
            out.append((path, value, f"expected a table, got {type(value).__name__}"))
            return
        fields = {f.encode_name: f for f in msgspec.structs.fields(tp)}
        for key in value:
            if key not in fields:
                out.append((_join(path, key), value[key], f"unknown key (known: {', '.join(sorted(fields))})"))
        for name, f in fields.items():
            if name in value:
                _walk(value[name], f.type, _join(path, name), out)
            elif f.required:
                out.append((_join(path, name), None, "missing required key"))
        return
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is dict and _is_struct(args[1]):
        if not isinstance(value, dict):
            out.append((path, value, "expected a table"))
            return
        for key, item in value.items():
            _walk(item, args[1], _join(path, key), out)
        return
    if origin is list and _is_struct(args[0]):
        if not isinstance(value, list):
            out.append((path, value, "expected an array"))
            return
        for i, item in enumerate(value):
            _walk(item, args[0], f"{path}[{i}]", out)
        return
    if origin in (Union, types.UnionType):
        structs = [a for a in args if _is_struct(a)]
        if len(structs) == 1 and isinstance(value, dict):
            _walk(value, structs[0], path, out)
            return
    try:
        msgspec.convert(value, tp, strict=True)
    except msgspec.ValidationError as exc:
        out.append((path, value, str(exc).split(" - at `")[0]))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _merge(base: dict, over: dict) -> dict:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_toml(path: Path, errors: list[ConfigError], chain: tuple[Path, ...]) -> dict:
    path = path.resolve()
    if path in chain:
        errors.append(ConfigError(str(chain[-1]), "include", str(path), "include cycle"))
        return {}
    chain = (*chain, path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        errors.append(ConfigError(str(path), "", str(path), "file not found"))
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        errors.append(ConfigError(str(path), "", "", f"not valid TOML: {exc}"))
        return {}
    merged: dict = {}
    includes = data.get("include", [])
    if not isinstance(includes, list):
        errors.append(ConfigError(str(path), "include", includes, "expected an array of file names"))
        includes = []
    for inc in includes:
        merged = _merge(merged, _read_toml(path.parent / str(inc), errors, chain))
    return _merge(merged, data)


def load_config(path: str | Path, *, keys: bool = True) -> Config:
    """Load and validate `path`; raise `ConfigInvalid` naming every error. `keys=False` skips
    checking the CURVE key directory (for `xmc keys init`, which creates it)."""
    path = Path(path)
    errors: list[ConfigError] = []
    data = _read_toml(path, errors, ())
    if errors:
        raise ConfigInvalid(errors)
    found: list[tuple[str, Any, str]] = []
    _walk(data, Config, "", found)
    errors = [ConfigError(str(path), p, v, why) for p, v, why in found]
    if errors:
        raise ConfigInvalid(errors)
    cfg = msgspec.convert(data, Config)
    errors = [ConfigError(str(path), p, v, why) for p, v, why in check_references(cfg, path.parent, keys=keys)]
    if errors:
        raise ConfigInvalid(errors)
    return _resolve_paths(cfg, path.parent)


def _resolve_paths(cfg: Config, base_dir: Path) -> Config:
    """Make replay and key paths absolute (relative ones are relative to the config file)."""
    if cfg.endpoints.curve_keys and not Path(cfg.endpoints.curve_keys).is_absolute():
        keys = str((base_dir / cfg.endpoints.curve_keys).resolve())
        cfg = msgspec.structs.replace(cfg, endpoints=msgspec.structs.replace(cfg.endpoints, curve_keys=keys))
    venues = {}
    for key, v in cfg.venues.items():
        if v.replay is not None and not Path(v.replay.path).is_absolute():
            rp = msgspec.structs.replace(v.replay, path=str((base_dir / v.replay.path).resolve()))
            v = msgspec.structs.replace(v, replay=rp)
        venues[key] = v
    return msgspec.structs.replace(cfg, venues=venues)


def lockstep_start_ns(text: str) -> int | None:
    """`run.lockstep.start_utc` as UTC ns; None if it is not an ISO 8601 time."""
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp()) * 10**9 + t.microsecond * 1000


def check_references(cfg: Config, base_dir: Path, *, keys: bool = True) -> list[tuple[str, Any, str]]:
    """Cross-field checks that types alone cannot express."""
    out: list[tuple[str, Any, str]] = []
    inst, venues = cfg.active_instruments(), cfg.venues
    fx_pairs = {k for k, i in inst.items() if i.fx}
    simulated = cfg.simulated_venues()

    def need_fx(path: str, ccy: str, target: str) -> None:
        if ccy != target and f"{ccy}{target}" not in fx_pairs and f"{target}{ccy}" not in fx_pairs:
            out.append((path, ccy, f"no FX instrument converts {ccy} to {target} (have: {', '.join(sorted(fx_pairs)) or 'none'})"))

    for key, i in inst.items():
        p = f"instruments.{key}"
        if i.unit not in UNIT_GROUPS:
            out.append((f"{p}.unit", i.unit, f"unknown unit (known: {', '.join(sorted(UNIT_GROUPS))})"))
        for j, h in enumerate(i.hours):
            if not _HOURS.match(h):
                out.append((f"{p}.hours[{j}]", h, "expected 'HH:MM-HH:MM' (UTC)"))
        if i.fx and len(key) != 6:
            out.append((p, key, "an FX instrument's key must be a 6-letter pair such as USDCNH"))
        if i.margin_model == "fixed" and i.margin_fixed <= 0 and not i.fx:
            out.append((f"{p}.margin_fixed", i.margin_fixed, "margin_model 'fixed' needs margin_fixed > 0"))
        if i.venue in simulated and i.sim is None:
            out.append((f"{p}.sim", None, "an instrument on a simulated venue needs a [sim] price process"))
        if not i.fx:
            need_fx(f"{p}.currency", i.currency, cfg.run.base_currency)
    for key, v in venues.items():
        p = f"venues.{key}"
        if v.kind == "replay":
            if v.replay is None:
                out.append((f"{p}.replay", None, "kind 'replay' needs a [replay] table"))
            else:
                rp = Path(v.replay.path)
                if not rp.is_absolute():
                    rp = base_dir / rp
                if not rp.exists():
                    out.append((f"{p}.replay.path", v.replay.path, f"file not found (looked at {rp})"))
                for sym, ikey in v.replay.symbols.items():
                    if ikey not in inst:
                        out.append((f"{p}.replay.symbols.{sym}", ikey, "unknown instrument"))
        if v.kind == "fix":
            out += check_fix_venue(cfg, key, v, simulated)
        elif v.fix is not None:
            out.append((f"{p}.fix", "{...}", f"a [fix] table belongs to a venue of kind 'fix' (this one is {v.kind!r})"))
    for key, pc in cfg.pairs.items():
        p = f"pairs.{key}"
        for leg in ("leg_a", "leg_b"):
            ikey = getattr(pc, leg)
            if ikey not in inst:
                why = "instrument's venue is not configured" if ikey in cfg.instruments else "unknown instrument"
                out.append((f"{p}.{leg}", ikey, f"{why} (active: {', '.join(sorted(inst))})"))
                continue
            i = inst[ikey]
            need_fx(f"{p}.{leg}", i.currency, pc.currency)
            if unit_factor(i.unit, pc.unit) is None:
                out.append((f"{p}.unit", pc.unit, f"cannot convert {ikey}'s unit {i.unit!r} to {pc.unit!r}"))
        if pc.leg_a == pc.leg_b:
            out.append((f"{p}.leg_b", pc.leg_b, "a pair needs two different instruments"))
        if pc.exit >= pc.entry:
            out.append((f"{p}.exit", pc.exit, f"must be below entry ({pc.entry})"))
    for key, a in cfg.accounts.items():
        p = f"accounts.{key}"
        for j, v in enumerate(a.venues):
            if v not in venues:
                out.append((f"{p}.venues[{j}]", v, "unknown venue"))
        need_fx(f"{p}.currency", a.currency, cfg.run.base_currency)
        if a.allocation != "single" and not a.sub_accounts:
            out.append((f"{p}.allocation", a.allocation, "needs at least one sub_account"))
        names = [s.name for s in a.sub_accounts]
        if len(set(names)) != len(names):
            out.append((f"{p}.sub_accounts", names, "sub-account names must be unique"))
    traded = {v for a in cfg.accounts.values() for v in a.venues}
    for key, pc in cfg.pairs.items():
        for leg in (pc.leg_a, pc.leg_b):
            if leg in inst and inst[leg].venue not in traded:
                out.append((f"pairs.{key}", leg, f"no account trades venue {inst[leg].venue}"))
    r = cfg.risk
    if not r.warn_utilisation < r.reduce_utilisation <= r.halt_utilisation:
        out.append(("risk", [r.warn_utilisation, r.reduce_utilisation, r.halt_utilisation],
                    "thresholds must satisfy warn_utilisation < reduce_utilisation <= halt_utilisation"))
    for j, sc in enumerate(r.spread_credits):
        for side in ("a", "b"):
            if getattr(sc, side) not in inst:
                out.append((f"risk.spread_credits[{j}].{side}", getattr(sc, side), "unknown instrument"))
    for key, ac in cfg.actors.items():
        p = f"actors.{key}"
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", key):
            out.append((p, key, "actor names are lower-case letters, digits and _ (at most 31)"))
        if ac.kind == "ingest" and ac.venue not in venues:
            out.append((f"{p}.venue", ac.venue, "an ingest actor needs a known venue"))
        for j, v in enumerate(ac.venues):
            if v not in venues:
                out.append((f"{p}.venues[{j}]", v, "unknown venue"))
            elif venues[v].kind == "replay":
                out.append((f"{p}.venues[{j}]", v, "simex serves venues of kind 'sim' (and 'fix' as a FIX acceptor), "
                                                  "not 'replay'"))
        for j, v in enumerate(ac.md_only):
            fx = venues[v].fix if v in venues else None
            if v not in ac.venues or fx is None:
                out.append((f"{p}.md_only[{j}]", v, "must be a FIX venue also listed in this simex's venues"))
            elif fx.md is None or (fx.md.port or fx.port) == fx.port:
                out.append((f"{p}.md_only[{j}]", v, "its [fix.md] session needs a port of its own (the order "
                                                     "session's port belongs to the real venue)"))
    kinds = [a.kind for a in cfg.actors.values() if a.enabled]
    ls = cfg.run.lockstep
    if ls.enabled:
        if lockstep_start_ns(ls.start_utc) is None:
            out.append(("run.lockstep.start_utc", ls.start_utc, "expected an ISO 8601 UTC time such as 2026-01-05T02:00:00Z"))
        for key, ac in cfg.actors.items():
            if ac.enabled and ac.kind == "ingest" and ac.venue in venues and venues[ac.venue].kind != "sim":  # FIX too
                out.append((f"actors.{key}.venue", ac.venue, "lockstep replays the simulated exchange only: every "
                                                            "ingest must read a venue of kind 'sim'"))
        for single in ("simex", "trigger"):
            if kinds.count(single) != 1:
                out.append(("run.lockstep.enabled", True, f"lockstep needs exactly one enabled {single} actor"))
    for single in ("trigger", "executor", "marginwatch", "journal"):
        if kinds.count(single) > 1:
            out.append(("actors", single, f"at most one {single} actor"))
    if not cfg.actors:
        out.append(("actors", {}, "no actors configured"))
    out += check_endpoints(cfg, base_dir, keys=keys)
    return out


def check_endpoints(cfg: Config, base_dir: Path, *, keys: bool = True) -> list[tuple[str, Any, str]]:
    """The bus is closed to strangers: tcp beyond loopback needs CURVE keys, or says plaintext."""
    from bus.security import key_problems, listens_beyond_loopback

    ep = cfg.endpoints
    out: list[tuple[str, Any, str]] = []
    if ep.transport == "tcp" and not ep.curve_keys and not ep.plaintext and listens_beyond_loopback(cfg):
        out.append(("endpoints.curve_keys", "", f"tcp on host {ep.host!r} listens beyond loopback and anyone who "
                    "reaches it could read the order flow and send commands: name a CURVE key directory "
                    "(`xmc keys init DIR`), or set endpoints.plaintext = true to run unauthenticated"))
    if ep.curve_keys and ep.plaintext:
        out.append(("endpoints.plaintext", True, "set together with endpoints.curve_keys: choose one"))
    if keys and ep.curve_keys and ep.transport == "tcp":
        root = Path(ep.curve_keys) if Path(ep.curve_keys).is_absolute() else base_dir / ep.curve_keys
        for file, why in key_problems(root, sorted(cfg.actors)):
            out.append(("endpoints.curve_keys", file, why))
    return out


def check_fix_venue(cfg: Config, key: str, v: Any, simulated: set[str]) -> list[tuple[str, Any, str]]:
    """A FIX venue: its session table, symbols, secrets and capabilities fit together."""
    p = f"venues.{key}"
    out: list[tuple[str, Any, str]] = []
    fx = v.fix
    if fx is None:
        return [(f"{p}.fix", None, "kind 'fix' needs a [fix] table (host, port, sender_comp_id, target_comp_id)")]
    venue_insts = {k for k, i in cfg.active_instruments().items() if i.venue == key}
    for ikey in fx.symbols:
        if ikey not in venue_insts:
            out.append((f"{p}.fix.symbols.{ikey}", ikey, f"not an instrument of venue {key} "
                                                         f"(its instruments: {', '.join(sorted(venue_insts)) or 'none'})"))
    if fx.password_env and fx.password_file:
        out.append((f"{p}.fix.password_file", fx.password_file, "give password_env or password_file, not both"))
    elif fx.password_env and not os.environ.get(fx.password_env):
        out.append((f"{p}.fix.password_env", fx.password_env, "this environment variable is not set (the logon password "
                                                             "is read from it at start)"))
    elif fx.password_file and not Path(fx.password_file).is_file():
        out.append((f"{p}.fix.password_file", fx.password_file, "file not found (the logon password is read from it)"))
    if fx.store_dir and not Path(fx.store_dir).is_absolute():
        out.append((f"{p}.fix.store_dir", fx.store_dir, "must be an absolute path (the default lives in the run dir)"))
    md_only = any(key in a.md_only for a in cfg.actors.values() if a.kind == "simex" and a.enabled)
    served_host = ((fx.md.host or fx.host) if fx.md is not None else fx.host) if md_only else fx.host
    if key in simulated and served_host not in LOOPBACK_HOSTS:
        out.append((f"{p}.fix{'.md' if md_only else ''}.host", served_host, "a FIX session served by simex "
                    f"listens on loopback only (one of {', '.join(LOOPBACK_HOSTS)})"))
    md = fx.md
    if md is not None:
        same = (md.host or fx.host, md.port or fx.port, md.sender_comp_id, md.target_comp_id or fx.target_comp_id) == (
            fx.host, fx.port, fx.sender_comp_id, fx.target_comp_id)
        if same:
            out.append((f"{p}.fix.md.sender_comp_id", md.sender_comp_id,
                        "the market-data session needs its own CompIDs (ingest and executor log on separately)"))
    for akey, ac in cfg.actors.items():
        if ac.enabled and ac.kind == "ingest" and ac.venue == key and md is None:
            out.append((f"actors.{akey}.venue", key, f"venue {key} is a FIX venue with no [fix.md] session to read "
                                                     "market data from"))
    if not fx.market_orders:
        for pk, pc in cfg.pairs.items():
            legs = [leg for leg in (pc.leg_a, pc.leg_b) if leg in venue_insts]
            if legs and pc.rollback_far_ticks <= 0:
                out.append((f"pairs.{pk}.rollback_far_ticks", pc.rollback_far_ticks,
                            f"venue {key} takes no market orders (fix.market_orders = false): unwinds of "
                            f"{', '.join(legs)} need a marketable limit, rollback_far_ticks > 0"))
    return out

