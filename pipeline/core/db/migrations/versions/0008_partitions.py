"""articles and predictions partitioned by day, with retention

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

The unpartitioned tables are converted with their rows, inside the migration's transaction
(Alembic runs the upgrade in one; PostgreSQL DDL is transactional), so a failure anywhere
leaves the old tables as they were. Steps: lock both tables; drop the foreign keys that
point at them (a foreign key into a partitioned table must carry its partition key, which
``review_items`` and ``predictions`` do not; retention keeps the rows they name instead,
see pipeline/core/db/retention.py); rename the old tables; create the partitioned ones
(same columns and defaults; ``predictions.id`` keeps its sequence); create a partition for
every day that has rows, and a DEFAULT partition; copy the rows, check
the counts, drop the old tables; add ``prediction_counts`` (predictions per UTC day and
model version, for /models) filled from the rows.

Keys: ``articles`` PRIMARY KEY (id, received_at); ``predictions`` PRIMARY KEY (id,
predicted_at) and UNIQUE (article_id, model_version, predicted_at). An article id and an
(article, model version) pair stay unique across partitions through the writers
(pipeline/core/db/articles.py, predictions.py: a per-article transaction lock, then a
look-up before the insert).
"""

from __future__ import annotations

from datetime import date

from alembic import op
from sqlalchemy import Connection, text

from pipeline.core.db.partitions import ensure_partitions

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

KEYS = {"articles": "received_at", "predictions": "predicted_at"}
OLD = "{}_unpartitioned"
# (table, constraint, column, referenced table, ON DELETE) restored by downgrade(), as 0001
# created them
FOREIGN_KEYS = (
    ("predictions", "predictions_article_id_fkey", "article_id", "articles", " ON DELETE CASCADE"),
    (
        "review_items",
        "review_items_prediction_id_fkey",
        "prediction_id",
        "predictions",
        " ON DELETE CASCADE",
    ),
    ("review_items", "review_items_article_id_fkey", "article_id", "articles", ""),
)


def _foreign_keys_into(conn: Connection, tables: tuple[str, ...]) -> list[tuple[str, str]]:
    """(table, constraint) of every foreign key that references one of ``tables`` or is
    declared on one of them towards another."""
    rows = conn.execute(
        text(
            "SELECT conrelid::regclass::text, conname FROM pg_constraint WHERE contype = 'f' "
            "AND (confrelid = ANY(CAST(:t AS regclass[])) "
            "OR conrelid = ANY(CAST(:t AS regclass[])))"
        ),
        {"t": list(tables)},
    ).all()
    return [(str(r[0]), str(r[1])) for r in rows]


def _data_days(conn: Connection, table: str, key: str) -> list[date]:
    rows = conn.execute(
        text(f"SELECT DISTINCT CAST(({key} AT TIME ZONE 'UTC') AS date) FROM {OLD.format(table)}")
    ).scalars()
    return [d for d in rows if d is not None]


def _rename_old(conn: Connection, table: str) -> None:
    """``table`` and its indexes (constraints follow them) get the ``_unpartitioned``
    suffix, freeing the names for the partitioned table."""
    indexes = conn.execute(
        text(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = CAST(:t AS regclass)"
        ),
        {"t": table},
    ).scalars()
    for index in list(indexes):
        conn.execute(text(f'ALTER INDEX "{index}" RENAME TO "{index[:48]}_unpartitioned"'))
    conn.execute(text(f"ALTER TABLE {table} RENAME TO {OLD.format(table)}"))


def _create_partitioned(conn: Connection) -> None:
    for table, key in KEYS.items():
        conn.execute(
            text(
                f"CREATE TABLE {table} (LIKE {OLD.format(table)} INCLUDING DEFAULTS "
                f"INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE ({key})"
            )
        )
    conn.execute(
        text("ALTER TABLE articles ADD CONSTRAINT articles_pkey PRIMARY KEY (id, received_at)")
    )
    conn.execute(
        text(
            "ALTER TABLE predictions ADD CONSTRAINT predictions_pkey PRIMARY KEY (id, predicted_at)"
        )
    )
    conn.execute(
        text(
            "ALTER TABLE predictions ADD CONSTRAINT uq_prediction_article_version "
            "UNIQUE (article_id, model_version, predicted_at)"
        )
    )
    conn.execute(text("CREATE INDEX ix_predictions_predicted_at ON predictions (predicted_at)"))
    # a version's latest (drift window) or first (live reference) predictions by id: without
    # it every day partition is read through until its first row of that version
    conn.execute(text("CREATE INDEX ix_predictions_version_id ON predictions (model_version, id)"))
    conn.execute(text("ALTER SEQUENCE predictions_id_seq OWNED BY predictions.id"))


