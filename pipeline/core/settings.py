"""One validated settings object for the whole project.

Only the application edge (CLI, worker start-up) calls :func:`load_settings`; everything else
receives a :class:`Settings` instance.

Example:
    >>> s = Settings(pg_password="s3cret-value")  # doctest: +SKIP
    >>> s.database_url().startswith("postgresql+psycopg://")  # doctest: +SKIP
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.core.errors import SettingsError

PLACEHOLDER_SECRETS = frozenset({"newsflow", "changeme", "change-me", "password", "secret", ""})
PLACEHOLDER_MARKS = ("change-me", "changeme", "change_me", "placeholder", "example", "replace-me")
MIN_PRODUCTION_SECRET = 12


def is_placeholder_secret(value: str) -> bool:
    """A secret nobody chose: a known placeholder, one that says so (``.env.example``'s
    ``change-me-in-production``), or one too short to be a real production secret."""
    lowered = value.strip().lower()
    return (
        lowered in PLACEHOLDER_SECRETS
        or any(mark in lowered for mark in PLACEHOLDER_MARKS)
        or len(value) < MIN_PRODUCTION_SECRET
    )


def mask_userinfo(uri: str) -> str:
    """``uri`` with any password in its ``user:password@`` part replaced by stars (for
    messages and ``config show``); other text is returned as it is."""
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return "<unparsable URI>"
    if "@" not in parts.netloc:
        return uri
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    # a lone user part may be a token: mask it too
    netloc = f"{user}:**********@{hostport}" if ":" in userinfo else f"**********@{hostport}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


_URI_FIELDS = ("mlflow_tracking_uri", "mlflow_registry_uri", "alert_webhook_url")


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "newsflow"


def _default_cache() -> Path:
    return Path.home() / ".cache" / "newsflow"


class Settings(BaseSettings):
    """Every knob of newsflow. Environment variables use the prefix ``NEWSFLOW_``."""

    model_config = SettingsConfigDict(
        env_prefix="NEWSFLOW_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        allow_inf_nan=False,  # no setting means infinity (intervals would overflow)
    )

    environment: Literal["development", "test", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False

    # Where things live.
    home: Path = Field(default_factory=_default_home, description="state: service data, models")
    cache_dir: Path = Field(default_factory=_default_cache, description="downloads (Kafka jars)")
    data_dir: Path = Field(default=Path("../shared/data"), description="datasets (AG News, 20NG)")

    # Kafka.
    kafka_version: str = "4.0.1"
    kafka_host: str = "127.0.0.1"
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    kafka_controller_port: int = Field(default=9093, ge=1, le=65535)
    kafka_heap_mb: int = Field(default=768, ge=256, le=16384)
    topic_articles: str = "articles"
    topic_dlq: str = "articles.dlq"
    topic_predictions: str = "predictions"
    articles_partitions: int = Field(default=8, ge=1, le=1024)
    dlq_partitions: int = Field(default=1, ge=1, le=1024)
    predictions_partitions: int = Field(default=8, ge=1, le=1024)

    # PostgreSQL.
    pg_host: str = "127.0.0.1"
    pg_port: int = Field(default=55432, ge=1, le=65535)
    pg_user: str = "newsflow"
    pg_password: SecretStr = SecretStr("newsflow")
    pg_database: str = "newsflow"
    pg_dir: Path | None = Field(
        default=None,
        description="cluster folder; default home/postgres, or /var/lib/newsflow/postgres as root",
    )

    # MLflow (default: SQLite file and artefact folder under `home`).
    mlflow_tracking_uri: str | None = None
    mlflow_registry_uri: str | None = None
    registered_model_name: str = Field(
        default="newsflow-topic",
        pattern=r"^[A-Za-z0-9_.\- ]{1,128}$",
        description="letters, digits, space, _ . - (1-128 characters)",
    )
    mlflow_server: bool = Field(
        default=False,
        description="`stack up` also runs an MLflow tracking server (Postgres backend store, "
        "artefacts served over HTTP) that every host can reach; the tracking URI then "
        "defaults to it",
    )
    mlflow_host: str = Field(default="127.0.0.1", description="the tracking server's address")
    mlflow_port: int = Field(default=5055, ge=1, le=65535)
    mlflow_database: str = Field(
        default="mlflow",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="the tracking server's backend-store database in the stack's PostgreSQL",
    )
    mlflow_artifacts_dir: Path | None = Field(
        default=None, description="the tracking server's artefact root; default home/mlflow/served"
    )
    mlflow_allowed_hosts: str = Field(
        default="",
        max_length=1000,
        description="extra Host headers the tracking server accepts (comma-separated), "
        "e.g. its DNS name when workers on other hosts reach it",
    )
    registry_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="each HTTP call to the tracking server"
    )

    # Streaming.
    max_message_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    batch_max_size: int = Field(default=64, ge=1, le=4096)
    batch_max_wait_ms: int = Field(default=50, ge=1, le=60_000)
    worker_name: str = "newsflow-worker"
    consumer_fetch_max_wait_ms: int = Field(default=100, ge=1, le=10_000)
    consumer_session_timeout_s: float = Field(
        default=10.0,
        ge=6.0,
        le=300.0,
        description="a worker that stops heartbeating loses its partitions after this long",
    )
    shutdown_grace_s: float = Field(
        default=5.0,
        ge=1.0,
        le=120.0,
        description="after SIGTERM a worker exits within this long whatever it waits for; "
        "a batch not yet stored is never acknowledged",
    )
    dlq_max_bytes: int = Field(
        default=900_000,
        ge=4096,
        le=16 * 1024 * 1024,
        description="a dead-letter record is cut to fit this (the broker's message limit)",
    )
    metrics_port: int = Field(default=9108, ge=0, le=65535, description="0 = no endpoint")
    metrics_host: str = Field(default="127.0.0.1", description="0.0.0.0 inside containers")
    # Metrics from every process (issue 22): the scheduler's and the web app's endpoints,
    # bound to metrics_host like the worker's.
    scheduler_metrics_port: int = Field(
        default=9109, ge=0, le=65535, description="the scheduler's /metrics port; 0 = none"
    )
    web_metrics_port: int = Field(
        default=9110, ge=0, le=65535, description="the web app's /metrics port; 0 = none"
    )
    model_dir: Path | None = Field(
        default=None, description="serve this folder; unset = the registry's champion"
    )
    model_poll_s: float = Field(
        default=30.0, ge=1.0, le=3600.0, description="how often workers check the champion alias"
    )
    ort_threads: int = Field(default=0, ge=0, le=256, description="0 = ORT default")
    review_uniform_share: float = Field(default=0.02, ge=0.0, le=1.0)
    review_uncertain_share: float = Field(default=0.05, ge=0.0, le=1.0)
    review_topic_cap: int = Field(default=3, ge=0, le=10_000, description="per topic per batch")
    review_budget_per_hour: int = Field(
        default=60,
        ge=0,
        le=1_000_000,
        description="items the reviewers label an hour; the queue holds at most this times "
        "review_lookahead_hours pending items (0 = no budget: the review_*_share policy)",
    )
    review_lookahead_hours: float = Field(
        default=1.0, gt=0, le=168, description="hours of reviewing the queue may hold"
    )
    review_uniform_fraction: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="share of the queue kept for the uniform sample (unbiased accuracy)",
    )
    review_topic_queue_share: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="at most this share of the uncertainty slots pending for one topic",
    )
    review_expire_hours: float = Field(
        default=24.0,
        gt=0,
        le=24 * 365,
        description="pending items older than this expire unreviewed",
    )

    # Drift monitoring and retraining.
    drift_window_size: int = Field(
        default=1000, ge=1, le=10_000_000, description="latest N predictions form the window"
    )
    drift_window_minutes: float | None = Field(
        default=None, gt=0, description="window by time instead of by count"
    )
    drift_min_window: int = Field(default=500, ge=1)
    drift_bins: int = Field(default=10, ge=2, le=100)
    drift_warn: float = Field(default=0.1, gt=0)
    drift_threshold: float = Field(default=0.25, gt=0)
    drift_interval_minutes: float = Field(default=15.0, gt=0)
    retrain_on_drift: bool = Field(
        default=True,
        description="let an accuracy drop start a retraining (explicit requests always may)",
    )
    retrain_accuracy_margin: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="retrain when accuracy falls this far below the champion's reference",
    )
    retrain_min_reviewed: int = Field(
        default=50,
        ge=1,
        description="fewest uniformly reviewed items whose accuracy may start a retraining",
    )
    retrain_reviewed_hours: float = Field(
        default=72.0,
        ge=0,
        description="the retraining decision's reviewed accuracy counts the version's uniform "
        "reviews of articles received in the last N hours (0 = all of them)",
    )
    retrain_recent_hours: float = Field(
        default=72.0,
        ge=0,
        description="reviewed articles received within this many hours of the newest one are "
        "the recent ones that automatic retraining repeats (0 = none)",
    )
    retrain_recent_share: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="automatic retraining repeats the recent reviewed rows (at most 5 times) "
        "until they are about this share of its training rows (0 = no repeats)",
    )
    retrain_cooldown_hours: float = Field(default=6.0, ge=0)
    retrain_daily_cap: int = Field(default=2, ge=0)
    # Retraining keeps the champion's recipe (retraining.retrain_recipe): these three
    # override it only when set; None (the default) = the champion's own value.
    retrain_epochs: int | None = Field(
        default=None, ge=1, description="epochs of an automatic retraining (None: the champion's)"
    )
    retrain_max_rows: int | None = Field(
        default=None,
        ge=8,
        description="automatic retraining trains on at most N base rows (plus reviewed labels; "
        "None: the champion's row cap)",
    )
    retrain_quantize: bool | None = Field(
        default=None,
        description="automatic retraining also exports and gates the int8 graph (CPU serving; "
        "None: as the champion was trained)",
    )
    retrain_warm_start: bool = Field(
        default=True, description="retrain from the champion's weights (else from the base)"
    )
    eval_limit: int | None = Field(
        default=None,
        ge=100,
        description="evaluate on a fixed random sample of at most N test rows (quick demos)",
    )
    gate_max_macro_f1_drop: float = Field(
        default=0.005,
        ge=0,
        le=1,
        description="promotion gate: how far a challenger's macro-F1 may fall below the champion's",
    )
    gate_max_class_f1_drop: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="promotion gate: how far any one topic's F1 may fall",
    )
    # Live check before promotion (issue 23): the challenger against the champion on the
    # latest uniformly reviewed live items and on recent traffic (retraining/live_check.py).
    live_check_reviewed: int = Field(
        default=500,
        ge=1,
        le=1_000_000,
        description="live check: the latest N uniformly reviewed items both models are scored on",
    )
    live_check_min_reviewed: int = Field(
        default=50,
        ge=1,
        le=1_000_000,
        description="live check: fewer reviewed items than this is no live evidence",
    )
    live_check_margin: float = Field(
        default=0.02,
        ge=0,
        lt=1,
        description="live check: promote only if the accuracy difference's lower bound > -margin",
    )
    live_check_confidence: float = Field(
        default=0.95,
        ge=0.5,
        lt=1,
        description="live check: two-sided level of the interval of the accuracy difference",
    )
    live_check_required: bool = Field(
        default=True,
        description="live check: refuse a promotion over a champion without enough live evidence "
        "(false: the offline gate decides alone, the event says the evidence was missing)",
    )
    live_check_window: int = Field(
        default=2000,
        ge=0,
        le=1_000_000,
        description="live check: the latest N stored articles for agreement and confidence PSI",
    )
    retrain_dataset: str = Field(
        default="ag_news", description="base labelled set: ag_news, 20newsgroups or a CSV/JSONL"
    )
    # Alert lifecycle: the notices newsflow sends itself (monitoring/alerts.py).
    alert_webhook_url: str | None = Field(
        default=None,
        description="http(s) URL that gets newsflow's own alerts as JSON (firing/resolved)",
    )
    alert_repeat_minutes: float = Field(
        default=240.0,
        gt=0,
        le=7 * 24 * 60,
        description="a condition still firing is notified again after this many minutes",
    )
    alert_retry_hours: float = Field(
        default=24.0,
        gt=0,
        le=7 * 24,
        description="how long an undelivered notification is retried (backoff 30 s to 10 min)",
    )
    alert_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="one webhook POST, connect to last byte, at most"
    )
    alert_clear_checks: int = Field(
        default=2,
        ge=1,
        le=96,
        description="a drift or reviewer alert resolves after this many clear checks in a row "
        "(1: the first; a metric hovering at its cut-off is then one episode, not many)",
    )
    alert_delivery_interval_s: float = Field(
        default=30.0, ge=1, le=3600, description="how often the scheduler sends due alerts"
    )
    reports_dir: Path | None = Field(default=None, description="default home/reports")
    # Drift reference that follows the feed (issue 23; monitoring/reference.py).
    live_reference_rows: int = Field(
        default=2000,
        ge=100,
        le=10_000_000,
        description="after a promotion the champion's first N predictions become the drift "
        "reference; also the fewest rows `drift baseline` accepts",
    )
    live_reference_max_psi: float = Field(
        default=0.25,
        gt=0,
        description="a live reference is rejected when its confidence PSI against the "
        "training reference is above this: the whole window, any chunk of it (drift window "
        "size), or any chunk against the chunks before it",
    )
    # Strict live-reference acceptance (issue 23 item 2; monitoring/live_window.py).
    live_reference_max_topic_psi: float = Field(
        default=0.5,
        gt=0,
        description="a live reference is rejected when a chunk's topic-mix PSI against the "
        "chunks before it is above this (a daily or weekly rhythm stays below it)",
    )
    # The week before a promotion as the new champion's reference (monitoring/week_reference.py).
    live_reference_days: float = Field(
        default=7.0,
        ge=0,
        le=28,
        description="where the stored feed covers this many days, a new champion's reference "
        "is those days re-scored by it at its first check (a week keeps the weekly rhythm); "
        "0 = its first live predictions only",
    )
    live_reference_rescore_rows: int = Field(
        default=3000,
        ge=100,
        le=1_000_000,
        description="the automatic week reference re-scores at most N articles, spread evenly",
    )
    drift_noise_quantile: float = Field(
        default=0.995,
        ge=0,
        lt=1,
        description="levels are lifted to the PSI a window of its size exceeds by sampling "
        "noise alone with probability 1 - this (0 = off)",
    )
    drift_chunk_margin: float = Field(
        default=0.1,
        ge=0,
        le=10,
        description="chunk-derived levels: warn from max chunk PSI x (1 + margin)",
    )
    drift_baseline_max_rows: int = Field(
        default=20_000,
        ge=100,
        le=10_000_000,
        description="`drift baseline` re-scores at most N articles, spread over the window",
    )
    # Drift signals from the reviewers (issue 23; monitoring/review_signals.py): the share of
    # recent uniform reviews labelled "none of these", and the recent reviewed accuracy.
    drift_review_hours: float = Field(
        default=24.0,
        gt=0,
        le=24 * 90,
        description="reviewer signals count uniform reviews of articles received within the "
        "last N hours (of the check's clock)",
    )
    drift_unknown_warn: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description="warn when the lower 95 % bound of the share of recent uniform reviews "
        "labelled 'none of these' is above this (drift above twice it); keep it above the "
        "feed's usual share of 'none of these'",
    )
    drift_review_min: int = Field(
        default=20,
        ge=1,
        le=1_000_000,
        description="fewest recent uniform reviews for a reviewer signal to count (fewer: "
        "reported, never raising the level)",
    )

    # Bounded storage (issue 22): day partitions of articles/predictions, retention, and the
    # drift reports folder's cap (pipeline/core/db/retention.py, monitoring/retention.py).
    retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="articles and predictions older than this many days are dropped (daily), "
        "except rows reviews, live drift references and open topic candidates use",
    )
    partitions_ahead_days: int = Field(
        default=7, ge=1, le=366, description="day partitions created ahead of today"
    )
    retention_interval_hours: float = Field(
        default=24.0, gt=0, le=24 * 7, description="how often the scheduler runs retention"
    )
    reports_keep: int = Field(
        default=500, ge=1, le=1_000_000, description="drift HTML reports kept, newest first"
    )
    reports_max_days: float = Field(
        default=30.0, gt=0, le=3650, description="drift HTML reports older than this are deleted"
    )

    # Review and operations web app.
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8088, ge=1, le=65535)
    web_cookie_secure: bool = Field(
        default=False, description="Secure cookies; set true behind HTTPS"
    )
    web_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    web_login_attempts: int = Field(
        default=5, ge=1, le=1000, description="failed logins per window before 429"
    )
    web_login_window_s: float = Field(default=300.0, gt=0)
    review_second_share: float = Field(
        default=0.1, ge=0.0, le=1.0, description="share of labelled items reviewed twice"
    )
    review_claim_minutes: float = Field(
        default=15.0,
        gt=0,
        le=60 * 24 * 7,
        description="how long a reviewer holds an item before it returns",
    )

    # Open-world topics: discovery and onboarding.
    topic_cluster_distance: float = Field(
        default=0.9, gt=0, lt=2, description="cosine distance at which clusters stop merging"
    )
    topic_min_cluster: int = Field(default=8, ge=2, le=10_000)
    topic_pool_size: int = Field(
        default=400, ge=10, le=100_000, description="least confident predictions to cluster"
    )
    topic_min_labels: int = Field(
        default=32, ge=4, le=100_000, description="reviewed examples before a new topic trains"
    )
    topic_min_f1: float = Field(
        default=0.8, ge=0, le=1, description="a new topic's F1 on held-out reviewed examples"
    )
    topic_base_per_class: int = Field(
        default=600,
        ge=8,
        le=100_000,
        description="base rows per kept topic when a retraining adds or removes topics",
    )
    # New topics that resemble the old ones (issue 24: gates decided on intervals, one topic
    # from several candidates, more labels when the gate cannot decide).
    topic_near_cosine: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="discovery marks candidates whose centroids are at least this cosine-similar",
    )
    topic_gate_old_max_loss: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="old topics' macro-F1 loss the new-topic retraining must rule out "
        "(interval of the change against the champion)",
    )
    topic_label_request_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="share of the review budget's queue one onboarding topic's suggestions "
        "may hold (the scheduler's label requests and the workers' provisional suggestions "
        "together)",
    )
    # Label-efficient onboarding (issue 24): workers compare each item's embedding (the served
    # graph's second output) with the onboarding topics' prototypes (pipeline/suggestions.py).
    topic_suggest_min_cosine: float = Field(
        default=0.8,
        ge=-1,
        le=1,
        description="a worker suggests an onboarding topic for an item whose embedding is at "
        "least this cosine-similar to the topic's prototype (1 = practically never)",
    )
    topic_suggest_min_answered: int = Field(
        default=10,
        ge=1,
        le=100_000,
        description="answered suggestions of a topic before their acceptance rate can stop them",
    )
    topic_suggest_min_acceptance: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="workers stop suggesting a topic once the 95 % upper bound of its "
        "suggestions' acceptance rate is below this",
    )

    # Prometheus and Alertmanager in the local stack (issue 22, alert rules as code): Debian's
    # binaries on 127.0.0.1, configs rendered under home at start.
    prometheus_enabled: bool = Field(
        default=False,
        description="`stack up` also runs Prometheus (the project's scrape config and alert "
        "rules) and Alertmanager (routes to NEWSFLOW_ALERT_WEBHOOK_URL)",
    )
    prometheus_port: int = Field(default=9091, ge=1, le=65535, description="Prometheus's port")
    alertmanager_port: int = Field(
        default=9095, ge=1, le=65535, description="Alertmanager's port (its cluster port is off)"
    )
    prometheus_scrape_interval_s: float = Field(
        default=15.0, ge=0.5, le=3600, description="how often Prometheus scrapes each process"
    )
    prometheus_evaluation_interval_s: float = Field(
        default=15.0, ge=0.5, le=3600, description="how often Prometheus evaluates the rules"
    )
    prometheus_worker_targets: str = Field(
        default="",
        max_length=4000,
        pattern=r"^[A-Za-z0-9.:,\-\[\] ]*$",
        description="the workers' metrics endpoints, host:port comma-separated; "
        "default 127.0.0.1:<metrics_port>",
    )
    prometheus_rules_dir: Path | None = Field(
        default=None,
        description="folder of *.rules.yml Prometheus loads; default the checkout's "
        "infra/prometheus/rules",
    )
    alertmanager_config: Path | None = Field(
        default=None,
        description="Alertmanager config to render from; default the checkout's "
        "infra/alertmanager/alertmanager.yml",
    )
    prometheus_retention_days: int = Field(
        default=15, ge=1, le=3650, description="how long Prometheus keeps samples"
    )

    # A month, replayed (issue 23, `newsflow replay`; monitoring/replay/): the simulated clock.
    clock_file: Path | None = Field(
        default=None,
        description="proof tools only: the worker stamps received and predicted times (and "
        "the review queue's times) with the simulated instant written in this file by "
        "`newsflow replay`; unset = the wall clock",
    )

    # Service timeouts.
    start_timeout_s: float = Field(default=90.0, gt=0, le=3600)

    @field_validator("home", "cache_dir", "data_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("alert_webhook_url")
    @classmethod
    def _http_only(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("the webhook must be an http:// or https:// URL")
        if value:
            import urllib.parse

            try:
                parts = urllib.parse.urlsplit(value)
                _ = parts.port  # raises on a port that is not a number
            except ValueError:
                raise ValueError("the webhook is not a usable http(s) URL") from None
            if not parts.hostname or any(c.isspace() for c in value):
                raise ValueError("the webhook URL needs a host and no spaces")
        return value or None

    @field_validator("mlflow_tracking_uri", "mlflow_registry_uri")
    @classmethod
    def _known_tracking_scheme(cls, value: str | None) -> str | None:
        if not value:
            return None
        schemes = ("http://", "https://", "sqlite:///", "file:", "postgresql", "mysql")
        if not value.startswith(schemes) and not value.startswith("/"):
            raise ValueError(
                "use an http(s):// tracking server, sqlite:///path, file:/path, "
                "or a postgresql/mysql database URI"
            )
        if value.startswith(("http://", "https://")):
            import urllib.parse

            try:
                netloc = urllib.parse.urlsplit(value).netloc
            except ValueError:
                raise ValueError("not a usable http(s) URL") from None
            if "@" in netloc:
                raise ValueError(
                    "put no user name or password in an http(s) tracking URI; set "
                    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or "
                    "MLFLOW_TRACKING_TOKEN, in the environment instead"
                )
        return value

    @model_validator(mode="after")
    def _drift_levels_in_order(self) -> Settings:
        if self.drift_warn >= self.drift_threshold:
            raise ValueError(
                f"NEWSFLOW_DRIFT_WARN ({self.drift_warn}) must be below "
                f"NEWSFLOW_DRIFT_THRESHOLD ({self.drift_threshold})"
            )
        return self

    @model_validator(mode="after")
    def _retention_covers_reviews_and_drift(self) -> Settings:
        hours = self.retention_days * 24
        if hours < self.review_expire_hours:
            raise ValueError(
                f"NEWSFLOW_RETENTION_DAYS ({self.retention_days}) is shorter than "
                f"NEWSFLOW_REVIEW_EXPIRE_HOURS ({self.review_expire_hours:g} h): pending review "
                "items would outlive their predictions; raise the retention or lower the expiry"
            )
        if self.drift_window_minutes is not None and hours * 60 < self.drift_window_minutes:
            raise ValueError(
                f"NEWSFLOW_RETENTION_DAYS ({self.retention_days}) is shorter than "
                f"NEWSFLOW_DRIFT_WINDOW_MINUTES ({self.drift_window_minutes:g} min): the drift "
                "window would reach past the stored predictions; raise the retention or "
                "shorten the window"
            )
        return self

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_production(self) -> Settings:
        if self.environment == "production" and is_placeholder_secret(
            self.pg_password.get_secret_value()
        ):
            raise ValueError(
                "NEWSFLOW_PG_PASSWORD is a placeholder or shorter than "
                f"{MIN_PRODUCTION_SECRET} characters; set a real secret for production"
            )
        return self

    # Derived values -------------------------------------------------------------------
    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.kafka_host}:{self.kafka_port}"

    def database_url(self, database: str | None = None) -> str:
        """SQLAlchemy URL with the password; never log it (use :meth:`masked`)."""
        from sqlalchemy.engine import URL

        url = URL.create(
            "postgresql+psycopg",
            username=self.pg_user,
            password=self.pg_password.get_secret_value(),
            host=self.pg_host,
            port=self.pg_port,
            database=database or self.pg_database,
        )
        return url.render_as_string(hide_password=False)

    def reports_path(self) -> Path:
        return self.reports_dir or self.home / "reports"

    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        if self.mlflow_server:
            return f"http://{self.mlflow_host}:{self.mlflow_port}"
        return f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}"

    def tracking_is_server(self) -> bool:
        """True when the registry is an MLflow tracking server (reached over HTTP)."""
        return self.tracking_uri().startswith(("http://", "https://"))

    def masked(self) -> dict[str, Any]:
        """Effective settings as plain values, secrets masked."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                out[name] = "**********"
            elif isinstance(value, Path):
                out[name] = str(value)
            else:
                out[name] = value
        out["kafka_bootstrap"] = self.kafka_bootstrap
        out["mlflow_tracking_uri"] = self.tracking_uri()
        for name in _URI_FIELDS:
            if isinstance(out.get(name), str):
                out[name] = mask_userinfo(out[name])
        return out


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment and `.env`, turning validation errors into one
    clear :class:`SettingsError` that names each bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "settings"
            var = f"NEWSFLOW_{loc.upper()}" if err["loc"] else "settings"
            if not err["loc"]:  # a whole-model check: its input holds every value, secrets too
                lines.append(f"settings: {err['msg']}")
                continue
            value = err.get("input")
            if "password" in loc:
                shown = "**********"
            elif loc in _URI_FIELDS and isinstance(value, str):
                shown = repr(mask_userinfo(value))
            else:
                shown = repr(value)
            lines.append(f"{var}: {err['msg']} (got {shown})")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
