"""article provenance (Kafka partition/offset), deliveries and id conflicts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("articles", sa.Column("kafka_topic", sa.String(255), nullable=True))
    op.add_column("articles", sa.Column("kafka_partition", sa.Integer, nullable=True))
    op.add_column("articles", sa.Column("kafka_offset", sa.BigInteger, nullable=True))
    op.add_column(
        "articles", sa.Column("deliveries", sa.Integer, nullable=False, server_default="1")
    )
    op.create_table(
        "article_conflicts",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("article_id", sa.String(128), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("kafka_topic", sa.String(255), nullable=True),
        sa.Column("kafka_partition", sa.Integer, nullable=True),
        sa.Column("kafka_offset", sa.BigInteger, nullable=True),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("recorded_at", TZ, server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_article_conflicts_article_id", "article_conflicts", ["article_id"])


def downgrade() -> None:
    op.drop_index("ix_article_conflicts_article_id", table_name="article_conflicts")
    op.drop_table("article_conflicts")
    op.drop_column("articles", "deliveries")
    op.drop_column("articles", "kafka_offset")
    op.drop_column("articles", "kafka_partition")
    op.drop_column("articles", "kafka_topic")
