"""SQLAlchemy 2 models. Alembic migrations under ``migrations/`` create exactly these tables."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    REAL,
    BigInteger,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ArticleRow(Base):
    """Partitioned by day of ``received_at`` (migration 0008): the key includes it. An id is
    unique across partitions through :func:`pipeline.core.db.articles.upsert_articles`."""

    __tablename__ = "articles"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    title: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str | None] = mapped_column(String(256))
    url: Mapped[str | None] = mapped_column(String(2048))
    language: Mapped[str | None] = mapped_column(String(16))
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
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
    """Partitioned by day of ``predicted_at`` (migration 0008): keys include it; (article,
    model version) is unique across partitions through
    :func:`pipeline.core.db.predictions.insert_new_predictions`. No foreign keys point at
    the partitioned tables: retention keeps the rows reviews name."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint(
            "article_id", "model_version", "predicted_at", name="uq_prediction_article_version"
        ),
        Index("ix_predictions_predicted_at", "predicted_at"),
        Index("ix_predictions_version_id", "model_version", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    article_id: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str] = mapped_column(String(128))
    confidence: Mapped[float] = mapped_column(Float)
    margin: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[list[float]] = mapped_column(ARRAY(Float))
    latency_ms: Mapped[float] = mapped_column(Float)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    predicted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)


class ReviewItemRow(Base):
    __tablename__ = "review_items"
    __table_args__ = (
        UniqueConstraint("prediction_id", "round", name="uq_review_prediction_round"),
        Index("ix_review_queue", "status", "priority", "id"),
        Index("ix_review_items_article_id", "article_id"),  # retention's keep rules (0008)
        Index(  # a reviewer's labels (the review page), kept for good by retention (0008)
            "ix_review_items_reviewer_done",
            "reviewer",
            "labelled_at",
            postgresql_where=text("status = 'done'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # no foreign keys into the partitioned tables (migration 0008); retention keeps these
    prediction_id: Mapped[int] = mapped_column(BigInteger)
    article_id: Mapped[str] = mapped_column(String(128))
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
    # A worker's provisional suggestion: cosine to the topic's prototype (0009)
    suggestion_cosine: Mapped[float | None] = mapped_column(REAL)
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
    # The drift reference it compared with (NULL on runs from before references were
    # stored: those used the training reference) and its window's first/last prediction time.
    reference_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("drift_references.id", name="fk_drift_runs_reference")
    )
    window_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    window_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


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
    split_from: Mapped[str | None] = mapped_column(String(64))  # a part of a split (0010)
    candidate_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("topic_candidates.id"))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    retrain_version: Mapped[str | None] = mapped_column(String(64))


class AlertRow(Base):
    """The state of one of newsflow's own alert conditions (see monitoring.alerts)."""

    __tablename__ = "alerts"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # e.g. "drift:confidence"
    severity: Mapped[str] = mapped_column(String(16))  # info | warning | critical
    status: Mapped[str] = mapped_column(String(16))  # firing | resolved
    summary: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # this episode's start
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_notified: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    notified_status: Mapped[str | None] = mapped_column(String(16))  # what the receiver was told
    notification_count: Mapped[int] = mapped_column(Integer, default=0)
    silenced_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    silenced_by: Mapped[str | None] = mapped_column(String(128))


class AlertDeliveryRow(Base):
    """One webhook notification: the outbox while pending, then a short log of its fate."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        Index("ix_alert_deliveries_due", "state", "next_attempt_at"),
        Index("ix_alert_deliveries_key", "alert_key", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    alert_key: Mapped[str] = mapped_column(String(64), ForeignKey("alerts.key"))
    status: Mapped[str] = mapped_column(String(16))  # firing | resolved: what it tells
    state: Mapped[str] = mapped_column(String(16))  # pending|delivered|expired|superseded
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_http_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text, default="")
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# Drift references that follow the feed (issue 23): see pipeline/core/db/references.py.
class DriftReferenceRow(Base):
    """A reference distribution a drift check compares with: the model folder's training
    sample, the champion's first live predictions, or an operator's baseline window."""

    __tablename__ = "drift_references"
    __table_args__ = (
        Index(
            "uq_drift_references_active",
            "model_version",
            unique=True,
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    model_version: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # training | live | baseline
    status: Mapped[str] = mapped_column(String(16))  # active | retired | rejected
    reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    window_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    window_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    n_rows: Mapped[int] = mapped_column(Integer)
    confidences: Mapped[list[float]] = mapped_column(ARRAY(Float))  # in time order
    topic_mix: Mapped[dict[str, float]] = mapped_column(JSONB)
    hour_mix: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    chunks: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# Bounded storage (issue 22) ----------------------------------------------------------------


class PredictionCountRow(Base):
    """Predictions stored per UTC day and model version (written with them), so /models
    sums a few rows instead of counting ``predictions``; kept when retention drops the
    rows themselves."""

    __tablename__ = "prediction_counts"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    predictions: Mapped[int] = mapped_column(BigInteger)
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# Provisional topic suggestions (issue 24, label-efficient onboarding) ----------------------


class TopicPrototypeRow(Base):
    """An onboarding topic's named examples averaged in one served model's embedding space
    (unit length); workers compute and read them (``pipeline.suggestions``)."""

    __tablename__ = "topic_prototypes"

    topic: Mapped[str] = mapped_column(
        String(64), ForeignKey("topics.name", ondelete="CASCADE"), primary_key=True
    )
    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    vector: Mapped[list[float]] = mapped_column(ARRAY(REAL))
    examples: Mapped[int] = mapped_column(Integer)
    labelled: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
