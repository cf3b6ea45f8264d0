"""provisional topic suggestions (issue 24, label-efficient onboarding)

``topic_prototypes``: per onboarding topic and served model version, the normalised mean of
the topic's named examples in that model's embedding space (workers compute and read them);
``review_items.suggestion_cosine``: the similarity a worker found when it queued an item for
a topic (NULL for every other item).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "topic_prototypes",
        sa.Column(
            "topic",
            sa.String(64),
            sa.ForeignKey("topics.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("model_version", sa.String(64), primary_key=True),
        sa.Column("vector", postgresql.ARRAY(sa.REAL), nullable=False),
        sa.Column("examples", sa.Integer, nullable=False),  # texts averaged
        sa.Column("labelled", sa.Integer, nullable=False),  # the topic's confirmed labels then
        sa.Column(
            "computed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.add_column("review_items", sa.Column("suggestion_cosine", sa.REAL, nullable=True))


def downgrade() -> None:
    op.drop_column("review_items", "suggestion_cosine")
    op.drop_table("topic_prototypes")
