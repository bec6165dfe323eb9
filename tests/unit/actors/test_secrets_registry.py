"""actors.secrets: what is registered is masked by `redact`; `read` registers what it reads and
names (never shows) what is missing; feeds.fix.session.read_secret goes through it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from actors import secrets
from feeds.fix.session import FixUnavailable, read_secret


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    secrets.clear()
    yield
    secrets.clear()


def test_nothing_registered_leaves_text_alone() -> None:
    assert secrets.registered() == frozenset()
    text = "logon 554=hunter22 refused"
    assert secrets.redact(text) is text
    assert secrets.redact_bytes(b"554=hunter22") == b"554=hunter22"


def test_every_occurrence_of_every_registered_value_is_masked() -> None:
    assert secrets.register("hunter22") == "hunter22"
    secrets.register(b"curve-secret-key")
    assert secrets.registered() == {"hunter22", "curve-secret-key"}
    assert secrets.redact("pw=hunter22 again hunter22, key curve-secret-key") == "pw=*** again ***, key ***"
    assert secrets.redact_bytes(b"8=FIX.4.2\x01554=hunter22\x01") == b"8=FIX.4.2\x01554=***\x01"
    assert secrets.redact("hunter2 is not it") == "hunter2 is not it"


def test_short_and_empty_values_are_not_registered() -> None:
    for v in ("", None, "abc", b"xy"):
        secrets.register(v)
    assert secrets.registered() == frozenset()
    assert secrets.redact("abc xy") == "abc xy"


def test_registering_twice_is_harmless_and_surrounding_whitespace_is_covered() -> None:
    secrets.register("  padded-pw\n")
    secrets.register("  padded-pw\n")
    assert "padded-pw" in secrets.registered()
    assert secrets.redact("x padded-pw y") == "x *** y"


def test_escaped_forms_are_masked_too() -> None:
    """A secret with a quote, a backslash or a non-ASCII letter reads differently once `repr` or
    JSON has escaped it (a traceback shows repr(exc), a log line is JSON): those forms are masked."""
    pw = 'p"w\\ß-1'
    secrets.register(pw)
    for shown in (pw, repr(pw), json.dumps(pw), json.dumps(pw, ensure_ascii=False), repr(ValueError(pw))):
        assert "p" + '"' + "w" not in secrets.redact(shown).replace("***", ""), shown
        assert "***" in secrets.redact(shown), shown


def test_read_from_env_registers_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMC_UNIT_PW", "from-env-pw")
    assert secrets.read("XMC_UNIT_PW", "") == "from-env-pw"
    assert "from-env-pw" in secrets.registered()


def test_read_from_file_strips_and_registers_it(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("from-file-pw\n")
    assert secrets.read("", str(f)) == "from-file-pw"
    assert secrets.redact("x from-file-pw") == "x ***"


def test_read_nothing_configured_is_empty() -> None:
    assert secrets.read("", "") == ""
    assert secrets.registered() == frozenset()


def test_missing_secret_names_its_source_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XMC_UNIT_ABSENT", raising=False)
    with pytest.raises(secrets.SecretMissing, match="SECRET_MISSING: env=XMC_UNIT_ABSENT"):
        secrets.read("XMC_UNIT_ABSENT", "")
    with pytest.raises(secrets.SecretMissing, match=r"SECRET_MISSING: file=\S+/absent error="):
        secrets.read("", str(tmp_path / "absent"))


def test_fix_read_secret_registers_and_keeps_its_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XMC_UNIT_FIX_PW", "fix-logon-pw")
    assert read_secret("XMC_UNIT_FIX_PW", "") == "fix-logon-pw"
    assert "fix-logon-pw" in secrets.registered()
    f = tmp_path / "fixpw"
    f.write_text("fix-file-pw\n")
    assert read_secret("", str(f)) == "fix-file-pw"
    assert "fix-file-pw" in secrets.registered()
    assert read_secret("", "") == ""
    monkeypatch.delenv("XMC_UNIT_NOPE", raising=False)
    with pytest.raises(FixUnavailable, match="^FIX_SECRET_MISSING: env=XMC_UNIT_NOPE$"):
        read_secret("XMC_UNIT_NOPE", "")
    with pytest.raises(FixUnavailable, match="^FIX_SECRET_MISSING: file="):
        read_secret("", str(tmp_path / "nope"))


def test_register_config_registers_present_fix_passwords_and_skips_absent(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from configs.schema import FixVenueCfg, VenueCfg

    pw_file = tmp_path / "pw"
    pw_file.write_text("file-venue-pw\n")
    monkeypatch.setenv("XMC_UNIT_VENUE_PW", "env-venue-pw")
    monkeypatch.delenv("XMC_UNIT_VENUE_ABSENT", raising=False)

    def fix(**kw: str) -> VenueCfg:
        return VenueCfg(kind="fix", fix=FixVenueCfg(port=9000, sender_comp_id="XMC", target_comp_id="V", **kw))

    class Cfg:
        venues = {"A": fix(password_env="XMC_UNIT_VENUE_PW"), "B": fix(password_file=str(pw_file)),
                  "C": fix(password_env="XMC_UNIT_VENUE_ABSENT"), "D": fix(), "E": VenueCfg(kind="sim")}

    assert secrets.register_config(Cfg()) == 2
    assert secrets.registered() == {"env-venue-pw", "file-venue-pw"}
