"""Synthetic review items (articles, predictions, queue rows) for the web benchmark and
tests. Generated inside Postgres with ``generate_series``: 100,000 items take seconds."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, text

DEFAULT_LABELS = ("World", "Sports", "Business", "Sci/Tech")


def seed_review_items(
    engine: Engine,
    n: int,
    *,
    prefix: str = "seed",
    model_version: str = "seed-1",
    labels: Sequence[str] = DEFAULT_LABELS,
    body: str = "Synthetic article body for the review queue. ",
) -> None:
    """``n`` pending review items; a third uniform samples, the rest uncertainty samples."""
    k = len(labels)
    params = {
        "n": n,
        "p": f"{prefix}-",
        "v": model_version,
        "labels": list(labels),
        "k": k,
        "body": body,
    }
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO model_labels (model_version, labels) VALUES (:v, :labels) "
                "ON CONFLICT DO NOTHING"
            ),
            params,
        )
        conn.execute(
            text(
                "INSERT INTO articles (id, title, body, received_at) "
                "SELECT :p || g, 'Synthetic headline number ' || g, repeat(:body, 6), now() "
                "FROM generate_series(1, :n) g"
            ),
            params,
        )
        conn.execute(
            text(
                "INSERT INTO predictions (article_id, model_version, topic, confidence, margin, "
                "probabilities, latency_ms, received_at, predicted_at) "
                "SELECT :p || g, :v, (CAST(:labels AS text[]))[1 + g % :k], "
                "0.5 + (g % 40) / 100.0, "
                "(g % 40) / 100.0, "
                "(SELECT array_agg(CASE WHEN i = 1 + g % :k THEN 0.5 + (g % 40) / 100.0 "
                "ELSE (0.5 - (g % 40) / 100.0) / (:k - 1) END ORDER BY i) "
                "FROM generate_series(1, :k) i), 3.0, now(), now() "
                "FROM generate_series(1, :n) g"
            ),
            params,
        )
        conn.execute(
            text(
                "INSERT INTO review_items (prediction_id, article_id, reason, priority, round, "
                "status) SELECT p.id, p.article_id, "
                "CASE WHEN p.id % 3 = 0 THEN 'uniform' ELSE 'uncertainty' END, "
                "CASE WHEN p.id % 3 = 0 THEN 1000 ELSE (p.margin * 999)::int END, 1, 'pending' "
                "FROM predictions p WHERE p.model_version = :v AND p.article_id LIKE :p || '%'"
            ),
            params,
        )
        conn.execute(text("ANALYZE articles; ANALYZE predictions; ANALYZE review_items"))
