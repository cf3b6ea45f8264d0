"""Synthetic review items (articles, predictions, queue rows) for the web benchmark and
tests. Generated inside Postgres with ``generate_series``: 100,000 items take seconds."""

from __future__ import annotations

import random
from collections.abc import Sequence

from sqlalchemy import Engine, text

DEFAULT_LABELS = ("World", "Sports", "Business", "Sci/Tech")
NEWSGROUPS_LABELS = (  # the 20 Newsgroups' group names, as the dataset labels its posts
    "alt.atheism",
    "comp.graphics",
    "comp.os.ms-windows.misc",
    "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware",
    "comp.windows.x",
    "misc.forsale",
    "rec.autos",
    "rec.motorcycles",
    "rec.sport.baseball",
    "rec.sport.hockey",
    "sci.crypt",
    "sci.electronics",
    "sci.med",
    "sci.space",
    "soc.religion.christian",
    "talk.politics.guns",
    "talk.politics.mideast",
    "talk.politics.misc",
    "talk.religion.misc",
)


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


def shuffle_probabilities(engine: Engine, *, model_version: str, seed: int = 0) -> None:
    """Give each prediction of ``model_version`` a distinct probability per label, in a
    random order per item (the model's topic and confidence follow), so that the labels'
    ranking differs from item to item and from the model's label order."""
    rng = random.Random(seed)
    with engine.begin() as conn:
        labels = conn.execute(
            text("SELECT labels FROM model_labels WHERE model_version = :v"), {"v": model_version}
        ).scalar_one()
        k = len(labels)
        ids = conn.execute(
            text("SELECT id FROM predictions WHERE model_version = :v ORDER BY id"),
            {"v": model_version},
        ).scalars()
        rows = []
        for pid in ids:
            weights = [2.0**-r for r in range(k)]
            probs = [w / sum(weights) for w in weights]
            rng.shuffle(probs)
            best = max(range(k), key=probs.__getitem__)
            rows.append(
                {
                    "i": pid,
                    "probs": probs,
                    "t": labels[best],
                    "c": probs[best],
                    "m": probs[best] - sorted(probs)[-2],
                }
            )
        conn.execute(
            text(
                "UPDATE predictions SET probabilities = :probs, topic = :t, confidence = :c, "
                "margin = :m WHERE id = :i"
            ),
            rows,
        )
