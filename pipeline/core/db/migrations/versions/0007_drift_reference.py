"""drift references that follow the feed; each drift run records the reference it used

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "drift_references",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("model_version", sa.String(64), nullable=False),
        # training (the model folder's held-out sample) | live (the champion's first N
        # predictions) | baseline (`newsflow drift baseline`, re-scored stored articles)
        sa.Column("kind", sa.String(16), nullable=False),
        # active (in use) | retired (replaced by a newer one) | rejected (failed a check)
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("window_from", TZ, nullable=True),  # NULL for a training reference
        sa.Column("window_to", TZ, nullable=True),
        sa.Column("n_rows", sa.Integer, nullable=False),
        sa.Column("confidences", postgresql.ARRAY(sa.Float), nullable=False),  # time order
        sa.Column("topic_mix", postgresql.JSONB, nullable=False),
        sa.Column("hour_mix", postgresql.JSONB, nullable=True),  # spans >= 7 days only
        sa.Column("chunks", postgresql.JSONB, nullable=True),  # chunk PSIs (thresholds)
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
    )
    # at most one reference in use per model version
    op.create_index(
        "uq_drift_references_active",
        "drift_references",
        ["model_version"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
    )
    # NULL on runs recorded before references were stored: they used the training reference
    op.add_column(
        "drift_runs",
        sa.Column(
            "reference_id",
            sa.BigInteger,
            sa.ForeignKey("drift_references.id", name="fk_drift_runs_reference"),
            nullable=True,
        ),
    )
    op.add_column("drift_runs", sa.Column("window_from", TZ, nullable=True))
    op.add_column("drift_runs", sa.Column("window_to", TZ, nullable=True))


def downgrade() -> None:
    op.drop_column("drift_runs", "window_to")
    op.drop_column("drift_runs", "window_from")
    op.drop_constraint("fk_drift_runs_reference", "drift_runs", type_="foreignkey")
    op.drop_column("drift_runs", "reference_id")
    op.drop_index("uq_drift_references_active", table_name="drift_references")
    op.drop_table("drift_references")