def _copy(conn: Connection, table: str) -> None:
    old = OLD.format(table)
    columns = ", ".join(
        f'"{c}"'
        for c in conn.execute(
            text(
                "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) "
                "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
            ),
            {"t": old},
        ).scalars()
    )
    copied = conn.execute(text(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {old}"))
    before = conn.execute(text(f"SELECT count(*) FROM {old}")).scalar_one()
    after = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    if not before == after == copied.rowcount:
        raise RuntimeError(
            f"partitioning {table}: {before} rows before, {after} after; nothing was changed"
        )
    conn.execute(text(f"DROP TABLE {old}"))


def _create_counts(conn: Connection) -> None:
    conn.execute(
        text(
            "CREATE TABLE prediction_counts (day date NOT NULL, "
            "model_version varchar(64) NOT NULL, predictions bigint NOT NULL, "
            "last_at timestamptz NOT NULL, "
            "CONSTRAINT prediction_counts_pkey PRIMARY KEY (day, model_version))"
        )
    )
    conn.execute(
        text(
            "INSERT INTO prediction_counts (day, model_version, predictions, last_at) "
            "SELECT CAST((predicted_at AT TIME ZONE 'UTC') AS date), model_version, count(*), "
            "max(predicted_at) FROM predictions GROUP BY 1, 2"
        )
    )


def upgrade() -> None:
    conn = op.get_bind()
    conn.execute(text("LOCK TABLE articles, predictions IN ACCESS EXCLUSIVE MODE"))
    for table, name in _foreign_keys_into(conn, tuple(KEYS)):
        conn.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
    for table in KEYS:
        _rename_old(conn, table)
    _create_partitioned(conn)
    days = {d for table, key in KEYS.items() for d in _data_days(conn, table, key)}
    # Today's and the days ahead come from `stack up`, `db upgrade` and the retention job
    # (rows meanwhile go to the DEFAULT partition and move when their day's is created):
    # a fresh database (every test's) gets its two DEFAULT partitions only.
    ensure_partitions(conn, days=days)
    for table in ("articles", "predictions"):
        _copy(conn, table)
    _create_counts(conn)
    # retention's keep rules look review items up by article; labelled items are kept for
    # good, so the review page's reads of a reviewer's labels must not scan them all
    conn.execute(text("CREATE INDEX ix_review_items_article_id ON review_items (article_id)"))
    conn.execute(
        text(
            "CREATE INDEX ix_review_items_reviewer_done ON review_items (reviewer, labelled_at) "
            "WHERE status = 'done'"
        )
    )
    if days:
        conn.execute(text("ANALYZE articles; ANALYZE predictions"))


def _orphans(conn: Connection, table: str, column: str, target: str) -> int:
    return int(
        conn.execute(
            text(
                f"SELECT count(*) FROM {table} x WHERE NOT EXISTS "
                f"(SELECT 1 FROM {target} y WHERE y.id = x.{column})"
            )
        ).scalar_one()
    )


def downgrade() -> None:
    conn = op.get_bind()
    conn.execute(text("LOCK TABLE articles, predictions IN ACCESS EXCLUSIVE MODE"))
    conn.execute(text("DROP TABLE IF EXISTS prediction_counts"))
    conn.execute(text("DROP INDEX IF EXISTS ix_review_items_article_id"))
    conn.execute(text("DROP INDEX IF EXISTS ix_review_items_reviewer_done"))
    for table in KEYS:
        plain = f"{table}_plain"
        conn.execute(
            text(
                f"CREATE TABLE {plain} (LIKE {table} INCLUDING DEFAULTS INCLUDING STORAGE "
                "INCLUDING COMMENTS)"
            )
        )
        conn.execute(text(f"INSERT INTO {plain} SELECT * FROM {table}"))
        if table == "predictions":
            conn.execute(text("ALTER SEQUENCE predictions_id_seq OWNED BY predictions_plain.id"))
        conn.execute(text(f"DROP TABLE {table}"))  # its partitions with it
        conn.execute(text(f"ALTER TABLE {plain} RENAME TO {table}"))
    conn.execute(text("ALTER TABLE articles ADD CONSTRAINT articles_pkey PRIMARY KEY (id)"))
    conn.execute(text("ALTER TABLE predictions ADD CONSTRAINT predictions_pkey PRIMARY KEY (id)"))
    conn.execute(
        text(
            "ALTER TABLE predictions ADD CONSTRAINT uq_prediction_article_version "
            "UNIQUE (article_id, model_version)"
        )
    )
    conn.execute(text("CREATE INDEX ix_predictions_predicted_at ON predictions (predicted_at)"))
    for table, name, column, target, on_delete in FOREIGN_KEYS:
        # A row may name an article or prediction that is gone (a prediction made over a
        # day after its article arrived): the key then checks new rows only (NOT VALID)
        # rather than anything being deleted.
        valid = _orphans(conn, table, column, target) == 0
        conn.execute(
            text(
                f'ALTER TABLE {table} ADD CONSTRAINT "{name}" FOREIGN KEY ({column}) '
                f"REFERENCES {target} (id){on_delete}" + ("" if valid else " NOT VALID")
            )
        )
