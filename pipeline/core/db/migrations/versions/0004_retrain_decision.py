"""drift runs: the retraining decision and its evidence

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for runs recorded before this column existed.
    op.add_column("drift_runs", sa.Column("decision", postgresql.JSONB, nullable=True))


def downgrade() -> None:
    op.drop_column("drift_runs", "decision")
