"""Who may talk on the bus: CURVE on every tcp socket, private folders for ipc.

Keys (``xmc keys init DIR``; the config names DIR as ``endpoints.curve_keys``)::

    DIR/actors/<actor>.key            public key of each actor and of "supervisor"
    DIR/actors/<actor>.key_secret     its secret key (mode 0600; only on that actor's host)
    DIR/operators/<name>.key          public key of each operator (the CLI)
    DIR/operators/<name>.key_secret   its secret key (only on that operator's machine)

On tcp with keys, every socket that binds is a CURVE server and every socket that connects
a CURVE client that knows its server's public key. Each process runs ZeroMQ's own ZAP
authenticator (`zmq.auth.thread.ThreadAuthenticator`) and accepts, per ZAP domain:

- ``bus`` (every actor's PUB and command sockets): actor keys and operator keys;
- ``actors`` (the supervisor's socket actors report to): actor keys only;
- ``operators`` (the supervisor's CLI socket: status, halt, resume, restart, down):
  operator keys only.

A peer without CURVE, with a key not listed, or with a wrong server key never completes the
handshake: it receives nothing and nothing it sends is read. A routing id is bound to its key:
on a command socket (and the supervisor's), a message whose routing id names an actor must
come with that actor's key, and no peer takes over another's routing id (no ROUTER_HANDOVER
with CURVE), so a key valid on the bus cannot pose as another actor. Every refused handshake is
counted per socket (a socket monitor, `RefusalWatch`) and logged once per socket, reason and
peer key. The authenticated key of a message's sender is its ZeroMQ ``User-Id`` property;
`BusSecurity.who` names it. On ipc the sockets sit in the run dir's ``sock`` folder (mode
0700): only the run dir's owner can connect, and is named ``local:<user>``.
"""

from __future__ import annotations

import getpass
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
import zmq.utils.z85
from zmq.utils.monitor import parse_monitor_message

from configs.load import LOOPBACK_HOSTS
from configs.schema import Config

ACTORS_DIR = "actors"
OPERATORS_DIR = "operators"
SUPERVISOR = "supervisor"
DOMAIN_BUS = "bus"
DOMAIN_ACTORS = "actors"
DOMAIN_OPERATORS = "operators"
# what libzmq reports for a refused handshake; a plaintext peer shows as "protocol" or
# "handshake" depending on the socket types, a CURVE peer with a wrong server key as "handshake"
REFUSAL_EVENTS = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "auth",  # a CURVE peer whose key is not listed (ZAP said no)
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake",
}


class KeyError_(ValueError):
    """A key directory that cannot be used; the message names the file and why."""


def _z85_public(path: Path) -> bytes:
    """The z85 public key of a key file; ValueError if it is not a 32-byte CURVE key."""
    public, _ = zmq.auth.load_certificate(path)
    if len(zmq.utils.z85.decode(public)) != 32:
        raise ValueError(f"not a 32-byte CURVE key ({len(public)} z85 characters)")
    return public


@dataclass
class KeyRing:
    """The public keys of a deployment (and this process's own secret key, when it has one)."""

    root: Path
    actors: dict[str, bytes] = field(default_factory=dict)  # name -> z85 public key
    operators: dict[str, bytes] = field(default_factory=dict)
    bad: list[tuple[str, str]] = field(default_factory=list)  # (file, why): key files left out
    _names: dict[bytes, str] = field(default_factory=dict)  # z85 public key -> who (`name_of`)

    @classmethod
    def load(cls, root: str | os.PathLike[str]) -> "KeyRing":
        """Every readable public key under `root`; a bad file is left out and named in `bad`
        (that peer cannot connect; the rest of the deployment runs)."""
        ring = cls(Path(root))
        for sub, into, kind in ((ACTORS_DIR, ring.actors, ""), (OPERATORS_DIR, ring.operators, "operator:")):
            folder = ring.root / sub
            if not folder.is_dir():
                continue
            for f in sorted(folder.glob("*.key")):
                try:
                    into[f.stem] = _z85_public(f)
                except (OSError, ValueError) as exc:
                    ring.bad.append((str(f), f"unreadable public key: {exc}"))
                    continue
                ring._names[into[f.stem]] = kind + f.stem
        return ring

    def name_of(self, z85: bytes | str) -> str | None:
        """Who holds this public key: an actor's name, or "operator:<name>"."""
        return self._names.get(z85.encode() if isinstance(z85, str) else z85)

    def secret_path(self, name: str, operator: bool = False) -> Path:
        return self.root / (OPERATORS_DIR if operator else ACTORS_DIR) / f"{name}.key_secret"

    def allowed(self, domain: str) -> frozenset[bytes]:
        if domain == DOMAIN_ACTORS:
            return frozenset(self.actors.values())
        if domain == DOMAIN_OPERATORS:
            return frozenset(self.operators.values())
        return frozenset(self.actors.values()) | frozenset(self.operators.values())


