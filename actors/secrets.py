"""The secret values this process knows, so that nothing it writes can show them.

A credential (a FIX logon password, a CURVE secret key, ...) comes from an environment
variable or a file, never from the TOML. Whatever reads one registers it here (`read` does so
itself; code that gets a secret some other way calls `register`), and every way out of the
process that could carry text passes through `redact`: the structlog processor of
`actors.logs` (every log line, exception text included) and the exception hooks it installs
(the tracebacks that end up in `logs/<actor>.stderr`).

`redact(text)` replaces each registered value (and the escaped forms `repr` and JSON give it)
with ``***``. Values shorter than `MIN_LEN` are not registered: masking every "ab" in every log
line would hide more than it protects.

The registry is per process, append-only and thread-safe (QuickFIX calls back on threads of
its own); reading it costs one attribute load when nothing is registered.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

MASK = "***"
MIN_LEN = 4


class SecretMissing(RuntimeError):
    """A secret's variable or file is configured but absent. The message names the variable or
    file, never a value."""


_lock = threading.Lock()
_values: frozenset[str] = frozenset()  # as registered
_needles: tuple[str, ...] = ()  # what `redact` looks for: the values and their escaped forms, longest first


def _forms(value: str) -> set[str]:
    """The value and how it reads once escaped by `repr` or a JSON encoder (a traceback shows
    `repr(exc)`, a log line is JSON): a secret with a quote or a backslash in it changes there."""
    forms = {value, repr(value)[1:-1], json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    return {f for f in forms if len(f) >= MIN_LEN}


def register(value: str | bytes | None) -> str:
    """Remember `value` as a secret of this process (masked by `redact` from now on); returns it
    as text. Empty or shorter than `MIN_LEN`: not registered. Bytes are taken as UTF-8."""
    global _values, _needles
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not value:
        return ""
    fresh = {v for v in (value, value.strip()) if len(v) >= MIN_LEN} - _values
    if fresh:
        with _lock:
            needles = set(_needles)
            for v in fresh:
                needles |= _forms(v)
            _needles = tuple(sorted(needles, key=len, reverse=True))  # a longer form first: no half-masked rest
            _values = _values | fresh
    return value


def registered() -> frozenset[str]:
    """The secrets registered so far (for checks and tests; never print them)."""
    return _values


def redact(text: str) -> str:
    """`text` with every registered secret replaced by `MASK`."""
    needles = _needles
    if not needles or not text:
        return text
    for needle in needles:
        if needle in text:
            text = text.replace(needle, MASK)
    return text


def redact_bytes(data: bytes) -> bytes:
    """`redact` for bytes (UTF-8 forms of the secrets)."""
    needles = _needles
    if not needles or not data:
        return data
    for needle in needles:
        raw = needle.encode("utf-8", "replace")
        if raw in data:
            data = data.replace(raw, MASK.encode())
    return data


def read(env: str = "", file: str = "") -> str:
    """A secret from the environment variable `env` or else the file `file` (stripped), registered;
    '' when neither is configured. Raises SecretMissing naming the variable or file (never a value)
    when it is configured but absent or empty."""
    if env:
        value = os.environ.get(env)
        if not value:
            raise SecretMissing(f"SECRET_MISSING: env={env}")
        register(value)
        return value
    if file:
        try:
            value = Path(file).read_text().strip()
        except OSError as exc:
            raise SecretMissing(f"SECRET_MISSING: file={file} error={exc.strerror}") from None
        register(value)
        return value
    return ""


def register_config(cfg: object) -> int:
    """Register every secret the config points at (each FIX venue's `password_env` /
    `password_file`) that is present, so that a process that never reads one itself (the
    supervisor, the journal) still masks it. Absent ones are skipped (the owner of a secret
    reports it missing when it reads it). Returns how many values were found."""
    found = 0
    for venue in getattr(cfg, "venues", {}).values():
        fx = getattr(venue, "fix", None)
        if fx is None:
            continue
        try:
            found += bool(read(fx.password_env, fx.password_file))
        except SecretMissing:
            pass
    return found


def clear() -> None:
    """Forget every registered secret (tests only)."""
    global _values, _needles
    with _lock:
        _values, _needles = frozenset(), ()
