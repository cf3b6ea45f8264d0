"""several topics onboarding and a known topic split (issue 24)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

A split of a known topic (``topics split World --into Politics --into Conflict``) keeps the
old topic's row with status ``splitting`` (``split`` once a retraining replaced it) and one
row per part, status ``onboarding`` (then ``active``), naming the old topic in the new
column ``topics.split_from``. Review items that ask a reviewer to relabel one of the old
topic's reviewed examples have ``reason = 'split'`` (the column is free text).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("topics", sa.Column("split_from", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("topics", "split_from")
