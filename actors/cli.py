"""`xmc`: the operator's command line (click).

Exit codes: 0 success, 1 runtime failure, 2 bad usage or invalid config.
Listing commands take `--json` and then print exactly one JSON document on
stdout; diagnostics go to stderr.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
import zmq

from actors.supervisor import Supervisor, read_status_file, run_dir_processes
from feeds.fix.sessionview import sessions_from_detail
from bus.command import CommandTimeout, call
from bus.messages import ActorState, CmdAck, Control
from configs.load import ConfigInvalid, load_config
from configs.schema import Config

if TYPE_CHECKING:
    from datetime import datetime

    from bus.auditstore import AuditReader

RUN_DIR_OPT = click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=lambda: os.environ.get("XMC_RUN_DIR", "run"),
    show_default="./run or $XMC_RUN_DIR",
    help="Run directory (logs, journal, sockets, status).",
)


class CliFailure(click.ClickException):
    exit_code = 1


def _err(text: str) -> None:
    click.echo(text, err=True)


def _load(config: str, keys: bool = True) -> Config:
    try:
        return load_config(config, keys=keys)
    except ConfigInvalid as exc:
        for e in exc.errors:
            _err(str(e))
        _err(f"{len(exc.errors)} error(s) in {config}")
        sys.exit(2)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def supervisor_info(run_dir: Path) -> dict | None:
    """The running supervisor's info, or None when none runs in this run dir."""
    try:
        info = json.loads((run_dir / "supervisor.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return info if _pid_alive(int(info["pid"])) else None


def _curve_for(cfg: Config, server: str) -> tuple[bytes, bytes, bytes] | None:
    """The operator's CURVE keys to talk to `server` (None: no CURVE in this config)."""
    from bus.security import BusSecurity, KeyError_, operator_name

    if not (cfg.endpoints.transport == "tcp" and cfg.endpoints.curve_keys):
        return None
    try:
        return BusSecurity(cfg, operator_name(cfg), operator=True).client_keys(server)
    except KeyError_ as exc:
        raise CliFailure(str(exc)) from None


def _operator_keys(config: str) -> tuple[bytes, bytes, bytes] | None:
    """The CURVE keys the CLI talks to the supervisor with (None: no CURVE in this run's config)."""
    from bus.security import SUPERVISOR

    try:
        cfg = load_config(config)
    except (ConfigInvalid, OSError):
        return None  # the run's config changed under it: try without, the supervisor will say
    return _curve_for(cfg, SUPERVISOR)


def control(run_dir: Path, cmd: str, timeout_s: float = 5.0, **args: str) -> CmdAck:
    info = supervisor_info(run_dir)
    if info is None:
        raise CliFailure(f"no supervisor runs in {run_dir} (start one with `xmc up CONFIG`)")
    try:
        reply = call(zmq.Context.instance(), info["cli"], Control(cmd=cmd, args=args), timeout_s,
                     curve=_operator_keys(info["config"]))
    except CommandTimeout as exc:
        raise CliFailure(f"supervisor pid {info['pid']} did not answer: {exc}") from None
    if not isinstance(reply, CmdAck):
        raise CliFailure(f"unexpected answer {type(reply).__name__}")
    if not reply.ok:
        raise CliFailure(reply.reason)
    return reply


def _show(doc: object, as_json: bool, table: str) -> None:
    """One JSON document on stdout, or the named table of `actors.tables` for a person."""
    if as_json:
        click.echo(json.dumps(doc))
        return
    from actors import tables

    getattr(tables, table)(doc)


def live_status(run_dir: Path) -> dict:
    return json.loads(control(run_dir, "status").data["json"])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """xmc: cross-market spread arbitrage (supervisor and operator tools)."""


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@RUN_DIR_OPT
@click.option("--duration", type=click.FloatRange(min=0.1), help="Run this many seconds, then shut down cleanly.")
@click.option("--detach", is_flag=True, help="Run the supervisor in the background; return once all actors are ready.")
@click.option("--live", is_flag=True, help="Show a live terminal view while running (foreground only).")
@click.option("--external", is_flag=True,
              help="Start no actor: they run elsewhere (docker-compose); watch heartbeats, relay the kill switch, answer the CLI.")
def up(config: str, run_dir: Path, duration: float | None, detach: bool, live: bool, external: bool) -> None:
    """Start and supervise every actor of CONFIG."""
    cfg = _load(config)
    info = supervisor_info(run_dir)
    if info is not None:
        raise CliFailure(f"a supervisor (pid {info['pid']}) already runs in {run_dir}; `xmc down` first")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "supervisor.json").unlink(missing_ok=True)
    if detach:
        _up_detached(config, cfg, run_dir, duration, external)
        return
    sup = Supervisor(config, cfg, run_dir, duration, external)
    sup.start()
    _err(f"xmc: supervising {len(sup.actors)} actors in {run_dir.resolve()} (Ctrl-C stops)")
    if live:
        from actors.liveview import attach_live_view

        attach_live_view(sup)
    code = sup.run()
    _err(f"xmc: stopped ({sup._stop_reason}), exit {code}")
    sys.exit(code)


def _up_detached(config: str, cfg: Config, run_dir: Path, duration: float | None, external: bool) -> None:
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    err = open(run_dir / "logs" / "supervisor.stderr", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "actors.supervisor", config, str(run_dir), str(duration or ""), "external" if external else ""],
        stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT, start_new_session=True,
    )
    err.close()
    deadline = time.monotonic() + cfg.run.ready_timeout_s + 10
    status: dict = {}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CliFailure(f"supervisor exited with {proc.returncode}; see {run_dir / 'logs' / 'supervisor.stderr'}")
        if supervisor_info(run_dir) is not None and external:
            click.echo(f"xmc: supervisor pid {proc.pid} watching external actors, run dir {run_dir}")
            return
        if supervisor_info(run_dir) is not None:
            try:
                status = live_status(run_dir)
            except CliFailure:
                status = {}
            states = {a["name"]: a["state"] for a in status.get("actors", [])}
            faulted = sorted(n for n, s in states.items() if s == ActorState.FAULTED)
            if faulted:
                raise CliFailure(f"actors faulted: {', '.join(faulted)} (supervisor pid {proc.pid} still runs; see `xmc logs`)")
            if states and all(ActorState(s).live for s in states.values()):
                click.echo(f"xmc: {len(states)} actors ready, supervisor pid {proc.pid}, run dir {run_dir}")
                return
        time.sleep(0.1)  # CLI waiting on another process; not test synchronisation
    raise CliFailure(f"not all actors ready within {cfg.run.ready_timeout_s + 10:.0f}s: {status}")


