"""``pipeline.core.db.users`` against a real, freshly migrated Postgres: accounts (unique
names, disabled accounts never sign in) and login sessions (expiry, sign-out)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from pipeline.core.db import users
from pipeline.core.db.engine import make_engine
from pipeline.core.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(db: Settings) -> Iterator[Engine]:
    eng = make_engine(db)
    yield eng
    eng.dispose()


def _add(engine: Engine, username: str, role: str = "reviewer") -> users.User:
    with engine.begin() as conn:
        return users.insert_user(conn, username=username, password_hash=f"h-{username}", role=role)


def test_accounts_are_unique_and_disabled_ones_are_not_found(engine: Engine) -> None:
    ann = _add(engine, "ann")
    boss = _add(engine, "boss", role="admin")
    assert ann.id != boss.id and not ann.is_admin and boss.is_admin
    with engine.begin() as conn:  # the savepoint keeps the transaction usable
        with pytest.raises(users.DuplicateUser, match="'ann' exists"):
            users.insert_user(conn, username="ann", password_hash="x", role="admin")
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 2

    login = users.select_login(engine, username="ann")
    assert login == users.StoredLogin(ann, "h-ann")
    assert users.select_login(engine, username="nobody") is None
    with engine.begin() as conn:
        conn.execute(text("UPDATE users SET disabled = true WHERE username = 'ann'"))
    assert users.select_login(engine, username="ann") is None


def test_sessions_expire_end_and_are_cleaned_up(engine: Engine) -> None:
    ann, bob = _add(engine, "ann"), _add(engine, "bob")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        users.insert_web_session(
            conn, token_hash="t-old", user_id=bob.id, csrf_token="c0", expires_at=now - timedelta(1)
        )
        assert users.select_session_user(conn, token_hash="t-old") is None  # expired
        users.insert_web_session(
            conn, token_hash="t-ann", user_id=ann.id, csrf_token="c1", expires_at=now + timedelta(1)
        )
        # a new session removes the expired ones
        assert conn.execute(text("SELECT token_hash FROM web_sessions")).scalars().all() == [
            "t-ann"
        ]
    assert users.select_session_user(engine, token_hash="t-ann") == users.SessionUser(ann, "c1")
    assert users.select_session_user(engine, token_hash="t-none") is None

    with engine.begin() as conn:
        conn.execute(text("UPDATE users SET disabled = true WHERE id = :i"), {"i": ann.id})
    assert users.select_session_user(engine, token_hash="t-ann") is None  # disabled account
    with engine.begin() as conn:
        conn.execute(text("UPDATE users SET disabled = false WHERE id = :i"), {"i": ann.id})
        users.delete_web_session(conn, token_hash="t-ann")
    assert users.select_session_user(engine, token_hash="t-ann") is None
