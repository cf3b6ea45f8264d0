"""SQLAlchemy 2 models. Alembic migrations under ``migrations/`` create exactly these tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ArticleRow(Base):
    __tablename__ = "articles"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    title: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str | None] = mapped_column(String(256))
    url: Mapped[str | None] = mapped_column(String(2048))
    language: Mapped[str | None] = mapped_column(String(16))
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # where the stored copy came from (the first message with this id)
    kafka_topic: Mapped[str | None] = mapped_column(String(255))
    kafka_partition: Mapped[int | None] = mapped_column(Integer)
    kafka_offset: Mapped[int | None] = mapped_column(BigInteger)
    # how many times a message with this id and text was processed (redeliveries: > 1)
    deliveries: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class ArticleConflictRow(Base):
    """A message whose id was already stored with a different title or body: the first
    copy stays, this one is kept here (never silently dropped) and counted."""

    __tablename__ = "article_conflicts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    article_id: Mapped[str] = mapped_column(String(128), index=True)
    title: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    kafka_topic: Mapped[str | None] = mapped_column(String(255))
    kafka_partition: Mapped[int | None] = mapped_column(Integer)
    kafka_offset: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class PredictionRow(Base):
    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("article_id", "model_version", name="uq_prediction_article_version"),
        Index("ix_predictions_predicted_at", "predicted_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    article_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("articles.id", ondelete="CASCADE")
    )
    model_version: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str] = mapped_column(String(128))
    confidence: Mapped[float] = mapped_column(Float)
    margin: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[list[float]] = mapped_column(ARRAY(Float))
    latency_ms: Mapped[float] = mapped_column(Float)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    predicted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReviewItemRow(Base):
    __tablename__ = "review_items"
    __table_args__ = (
        UniqueConstraint("prediction_id", "round", name="uq_review_prediction_round"),
        Index("ix_review_queue", "status", "priority", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    prediction_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("predictions.id", ondelete="CASCADE")
    )
    article_id: Mapped[str] = mapped_column(String(128), ForeignKey("articles.id"))
    reason: Mapped[str] = mapped_column(String(16))  # "uniform" | "uncertainty"
    priority: Mapped[int] = mapped_column(Integer)  # lower first
    round: Mapped[int] = mapped_column(Integer, default=1)  # 2 = second review for agreement
    status: Mapped[str] = mapped_column(String(16), default="pending")
    label: Mapped[str | None] = mapped_column(String(128))
    reviewer: Mapped[str | None] = mapped_column(String(128))
    simulated: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    labelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A topic being onboarded: the label an admin expects (the reviewer decides).
    suggested_label: Mapped[str | None] = mapped_column(String(128))
    # A claim by one reviewer (the web app takes it with FOR UPDATE SKIP LOCKED).
    assigned_to: Mapped[str | None] = mapped_column(String(128))
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    exclude_reviewer: Mapped[str | None] = mapped_column(String(128))  # round 2: not round 1's
    note: Mapped[str | None] = mapped_column(Text)
    skips: Mapped[int] = mapped_column(Integer, default=0)


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))  # reviewer | admin
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebSessionRow(Base):
    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ModelLabelsRow(Base):
    """The label order of each served model version (probabilities are stored by index)."""

    __tablename__ = "model_labels"

    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    labels: Mapped[list[str]] = mapped_column(ARRAY(String(128)))
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class DriftRunRow(Base):
    __tablename__ = "drift_runs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    model_version: Mapped[str | None] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(16))  # ok | warn | drift | insufficient | error
    window_size: Mapped[int] = mapped_column(Integer)
    psi_confidence: Mapped[float | None] = mapped_column(Float)
    psi_topics: Mapped[float | None] = mapped_column(Float)
    psi_evidently: Mapped[float | None] = mapped_column(Float)
    estimated_accuracy: Mapped[float | None] = mapped_column(Float)
    reviewed_accuracy: Mapped[float | None] = mapped_column(Float)
    report_path: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    # The retraining decision (action, triggers, reason, evidence; later its outcome).
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))


class ModelEventRow(Base):
    __tablename__ = "model_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    kind: Mapped[str] = mapped_column(String(32))  # registered|promoted|rejected|rollback|failed
    model_name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str | None] = mapped_column(String(64))
    previous_version: Mapped[str | None] = mapped_column(String(64))
    drift_run_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("drift_runs.id"))
    reason: Mapped[str] = mapped_column(Text, default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class TopicCandidateRow(Base):
    """A cluster of articles the model could not place (see monitoring.topics.discovery)."""

    __tablename__ = "topic_candidates"
    __table_args__ = (Index("ix_topic_candidates_status", "status", "rank"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    discovered_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    model_version: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="open")
    rank: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    separation: Mapped[float] = mapped_column(Float)
    cohesion: Mapped[float] = mapped_column(Float)
    nearest_topic: Mapped[str] = mapped_column(String(128), default="")
    none_of_these: Mapped[int] = mapped_column(Integer, default=0)
    terms: Mapped[list[str]] = mapped_column(JSONB)
    examples: Mapped[list[str]] = mapped_column(JSONB)
    members: Mapped[list[str]] = mapped_column(JSONB)
    name: Mapped[str | None] = mapped_column(String(64))
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TopicRow(Base):
    """A topic added by people: collecting labels (onboarding), then in the champion."""

    __tablename__ = "topics"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="onboarding")
    merge_into: Mapped[str | None] = mapped_column(String(64))
    candidate_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("topic_candidates.id"))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    retrain_version: Mapped[str | None] = mapped_column(String(64))
