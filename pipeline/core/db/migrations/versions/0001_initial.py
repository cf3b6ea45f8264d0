"""initial schema: articles, predictions, review items, drift runs, model events

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "articles",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("source", sa.String(256)),
        sa.Column("url", sa.String(2048)),
        sa.Column("language", sa.String(16)),
        sa.Column("published_at", TZ),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("enqueued_at", TZ),
        sa.Column("stored_at", TZ, server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "predictions",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "article_id",
            sa.String(128),
            sa.ForeignKey("articles.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(128), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("margin", sa.Float, nullable=False),
        sa.Column("probabilities", postgresql.ARRAY(sa.Float), nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("predicted_at", TZ, nullable=False),
        sa.UniqueConstraint("article_id", "model_version", name="uq_prediction_article_version"),
    )
    op.create_index("ix_predictions_predicted_at", "predictions", ["predicted_at"])
    op.create_table(
        "review_items",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "prediction_id",
            sa.BigInteger,
            sa.ForeignKey("predictions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("article_id", sa.String(128), sa.ForeignKey("articles.id"), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("round", sa.Integer, nullable=False, server_default="1"),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("label", sa.String(128)),
        sa.Column("reviewer", sa.String(128)),
        sa.Column("simulated", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("labelled_at", TZ),
        sa.UniqueConstraint("prediction_id", "round", name="uq_review_prediction_round"),
    )
    op.create_index("ix_review_queue", "review_items", ["status", "priority", "id"])
    op.create_table(
        "drift_runs",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("finished_at", TZ),
        sa.Column("model_version", sa.String(64)),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("window_size", sa.Integer, nullable=False),
        sa.Column("psi_confidence", sa.Float),
        sa.Column("psi_topics", sa.Float),
        sa.Column("psi_evidently", sa.Float),
        sa.Column("estimated_accuracy", sa.Float),
        sa.Column("reviewed_accuracy", sa.Float),
        sa.Column("report_path", sa.Text),
        sa.Column("details", postgresql.JSONB, nullable=False, server_default="{}"),
    )
    op.create_table(
        "model_events",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64)),
        sa.Column("previous_version", sa.String(64)),
        sa.Column("drift_run_id", sa.BigInteger, sa.ForeignKey("drift_runs.id")),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("metrics", postgresql.JSONB, nullable=False, server_default="{}"),
    )


def downgrade() -> None:
    op.drop_table("model_events")
    op.drop_table("drift_runs")
    op.drop_index("ix_review_queue", table_name="review_items")
    op.drop_table("review_items")
    op.drop_index("ix_predictions_predicted_at", table_name="predictions")
    op.drop_table("predictions")
    op.drop_table("articles")
