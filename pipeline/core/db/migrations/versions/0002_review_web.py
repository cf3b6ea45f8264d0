"""review web app: users, sessions, label sets of served models, review claims

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
    )
    op.create_table(
        "model_labels",
        sa.Column("model_version", sa.String(64), primary_key=True),
        sa.Column("labels", postgresql.ARRAY(sa.String(128)), nullable=False),
        sa.Column("recorded_at", TZ, server_default=sa.func.now(), nullable=False),
    )
    op.add_column("review_items", sa.Column("assigned_to", sa.String(128)))
    op.add_column("review_items", sa.Column("assigned_at", TZ))
    op.add_column("review_items", sa.Column("exclude_reviewer", sa.String(128)))
    op.add_column("review_items", sa.Column("note", sa.Text))
    op.add_column(
        "review_items", sa.Column("skips", sa.Integer, nullable=False, server_default="0")
    )
    op.create_index(
        "ix_review_pending",
        "review_items",
        ["priority", "id"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_review_assigned", "review_items", ["assigned_to", "status"])


def downgrade() -> None:
    op.drop_index("ix_review_assigned", table_name="review_items")
    op.drop_index("ix_review_pending", table_name="review_items")
    for column in ("skips", "note", "exclude_reviewer", "assigned_at", "assigned_to"):
        op.drop_column("review_items", column)
    op.drop_table("model_labels")
    op.drop_table("web_sessions")
    op.drop_table("users")