@main.command()
@RUN_DIR_OPT
@click.option("--timeout", type=float, default=30.0, show_default=True)
def down(run_dir: Path, timeout: float) -> None:
    """Stop everything this run dir's supervisor started; no process is left."""
    info = supervisor_info(run_dir)
    if info is not None:
        pid = int(info["pid"])
        try:
            control(run_dir, "down")
        except CliFailure as exc:
            _err(f"xmc: {exc.message}; terminating pid {pid}")
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(pid):
            _err(f"xmc: supervisor pid {pid} still alive after {timeout}s; killing it")
            os.kill(pid, signal.SIGKILL)
    leftovers = _kill_leftovers(run_dir)
    if leftovers:
        _err(f"xmc: killed leftover actor processes {leftovers}")
    click.echo("xmc: down" if info is not None else f"xmc: no supervisor was running in {run_dir}")


def _kill_leftovers(run_dir: Path) -> list[int]:
    """Kill processes of this run dir that outlived their supervisor."""
    killed = []
    for pid in run_dir_processes(run_dir):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
        killed.append(pid)
    return killed


@main.command()
@RUN_DIR_OPT
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def status(run_dir: Path, as_json: bool) -> None:
    """Per actor: pid, state, restarts, heartbeat age, messages, decode errors, gaps."""
    running = supervisor_info(run_dir) is not None
    doc = live_status(run_dir) if running else read_status_file(run_dir)
    if doc is None:
        raise CliFailure(f"no run in {run_dir}")
    doc["running"] = running
    doc["fix_sessions"] = [row for a in doc.get("actors", []) for row in sessions_from_detail(a["name"], a.get("detail", {}))]
    _show(doc, as_json, "status_table")


@main.command()
@click.argument("actor")
@RUN_DIR_OPT
def restart(actor: str, run_dir: Path) -> None:
    """Restart one actor."""
    control(run_dir, "restart", actor=actor)
    click.echo(f"xmc: restarting {actor}")


@main.command()
@RUN_DIR_OPT
@click.option("--reason", default="operator", show_default=True)
def halt(run_dir: Path, reason: str) -> None:
    """Kill switch: force risk state HALTED (pair trades in flight still finish their rollback)."""
    control(run_dir, "halt", reason=reason)
    click.echo(f"xmc: HALTED ({reason})")