def create_keys(root: str | os.PathLike[str], actors: list[str], operators: list[str]) -> list[Path]:
    """Key pairs for `actors` (and the supervisor) and `operators` under `root`; existing pairs
    are kept. Folders 0700, secret files 0600. The files written, secrets included."""
    root = Path(root)
    written: list[Path] = []
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    for sub, names in ((ACTORS_DIR, [SUPERVISOR, *actors]), (OPERATORS_DIR, operators)):
        folder = root / sub
        folder.mkdir(exist_ok=True)
        os.chmod(folder, 0o700)
        for name in names:
            if (folder / f"{name}.key_secret").exists():
                continue
            public, secret = zmq.auth.create_certificates(folder, name)
            os.chmod(secret, 0o600)
            os.chmod(public, 0o644)
            written += [Path(public), Path(secret)]
    return written


def key_problems(root: str | os.PathLike[str], actors: list[str]) -> list[tuple[str, str]]:
    """(file, why) for every key a deployment of these actors lacks; [] when complete."""
    root = Path(root)
    out: list[tuple[str, str]] = []
    if not root.is_dir():
        return [(str(root), "no such directory (create it with `xmc keys init DIR`)")]
    for name in (SUPERVISOR, *actors):
        pub = root / ACTORS_DIR / f"{name}.key"
        if not pub.is_file():
            out.append((str(pub), f"no public key for actor {name}"))
    ring = KeyRing.load(root)
    out += ring.bad
    if not ring.operators:
        out.append((str(root / OPERATORS_DIR), "no operator key: the CLI could not command the supervisor"))
    for secret in sorted(root.glob("*/*.key_secret")):
        try:
            mode = stat.S_IMODE(secret.stat().st_mode)
        except OSError as exc:
            out.append((str(secret), f"unreadable secret key: {exc}"))
            continue
        if mode & 0o077:
            out.append((str(secret), f"secret key readable by others (mode {mode:o}; chmod 600)"))
    return out


def listens_beyond_loopback(cfg: Config) -> bool:
    """True if a tcp deployment binds anything a machine other than this one can reach."""
    ep = cfg.endpoints
    if ep.transport != "tcp":
        return False
    if "{actor}" in ep.host:
        return True  # per-actor hosts bind on every interface
    return not is_loopback(ep.host)


def is_loopback(host: str) -> bool:
    """Only this machine can reach `host`."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


class _Provider:
    """The ZAP authenticator's question, answered from the key ring (runs on its thread)."""

    def __init__(self, ring: KeyRing) -> None:
        self.allowed = {d: ring.allowed(d) for d in (DOMAIN_BUS, DOMAIN_ACTORS, DOMAIN_OPERATORS)}
        self.denied: dict[tuple[str, bytes], int] = {}

    def callback(self, domain: str, key: bytes) -> bool:
        if key in self.allowed.get(domain, frozenset()):
            return True
        k = (domain, key)
        self.denied[k] = self.denied.get(k, 0) + 1
        return False


