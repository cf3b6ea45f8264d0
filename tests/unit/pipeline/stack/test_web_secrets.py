"""`newsflow stack up` keeps the Postgres password out of psql's command line (visible in
`ps` and /proc/*/cmdline to every user) and out of its error messages."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from pipeline.core.errors import StackError
from pipeline.core.settings import Settings
from pipeline.stack import postgres

SECRET = "pa55-'wörd'-xyz"
ESCAPED = SECRET.replace("'", "''")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], Any]]:
    seen: list[tuple[list[str], Any]] = []

    def fake_run_as(user: str | None, argv: list[str], **kwargs: Any) -> Any:
        seen.append((list(argv), kwargs.get("input")))
        sql = str(kwargs.get("input") or "")
        out = "1" if sql.startswith("SELECT 1 FROM pg_roles") else ""
        return subprocess.CompletedProcess(argv, 0, stdout=out, stderr="")

    monkeypatch.setattr(postgres, "run_as", fake_run_as)
    monkeypatch.setattr(postgres, "bin_dir", lambda install: Path("/usr/lib/postgresql/15/bin"))
    return seen


def _settings(tmp_path: Path) -> Settings:
    return Settings(pg_password=SecretStr(SECRET), pg_dir=tmp_path, home=tmp_path)


def test_role_password_goes_on_stdin_not_argv(
    calls: list[tuple[list[str], Any]], tmp_path: Path
) -> None:
    postgres._ensure_role_and_db(_settings(tmp_path))
    assert len(calls) == 4  # role exists?, ALTER ROLE, database exists?, CREATE DATABASE
    for argv, _ in calls:
        assert argv[-2:] == ["-f", "-"] and "-c" not in argv and "-tAc" not in argv
        assert not any(SECRET in a or ESCAPED in a or "PASSWORD" in a for a in argv)
    stdin = [str(sql) for _, sql in calls]
    assert any(f"PASSWORD '{ESCAPED}'" in sql and sql.startswith("ALTER ROLE") for sql in stdin)


def test_psql_errors_do_not_repeat_the_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def alter_fails(user: str | None, argv: list[str], **kwargs: Any) -> Any:
        sql = str(kwargs.get("input"))
        if sql.startswith("SELECT"):
            return subprocess.CompletedProcess(argv, 0, stdout="1", stderr="")
        # psql quotes the failing statement back ("LINE 1: ...").
        return subprocess.CompletedProcess(argv, 3, stdout="", stderr=f"ERROR: x\nLINE 1: {sql}")

    monkeypatch.setattr(postgres, "run_as", alter_fails)
    monkeypatch.setattr(postgres, "bin_dir", lambda install: Path("/usr/lib/postgresql/15/bin"))
    with pytest.raises(StackError) as err:
        postgres._ensure_role_and_db(_settings(tmp_path))
    message = str(err.value)
    assert message.startswith("psql failed") and "ALTER ROLE" in message and "***" in message
    assert SECRET not in message and ESCAPED not in message