@main.command()
@RUN_DIR_OPT
def resume(run_dir: Path) -> None:
    """Release the kill switch: back to the computed risk state."""
    control(run_dir, "resume")
    click.echo("xmc: resumed")


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@RUN_DIR_OPT
def check(config: str, run_dir: Path) -> None:
    """Validate CONFIG: exit 0 if valid; 2 and every error (key path, value, why) on stderr."""
    cfg = _load(config)
    click.echo(
        f"ok: {config}: {len(cfg.venues)} venues, {len(cfg.active_instruments())} instruments, "
        f"{len(cfg.pairs)} pairs, {len(cfg.accounts)} accounts, {len(cfg.actors)} actors"
    )


@main.command()
@click.argument("actor", required=False)
@RUN_DIR_OPT
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--level", type=click.Choice(["debug", "info", "warning", "error"]), help="Minimum level.")
@click.option("--trade", "trade_id", help="Only lines about this trade (trade_id, or its orders' cl_ord_id).")
@click.option("--grep", "greps", multiple=True, metavar="KEY=VALUE", help="Only lines whose KEY equals VALUE (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array of the matching records (not with -f).")
def logs(actor: str | None, run_dir: Path, follow: bool, level: str | None, trade_id: str | None, greps: tuple[str, ...],
         as_json: bool) -> None:
    """Tail and filter the JSON logs of one or all actors (JSON lines, merged by time)."""
    from actors.logview import LogFilter, follow_logs, read_logs

    try:
        flt = LogFilter.build(level, trade_id, greps)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    log_dir = run_dir / "logs"
    if not log_dir.is_dir():
        raise CliFailure(f"no logs in {log_dir}")
    if actor is not None and not (log_dir / f"{actor}.jsonl").exists():
        known = sorted(p.stem for p in log_dir.glob("*.jsonl"))
        raise CliFailure(f"no log for actor {actor!r} (have: {', '.join(known)})")
    if as_json:
        if follow:
            raise click.UsageError("--json prints one document; it does not go with -f")
        click.echo("[" + ",".join(read_logs(log_dir, actor, flt)) + "]")
        return
    for line in read_logs(log_dir, actor, flt):
        click.echo(line)
    if follow:
        try:
            for line in follow_logs(log_dir, actor, flt):
                click.echo(line)
        except KeyboardInterrupt:
            pass


def _reader(run_dir: Path) -> "AuditReader":
    from bus.auditstore import AuditReader

    try:
        return AuditReader(run_dir / "journal.sqlite")
    except FileNotFoundError as exc:
        raise CliFailure(f"{exc} (was a journal actor configured for this run?)") from None


def _run_config(run_dir: Path) -> Config | None:
    """The config the run was started with (from its status file), if it still loads."""
    doc = read_status_file(run_dir)
    path = (doc or {}).get("supervisor", {}).get("config")
    if not path:
        return None
    try:
        return load_config(path)
    except ConfigInvalid:
        return None


@main.command()
@RUN_DIR_OPT
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--state", type=click.Choice(["COMPLETED", "CANCELLED", "ROLLED_BACK", "BROKEN"]), help="Only trades in this state.")
@click.option("--pair", help="Only trades of this pair.")
def trades(run_dir: Path, as_json: bool, state: str | None, pair: str | None) -> None:
    """Every pair trade: pair, direction, state, legs, sub-accounts, realised P&L, resubmits/rollbacks."""
    from actors import tradebook

    reader = _reader(run_dir)
    rows = tradebook.trades(reader, _run_config(run_dir), state=state, pair=pair)
    _show(rows, as_json, "trades_table")


@main.command()
@click.argument("trade_id")
@RUN_DIR_OPT
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def trace(trade_id: str, run_dir: Path, as_json: bool) -> None:
    """The whole chain of one trade, hop by hop, with latencies."""
    from actors import tradebook

    doc = tradebook.trace(_reader(run_dir), trade_id, _run_config(run_dir))
    if doc is None:
        raise CliFailure(f"no trade {trade_id!r} in {run_dir / 'journal.sqlite'}")
    _show(doc, as_json, "trace_table")


