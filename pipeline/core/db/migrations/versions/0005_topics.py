"""open-world topics: discovered candidates, onboarded topics, suggested review labels

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "topic_candidates",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("discovered_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=True),
        # open | accepted | dismissed | superseded (a later discovery replaced it)
        sa.Column("status", sa.String(16), nullable=False, server_default="open"),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("separation", sa.Float, nullable=False),
        sa.Column("cohesion", sa.Float, nullable=False),
        sa.Column("nearest_topic", sa.String(128), nullable=False, server_default=""),
        sa.Column("none_of_these", sa.Integer, nullable=False, server_default="0"),
        sa.Column("terms", postgresql.JSONB, nullable=False),
        sa.Column("examples", postgresql.JSONB, nullable=False),
        sa.Column("members", postgresql.JSONB, nullable=False),
        sa.Column("name", sa.String(64), nullable=True),
        sa.Column("decided_by", sa.String(128), nullable=True),
        sa.Column("decided_at", TZ, nullable=True),
    )
    op.create_index("ix_topic_candidates_status", "topic_candidates", ["status", "rank"])
    op.create_table(
        "topics",
        sa.Column("name", sa.String(64), primary_key=True),
        # onboarding (collecting labels) | active (in the champion) | removing | merging
        # (asked for; the next retraining does it) | removed | merged
        sa.Column("status", sa.String(16), nullable=False, server_default="onboarding"),
        sa.Column("merge_into", sa.String(64), nullable=True),
        sa.Column(
            "candidate_id", sa.BigInteger, sa.ForeignKey("topic_candidates.id"), nullable=True
        ),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("retrain_version", sa.String(64), nullable=True),
    )
    # one topic per name whatever its case ("Religion" and "religion" are the same topic)
    op.create_index("uq_topics_lower_name", "topics", [sa.text("lower(name)")], unique=True)
    op.add_column("review_items", sa.Column("suggested_label", sa.String(128), nullable=True))


def downgrade() -> None:
    op.drop_column("review_items", "suggested_label")
    op.drop_index("uq_topics_lower_name", table_name="topics")
    op.drop_table("topics")
    op.drop_index("ix_topic_candidates_status", table_name="topic_candidates")
    op.drop_table("topic_candidates")
