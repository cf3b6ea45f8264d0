from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect

from pipeline.core.db.migrate import current_revision, downgrade, head_revision, upgrade
from pipeline.core.db.models import Base
from pipeline.core.settings import Settings

pytestmark = pytest.mark.integration
TABLES = {
    "articles",
    "predictions",
    "review_items",
    "drift_runs",
    "model_events",
    "article_conflicts",
}


def test_upgrade_then_downgrade_on_real_postgres(empty_db: Settings) -> None:
    url = empty_db.database_url()
    engine = create_engine(url)
    try:
        upgrade(url)
        assert current_revision(url) == head_revision()
        insp = inspect(engine)
        assert set(insp.get_table_names()) >= TABLES
        uniques = {u["name"] for u in insp.get_unique_constraints("predictions")}
        assert "uq_prediction_article_version" in uniques
        upgrade(url)  # idempotent
        downgrade(url, "base")
        assert current_revision(url) is None
        assert not TABLES & set(inspect(engine).get_table_names())
        upgrade(url)
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_migrations_match_the_models(db: Settings) -> None:
    """Every model column exists in the migrated schema (no drift between the two)."""
    engine = create_engine(db.database_url())
    try:
        insp = inspect(engine)
        for table in Base.metadata.sorted_tables:
            cols = {c["name"] for c in insp.get_columns(table.name)}
            assert {c.name for c in table.columns} == cols, table.name
    finally:
        engine.dispose()


def test_wrong_password_is_a_clear_error(stack: Settings) -> None:
    from pydantic import SecretStr

    from pipeline.core.db.engine import make_engine, wait_for_database
    from pipeline.core.errors import DatabaseError

    bad = stack.model_copy(update={"pg_password": SecretStr("wrong-password")})
    with pytest.raises(DatabaseError, match="did not answer") as info:
        wait_for_database(make_engine(bad), timeout_s=1)
    assert "wrong-password" not in str(info.value)