@main.command()
@RUN_DIR_OPT
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def capital(run_dir: Path, as_json: bool) -> None:
    """Capital per account and currency: equity, margin, utilisation, headroom, the margin-call
    line and the suggested transfer (asked of the run's marginwatch)."""
    from bus.endpoints import Endpoints

    info = supervisor_info(run_dir)
    if info is None:
        raise CliFailure(f"no supervisor runs in {run_dir} (start one with `xmc up CONFIG`)")
    cfg = _load(info["config"])
    watcher = next((n for n, a in cfg.actors.items() if a.kind == "marginwatch" and a.enabled), None)
    if watcher is None:
        raise CliFailure("no marginwatch in this run: nobody keeps the capital view")
    try:
        reply = call(zmq.Context.instance(), Endpoints(cfg, run_dir).cmd(watcher), Control(cmd="capital"), 5.0,
                     curve=_curve_for(cfg, watcher))
    except CommandTimeout as exc:
        raise CliFailure(f"{watcher} did not answer: {exc}") from None
    if not isinstance(reply, CmdAck) or not reply.ok:
        raise CliFailure(getattr(reply, "reason", f"unexpected answer {type(reply).__name__}"))
    _show(json.loads(reply.data["json"]), as_json, "capital_table")


@main.group()
def keys() -> None:
    """CURVE keys for the bus over tcp (endpoints.curve_keys)."""


@keys.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@RUN_DIR_OPT
@click.option("--config", "config", type=click.Path(dir_okay=False), help="Create a key pair for every actor of CONFIG.")
@click.option("--actor", "actors", multiple=True, help="An actor to create a key pair for (repeatable).")
@click.option("--operator", "operators", multiple=True,
              help="An operator (CLI user) to create a key pair for (repeatable; default: $USER).")
def keys_init(directory: Path, run_dir: Path, config: str | None, actors: tuple[str, ...],
              operators: tuple[str, ...]) -> None:
    """Create DIRECTORY/actors/<actor>.key[_secret] (and the supervisor's) and
    DIRECTORY/operators/<name>.key[_secret]; existing pairs are kept. Secret files are 0600.
    (--run-dir is accepted like everywhere; keys belong to a deployment, not to a run.)"""
    from bus.security import create_keys

    names = list(actors)
    if config:
        names += [n for n in _load(config, keys=False).actors if n not in names]
    if not names:
        raise click.UsageError("name the actors: --config CONFIG or --actor NAME")
    ops = list(operators) or [os.environ.get("USER") or "operator"]
    written = create_keys(directory, names, ops)
    publics = sorted(str(f) for f in written if f.suffix == ".key")
    click.echo(f"xmc: {len(publics)} new key pair(s) in {directory} ({len(names) + 1} actors, {len(ops)} operators)")
    click.echo("  every host needs every *.key (public); each host only its own *.key_secret")


@main.group()
def audit() -> None:
    """Compliance exports of the audit store."""


@audit.command("export")
@RUN_DIR_OPT
@click.option("--day", required=True, type=click.DateTime(formats=["%Y-%m-%d"]), help="UTC day, YYYY-MM-DD.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
def audit_export(run_dir: Path, day: "datetime", fmt: str, out: Path | None) -> None:
    """Every journalled event of one UTC day, as CSV or JSON."""
    import csv
    import io

    from actors import tradebook

    rows = tradebook.export_day(_reader(run_dir), day.date())
    stream = open(out, "w", newline="", encoding="utf-8") if out else io.StringIO()
    n = 0
    if fmt == "json":
        items = list(rows)
        n = len(items)
        json.dump(items, stream)
    else:
        writer = None
        for row in rows:
            row = dict(row, body=json.dumps(row["body"]))
            if writer is None:
                writer = csv.DictWriter(stream, fieldnames=list(row))
                writer.writeheader()
            writer.writerow(row)
            n += 1
    if out:
        stream.close()
        _err(f"xmc: {n} events written to {out}")
    else:
        click.echo(stream.getvalue(), nl=False)  # type: ignore[union-attr]


@main.command()
@RUN_DIR_OPT
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def report(run_dir: Path, as_json: bool) -> None:
    """Run summary: trades by state, P&L, fill/resubmit/rollback rates, tick-to-trade, margin use; PNG chart."""
    from actors.runreport import build_report, save_chart

    reader = _reader(run_dir)
    cfg = _run_config(run_dir)
    doc = build_report(reader, cfg)
    doc["chart"] = str(save_chart(reader, cfg, run_dir / "report.png"))
    _show(doc, as_json, "report_tables")


if __name__ == "__main__":
    main()
