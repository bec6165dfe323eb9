"""Where each actor binds: ipc sockets under the run dir, or tcp ports from a base.

Publishers and command servers bind; everyone else connects. Names are
derived, never configured twice, so one config describes a whole run.
"""

from __future__ import annotations

from pathlib import Path

from configs.schema import Config

SUPERVISOR = "supervisor"
IPC_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


class EndpointError(ValueError):
    pass


class Endpoints:
    """Endpoint names for one run."""

    def __init__(self, cfg: Config, run_dir: str | Path) -> None:
        self.transport = cfg.endpoints.transport
        self.host = cfg.endpoints.host
        self.base_port = cfg.endpoints.base_port
        self.sock_dir = Path(run_dir).resolve() / "sock"
        names = [SUPERVISOR] + sorted(cfg.actors)
        self._index = {n: i for i, n in enumerate(names)}

    def _ep(self, actor: str, role: str, slot: int) -> str:
        if self.transport == "tcp":
            if actor not in self._index:
                raise EndpointError(f"unknown actor {actor!r}")
            host = self.host.replace("{actor}", actor)  # one host per actor, e.g. docker-compose services
            return f"tcp://{host}:{self.base_port + 4 * self._index[actor] + slot}"
        path = self.sock_dir / f"{actor}.{role}"
        ep = f"ipc://{path}"
        if len(str(path)) > IPC_PATH_MAX:
            raise EndpointError(f"ipc path too long ({len(str(path))} > {IPC_PATH_MAX}): {path}; use a shorter --run-dir")
        return ep

    def bindable(self, endpoint: str) -> str:
        """The form to bind: with per-actor hosts, listen on every interface of this host."""
        if self.transport == "tcp" and "{actor}" in self.host:
            return "tcp://*:" + endpoint.rsplit(":", 1)[1]
        return endpoint

    def pub(self, actor: str) -> str:
        """The actor's PUB socket (market data, events, heartbeats)."""
        return self._ep(actor, "pub", 0)

    def cmd(self, actor: str) -> str:
        """The actor's ROUTER for commands (orders, control, replay requests)."""
        return self._ep(actor, "cmd", 1)

    def supervisor_ctl(self) -> str:
        """The supervisor's ROUTER that actors report to (ready, heartbeats)."""
        return self._ep(SUPERVISOR, "ctl", 2)

    def supervisor_cli(self) -> str:
        """The supervisor's ROUTER for the CLI (status, down, restart, halt, resume)."""
        return self._ep(SUPERVISOR, "cli", 3)