class BusSecurity:
    """One process's side of it: its keys, its authenticator, how it sets up each socket."""

    def __init__(self, cfg: Config, identity: str, *, operator: bool = False) -> None:
        """`identity`: this process's actor name ("supervisor" for the supervisor), or the
        operator's name for the CLI (`operator=True`)."""
        ep = cfg.endpoints
        self.transport = ep.transport
        self.enabled = ep.transport == "tcp" and bool(ep.curve_keys)
        self.identity = identity
        self.ring: KeyRing | None = None
        self._public = self._secret = b""
        self._auth: object | None = None
        self._provider: _Provider | None = None
        self._keys_logged: set[tuple[str, str]] = set()
        if not self.enabled:
            return
        self.ring = KeyRing.load(ep.curve_keys)
        path = self.ring.secret_path(identity, operator)
        try:
            public, secret = zmq.auth.load_certificate(path)
        except (OSError, ValueError) as exc:
            raise KeyError_(f"CURVE_KEY_MISSING: file={path} why={exc}") from exc
        if secret is None:
            raise KeyError_(f"CURVE_KEY_MISSING: file={path} why=no secret key in it")
        self._public, self._secret = public, secret

    @property
    def secret_text(self) -> str:
        """This process's secret key as text: for the log redactor, never for a log line."""
        return self._secret.decode("ascii")

    @property
    def mode(self) -> str:
        """What `xmc status` shows: ``curve``, ``plaintext`` (tcp without keys) or ``ipc``."""
        if self.transport != "tcp":
            return "ipc"
        return "curve" if self.enabled else "plaintext"

    def start(self, ctx: zmq.Context) -> None:
        """Start this process's ZAP authenticator (call before binding)."""
        if not self.enabled or self._auth is not None:
            return
        from zmq.auth.thread import ThreadAuthenticator

        assert self.ring is not None
        self._provider = _Provider(self.ring)
        auth = ThreadAuthenticator(ctx)
        auth.start()
        for domain in (DOMAIN_BUS, DOMAIN_ACTORS, DOMAIN_OPERATORS):
            auth.configure_curve_callback(domain, credentials_provider=self._provider)
        self._auth = auth

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.stop()  # type: ignore[attr-defined]
            self._auth = None

    def server(self, sock: zmq.Socket, domain: str = DOMAIN_BUS) -> None:
        """Make a socket about to bind a CURVE server of `domain` (no-op without CURVE)."""
        if not self.enabled:
            return
        sock.setsockopt(zmq.ZAP_DOMAIN, domain.encode())
        sock.setsockopt(zmq.CURVE_SECRETKEY, self._secret)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self._public)
        sock.setsockopt(zmq.CURVE_SERVER, 1)

    def client(self, sock: zmq.Socket, server: str) -> None:
        """Make a socket about to connect to `server` (an actor or "supervisor") a CURVE client."""
        keys = self.client_keys(server)
        if keys is None:
            return
        sock.setsockopt(zmq.CURVE_SERVERKEY, keys[0])
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys[1])
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys[2])

    def client_keys(self, server: str) -> tuple[bytes, bytes, bytes] | None:
        """(server's public key, own public key, own secret key) for `bus.command.call`; None
        without CURVE."""
        if not self.enabled:
            return None
        assert self.ring is not None
        key = self.ring.actors.get(server)
        if key is None:
            raise KeyError_(f"CURVE_KEY_MISSING: file={self.ring.root / ACTORS_DIR / (server + '.key')} "
                            f"why=no public key for {server}")
        return key, self._public, self._secret

    def who(self, user_id: str | None) -> str:
        """The sender of a message whose ``User-Id`` property is `user_id`."""
        if not self.enabled:
            return f"local:{getpass.getuser()}" if self.transport == "ipc" else "unauthenticated"
        assert self.ring is not None
        return (self.ring.name_of(user_id) if user_id else None) or "unknown"

    def denied_keys(self) -> dict[tuple[str, bytes], int]:
        """(domain, z85 key) -> how many handshakes with it the authenticator refused."""
        return dict(self._provider.denied) if self._provider is not None else {}

    def log_refusals(self, watch: "RefusalWatch", log: Any) -> None:
        """Drain `watch` and log what was refused: `bus_peer_refused` once per socket and reason
        (then every 1000th), `bus_key_refused` once per refused key."""
        for why, endpoint, n in watch.drain():
            if n == 1 or n % 1000 == 0:
                log.warning("bus_peer_refused", socket=watch.name, why=why, endpoint=endpoint, count=n)
        for (domain, key), n in self.denied_keys().items():
            k = (domain, key.decode("ascii", "replace"))
            if k not in self._keys_logged:
                self._keys_logged.add(k)
                log.warning("bus_key_refused", domain=domain, public_key=k[1], count=n)


def operator_name(cfg: Config, name: str | None = None) -> str:
    """Which operator key the CLI uses: `name`, else $XMC_OPERATOR, else the only operator whose
    secret key is on this machine."""
    name = name or os.environ.get("XMC_OPERATOR")
    if name:
        return name
    folder = Path(cfg.endpoints.curve_keys) / OPERATORS_DIR
    mine = sorted(f.name[: -len(".key_secret")] for f in folder.glob("*.key_secret")) if folder.is_dir() else []
    if len(mine) == 1:
        return mine[0]
    raise KeyError_(f"CURVE_OPERATOR_UNKNOWN: dir={folder} why=" + (
        f"several operator secret keys here ({', '.join(mine)}): set XMC_OPERATOR" if mine
        else "no operator secret key here (`xmc keys init DIR --operator NAME`)"))


class RefusalWatch:
    """Counts the handshakes a listening socket refused (socket monitor events)."""

    def __init__(self, sock: zmq.Socket, name: str) -> None:
        self.name = name
        self.monitor = sock.get_monitor_socket(sum(REFUSAL_EVENTS))
        self.counts: dict[str, int] = {}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def drain(self) -> list[tuple[str, str, int]]:
        """New refusals as (why, endpoint, count so far for that why)."""
        out: list[tuple[str, str, int]] = []
        while True:
            try:
                msg = self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return out
            ev = parse_monitor_message(msg)
            why = REFUSAL_EVENTS.get(ev["event"])
            if why is None:
                continue
            self.counts[why] = self.counts.get(why, 0) + 1
            endpoint = ev.get("endpoint", b"")
            out.append((why, endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint), self.counts[why]))

    def close(self) -> None:
        self.monitor.close(0)


def private_dir(path: Path) -> Path:
    """Create `path` (and keep it) readable by its owner only."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path
