"""the project's own alerts, with a lifecycle (deduplicated, re-notified, resolved, silenced)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),  # firing | resolved
        sa.Column("summary", sa.Text, nullable=False, server_default=""),
        sa.Column("details", postgresql.JSONB, nullable=False, server_default="{}"),
        sa.Column("first_seen", TZ, nullable=False),
        sa.Column("last_seen", TZ, nullable=False),
        sa.Column("resolved_at", TZ, nullable=True),
        sa.Column("last_notified", TZ, nullable=True),
        sa.Column("notified_status", sa.String(16), nullable=True),
        sa.Column("notification_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("silenced_until", TZ, nullable=True),
        sa.Column("silenced_by", sa.String(128), nullable=True),
    )
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("alert_key", sa.String(64), sa.ForeignKey("alerts.key"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),  # firing | resolved
        # pending (the outbox) | delivered | expired (retry window over) | superseded
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("payload", postgresql.JSONB, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("next_attempt_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_http_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Column("finished_at", TZ, nullable=True),
    )
    op.create_index("ix_alert_deliveries_due", "alert_deliveries", ["state", "next_attempt_at"])
    op.create_index("ix_alert_deliveries_key", "alert_deliveries", ["alert_key", "id"])


def downgrade() -> None:
    op.drop_table("alert_deliveries")
    op.drop_table("alerts")
