"""The drift reference that follows the feed, on real Postgres: after a promotion the
champion's first live predictions replace its training reference (and every run records the
reference it used), a drifted live window is rejected with its reason, one whose last chunk
holds the start of a shift is refused naming the chunk and a later clean one adopted, and
`drift baseline` re-scores a stored window with a tiny ONNX model (built here with onnx and
tokenizers, no torch) or refuses it."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, text

from monitoring.baseline import BaselineRefused, set_baseline
from monitoring.drift import run_drift_check
from monitoring.reference import resolve_reference, rhythm
from monitoring.scheduler import drift_job
from pipeline.core.db import drift_runs
from pipeline.core.db import references as refs
from pipeline.core.db.engine import make_engine
from pipeline.core.db.models import ArticleRow, PredictionRow
from pipeline.core.model_folder import ModelMetadata, ReferenceDistribution, write_metadata
from pipeline.core.settings import Settings

pytestmark = pytest.mark.integration
LABELS = ["World", "Sports", "Business", "Sci/Tech"]
WORDS = {
    "World": ["election", "minister", "war", "peace"],
    "Sports": ["team", "match", "goal", "season"],
    "Business": ["market", "stocks", "profit", "bank"],
    "Sci/Tech": ["software", "internet", "chip", "space"],
}
ALL_WORDS = [w for words in WORDS.values() for w in words]
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _meta(version: str) -> ModelMetadata:
    rng = np.random.default_rng(0)
    return ModelMetadata(
        version=version,
        labels=LABELS,
        max_length=32,
        reference=ReferenceDistribution(
            confidences=[float(c) for c in 1 - rng.beta(0.5, 8, 3000)],
            topic_mix=dict.fromkeys(LABELS, 0.25),
        ),
    )


def _folder(root: Path, version: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_metadata(root, _meta(version))
    return root


def _predict(
    engine: Engine,
    version: str,
    prefix: str,
    confidences: np.ndarray,
    topics: list[str],
    *,
    after: int = 0,
) -> None:
    """Articles and predictions of ``version``, one a second from NOW - 1 day + ``after``
    seconds."""
    start = NOW - dt.timedelta(days=1, seconds=-after)
    at = [start + dt.timedelta(seconds=i) for i in range(len(topics))]
    with engine.begin() as conn:
        conn.execute(
            insert(ArticleRow),
            [
                {"id": f"{prefix}{i}", "title": "t", "body": "b", "received_at": at[i]}
                for i in range(len(topics))
            ],
        )
        conn.execute(
            insert(PredictionRow),
            [
                {
                    "article_id": f"{prefix}{i}",
                    "model_version": version,
                    "topic": topics[i],
                    "confidence": float(c),
                    "margin": 0.1,
                    "probabilities": [float(c)],
                    "latency_ms": 1.0,
                    "received_at": at[i],
                    "predicted_at": at[i],
                }
                for i, c in enumerate(confidences)
            ],
        )


def _sporty(rng: np.random.Generator, n: int) -> list[str]:
    """A real feed's mix: more than half sport."""
    return [str(t) for t in rng.choice(LABELS, size=n, p=[0.15, 0.55, 0.15, 0.15])]


def _drift_pages(settings: Settings, engine: Engine, run_id: int) -> tuple[str, str]:
    """``/drift`` and ``/drift/<run_id>`` as an admin sees them."""
    from monitoring.web.app import create_app
    from monitoring.web.users import add_user

    add_user(engine, "oscar", "correct horse battery", "admin")
    with TestClient(create_app(settings, engine=engine)) as http:
        token = re.search(r'name="csrf_token" value="([^"]+)"', http.get("/login").text)
        assert token
        http.post(
            "/login",
            data={"username": "oscar", "password": "correct horse battery", "csrf_token": token[1]},
            follow_redirects=False,  # the dashboard behind it probes every service
        )
        return str(http.get("/drift").text), str(http.get(f"/drift/{run_id}").text)


def test_live_reference_replaces_the_training_one_after_a_promotion(
    db: Settings, tmp_path: Path
) -> None:
    s = db.model_copy(
        update={
            "drift_window_size": 500,
            "drift_min_window": 200,
            "retrain_on_drift": False,
            "home": tmp_path / "home",
        }
    )
    engine = make_engine(s)
    rng = np.random.default_rng(3)

    def conf(n: int) -> np.ndarray:  # the model's usual confidence
        return 1 - rng.beta(0.5, 8, n)

    _predict(engine, "m1", "a", conf(600), [LABELS[i % 4] for i in range(600)])
    first, _ = drift_job(s, engine, model_dir=_folder(tmp_path / "m1", "m1"), report=False)
    assert first is not None and first.reference == "training" and first.reference_id

    # Promotion: m2 serves a feed with more sport than the balanced test split.
    m2 = _folder(tmp_path / "m2", "m2")
    _predict(engine, "m2", "b", conf(1500), _sporty(rng, 1500))
    before, _ = drift_job(s, engine, model_dir=m2, report=False)
    assert before is not None and before.reference == "training"
    assert before.reference_id not in {None, first.reference_id}
    assert before.levels == {"confidence": "ok", "topics": "drift"}

    _predict(engine, "m2", "c", conf(600), _sporty(rng, 600), after=1500)  # 2,100 in all
    after, _ = drift_job(s, engine, model_dir=m2, report=False)
    assert after is not None and after.reference.startswith("live since")
    live = refs.active_reference(engine, model_version="m2")
    assert live is not None and live.kind == "live" and live.id == after.reference_id
    assert live.n_rows == 2000 and "the first 2000 predictions of m2" in live.reason
    assert live.window_from == NOW - dt.timedelta(days=1)
    assert after.level == "ok", after.reason
    stored = drift_runs.get_drift_run(engine, run_id=after.run_id or 0)
    assert stored is not None and stored.reference_id == live.id
    assert stored.window_to == NOW - dt.timedelta(days=1) + dt.timedelta(seconds=2099)
    old = refs.get_reference(engine, reference_id=before.reference_id or 0)
    assert old is not None and old.kind == "training" and old.status == "retired"
    m1_ref = refs.active_reference(engine, model_version="m1")
    assert m1_ref is not None and m1_ref.id == first.reference_id  # untouched

    listing, detail = _drift_pages(s, engine, after.run_id or 0)
    assert "live since" in listing and f"reference #{live.id}" in listing
    assert f"#{live.id} live since" in detail
    engine.dispose()


def test_a_drifted_live_window_is_rejected_with_its_reason(db: Settings, tmp_path: Path) -> None:
    s = db.model_copy(
        update={"drift_window_size": 500, "drift_min_window": 200, "retrain_on_drift": False}
    )
    engine = make_engine(s)
    rng = np.random.default_rng(4)
    folder = _folder(tmp_path / "m3", "m3")
    _predict(engine, "m3", "d", rng.uniform(0.3, 0.6, 2000), [LABELS[i % 4] for i in range(2000)])
    result, _ = drift_job(s, engine, model_dir=folder, report=False)
    assert result is not None and result.reference == "training"
    assert result.level == "drift"
    again, _ = drift_job(s, engine, model_dir=folder, report=False)  # not tried again
    assert again is not None and again.reference_id == result.reference_id
    rejected = [r for r in refs.list_references(engine) if r.kind == "live"]
    assert [r.status for r in rejected] == ["rejected"]
    assert "above NEWSFLOW_LIVE_REFERENCE_MAX_PSI 0.25" in rejected[0].reason
    assert "the training reference stays" in rejected[0].reason
    engine.dispose()


def test_a_window_with_a_shift_in_its_last_chunk_is_refused_then_a_later_one_adopted(
    db: Settings, tmp_path: Path
) -> None:
    s = db.model_copy(
        update={"drift_window_size": 500, "drift_min_window": 200, "retrain_on_drift": False}
    )
    engine = make_engine(s)
    rng = np.random.default_rng(7)
    folder = _folder(tmp_path / "m4", "m4")
    balanced = [LABELS[i % 4] for i in range(1000)]

    def conf(n: int) -> np.ndarray:  # the model's usual confidence
        return 1 - rng.beta(0.5, 8, n)

    # The first 2,000 predictions: the last 200 already a new kind of news (unsure). The
    # whole window's PSI against the training reference passes; its 4th chunk does not.
    shifted = np.concatenate([conf(1800), rng.uniform(0.3, 0.6, 200)])
    _predict(engine, "m4", "f", shifted, balanced * 2)
    first, _ = drift_job(s, engine, model_dir=folder, report=False)
    assert first is not None and first.reference == "training"
    (refused,) = [r for r in refs.list_references(engine) if r.kind == "live"]
    assert refused.status == "rejected" and refused.n_rows == 2000
    assert re.search(
        r"^the first 2000 predictions of m4 refused: chunk 4 of 4 \(rows 1501–2000, predicted "
        r"[^)]+\): confidence PSI [\d.]+ against the training reference is above "
        r"NEWSFLOW_LIVE_REFERENCE_MAX_PSI 0\.25",
        refused.reason,
    ), refused.reason
    assert "the latest 2000 predictions are tried once 2000 more have arrived" in refused.reason

    # 1,000 more: the latest 2,000 still reach into the refused window, nothing is tried.
    _predict(engine, "m4", "g", conf(1000), balanced, after=2000)
    waiting, _ = drift_job(s, engine, model_dir=folder, report=False)
    assert waiting is not None and waiting.reference_id == first.reference_id
    assert [r.id for r in refs.list_references(engine) if r.kind == "live"] == [refused.id]
    listing, _ = _drift_pages(s, engine, waiting.run_id or 0)
    assert '<strong id="reference-kind">training</strong>' in listing
    assert f'id="reference-refused">Live window #{refused.id} (' in listing
    assert "chunk 4 of 4 (rows 1501–2000" in listing

    # 1,000 more: the latest 2,000 all came after it, are clean, and become the reference.
    _predict(engine, "m4", "h", conf(1000), balanced, after=3000)
    adopted, _ = drift_job(s, engine, model_dir=folder, report=False)
    assert adopted is not None and adopted.reference.startswith("live since"), adopted
    live = refs.active_reference(engine, model_version="m4")
    assert live is not None and live.kind == "live" and live.id == adopted.reference_id
    assert live.reason.startswith(
        f"the latest 2000 predictions of m4 (after refused window #{refused.id}); confidence PSI "
    )
    assert "4 chunks of 500 rows consistent" in live.reason
    assert live.window_from == NOW - dt.timedelta(days=1) + dt.timedelta(seconds=2000)
    assert adopted.level == "ok", adopted.reason
    engine.dispose()


def _tiny_onnx(folder: Path, version: str) -> Path:
    """A bag-of-words classifier: each known word adds 2 to its topic's logit."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1}
    emb = [[0.0] * 4, [0.0] * 4]
    for k, label in enumerate(LABELS):
        for word in WORDS[label]:
            vocab[word] = len(vocab)
            emb.append([2.0 if j == k else 0.0 for j in range(4)])
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["vectors"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["vectors", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["logits"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["n", "t"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["n", "t"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 4])],
        [
            numpy_helper.from_array(np.array(emb, dtype=np.float32), "emb"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(folder / "model.onnx"))
    write_metadata(folder, _meta(version))
    return folder


def _articles(engine: Engine, start: dt.datetime, n: int, per_hour: int) -> None:
    rng = np.random.default_rng(5)
    rows = []
    for i in range(n):
        topic = LABELS[int(rng.integers(4))]
        words = [*rng.choice(WORDS[topic], size=3), *rng.choice(ALL_WORDS, size=1)]
        rows.append(
            {
                "id": f"e{i}",
                "title": " ".join(words[:2]),
                "body": " ".join(words[2:]),
                "received_at": start + dt.timedelta(seconds=i * 3600 / per_hour),
            }
        )
    with engine.begin() as conn:
        conn.execute(insert(ArticleRow), rows)


def _run(engine: Engine, version: str, at: dt.datetime, level: str, levels: dict[str, str]) -> int:
    return drift_runs.insert_drift_run(
        engine,
        drift_runs.NewDriftRun(
            started_at=at,
            finished_at=at,
            model_version=version,
            level=level,
            window_size=500,
            psi_confidence=0.3 if levels["confidence"] == "drift" else 0.02,
            psi_topics=0.4,
            details={"levels": levels},
            window_from=at - dt.timedelta(minutes=30),
            window_to=at,
        ),
    )


def test_baseline_rescores_a_stored_window_or_refuses_it(db: Settings, tmp_path: Path) -> None:
    s = db.model_copy(
        update={
            "live_reference_rows": 300,
            "drift_window_size": 50,
            "drift_min_window": 50,
            "drift_baseline_max_rows": 300,
        }
    )
    engine = make_engine(s)
    folder = _tiny_onnx(tmp_path / "tiny", "tiny-onnx-1")
    t0 = NOW - dt.timedelta(days=1)
    _articles(engine, t0, 600, per_hour=100)  # t0 .. t0 + 6 h
    flagged = _run(
        engine,
        "tiny-onnx-1",
        t0 + dt.timedelta(hours=1),
        "drift",
        {"confidence": "drift", "topics": "ok"},
    )
    _run(
        engine,
        "tiny-onnx-1",
        t0 + dt.timedelta(hours=3),
        "drift",
        {"confidence": "ok", "topics": "drift"},
    )
    _run(
        engine,
        "other-model",
        t0 + dt.timedelta(hours=4),
        "drift",
        {"confidence": "drift", "topics": "ok"},
    )

    with pytest.raises(BaselineRefused, match=r"found 0 articles .* at least 300"):
        set_baseline(s, engine, folder, start=t0 - dt.timedelta(hours=2), end=t0)
    with pytest.raises(
        BaselineRefused, match=rf"overlaps drift run #{flagged}\b.*drift on confidence"
    ):
        set_baseline(s, engine, folder, start=t0, end=t0 + dt.timedelta(hours=6))
    with pytest.raises(BaselineRefused, match="must be before"):
        set_baseline(
            s, engine, folder, start=t0 + dt.timedelta(hours=6), end=t0 + dt.timedelta(hours=2)
        )
    with pytest.raises(BaselineRefused, match="in the future"):
        set_baseline(s, engine, folder, start=t0, end=NOW + dt.timedelta(hours=1))
    assert refs.list_references(engine) == []  # nothing stored by a refusal

    # A run flagged on the topic mix alone does not block, nor does another model's run.
    start, end = t0 + dt.timedelta(hours=2), t0 + dt.timedelta(hours=6)
    ref = set_baseline(s, engine, folder, start=start, end=end)
    assert ref.kind == "baseline" and ref.status == "active" and ref.model_version == "tiny-onnx-1"
    assert (
        ref.n_rows == 300 and "400 articles" in ref.reason and "300 of them re-scored" in ref.reason
    )
    assert (ref.window_from, ref.window_to) == (start, end)
    assert ref.chunks is not None and ref.chunks.count == 6 and ref.hour_mix is None
    assert set(ref.topic_mix) <= set(LABELS) and min(ref.confidences) > 0.25

    rng = np.random.default_rng(6)
    _predict(engine, "tiny-onnx-1", "p", rng.uniform(0.9, 1.0, 60), ["Sports"] * 60)
    checked = run_drift_check(s, engine=engine, model_dir=folder, report=False)
    assert checked.reference_id == ref.id and checked.reference.startswith("baseline ")
    engine.dispose()


def test_the_baseline_command_takes_naive_times_as_utc_and_refuses_the_future(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from monitoring.cli.drift import drift_app

    folder = _folder(tmp_path / "m", "m1")
    later = (NOW + dt.timedelta(days=1)).replace(tzinfo=None).isoformat()
    out = CliRunner().invoke(
        drift_app,
        [
            "baseline",
            "--from",
            "2026-01-01T00:00",
            "--to",
            later,
            "--model-dir",
            str(folder),
        ],
    )
    assert out.exit_code == 2, out.output
    assert "taken as UTC" in out.output and "is in the future" in out.output


def _feed(engine: Engine, start: dt.datetime, hours: int, per_hour: int) -> None:
    """Articles of the tiny model's words, ``per_hour`` an hour for ``hours`` from ``start``;
    more than half of Sunday is sport (a weekly rhythm)."""
    rng = np.random.default_rng(7)
    rows = []
    for i in range(hours * per_hour):
        at = start + dt.timedelta(seconds=i * 3600 / per_hour)
        weights = [0.15, 0.55, 0.15, 0.15] if at.weekday() == 6 else [0.25] * 4
        topic = str(rng.choice(LABELS, p=weights))
        words = [*rng.choice(WORDS[topic], size=3), *rng.choice(ALL_WORDS, size=1)]
        rows.append(
            {
                "id": f"w{i}",
                "title": " ".join(words[:2]),
                "body": words[2] + " " + words[3],
                "received_at": at,
            }
        )
    with engine.begin() as conn:
        conn.execute(insert(ArticleRow), rows)


def test_a_new_champion_takes_the_week_before_it_re_scored(db: Settings, tmp_path: Path) -> None:
    s = db.model_copy(
        update={
            "live_reference_rows": 300,
            "drift_window_size": 50,
            "drift_min_window": 50,
            "live_reference_rescore_rows": 400,
            "live_reference_days": 10.0,  # more than the feed holds: nothing is tried
        }
    )
    engine = make_engine(s)
    _feed(engine, NOW - dt.timedelta(days=8), 8 * 24, per_hour=4)
    meta = _meta("tiny-week-1")
    folder = _tiny_onnx(tmp_path / "tiny", "tiny-week-1")
    ref = resolve_reference(s, engine, meta, folder=folder, now=NOW)
    assert ref is not None and ref.kind == "training"
    assert refs.rejected_baseline_until(engine, model_version="tiny-week-1") is None

    # the feed covers 7 days, but a check 2 h ago was flagged on confidence: not now
    s7 = s.model_copy(update={"live_reference_days": 7.0, "live_reference_max_psi": 10.0})
    conf_drift = {"confidence": "drift", "topics": "ok"}
    recent = _run(engine, "tiny-week-1", NOW - dt.timedelta(hours=2), "drift", conf_drift)
    held = resolve_reference(s7, engine, meta, folder=folder, now=NOW)
    assert held is not None and held.kind == "training"
    assert [r.kind for r in refs.list_references(engine)] == ["training"]  # nothing stored
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM drift_runs WHERE id = :i"), {"i": recent})
    # one flagged 3 days ago (a weekend against a weekday reference) does not hold it back:
    # re-scored, checked against the training reference
    _run(engine, "tiny-week-1", NOW - dt.timedelta(days=3), "drift", conf_drift)
    week = resolve_reference(s7, engine, meta, folder=folder, now=NOW)
    assert week is not None and week.kind == "baseline" and week.status == "active", week
    assert week.n_rows == 400 and "automatic: the 7 days before" in week.reason
    assert "672 articles, 400 re-scored by tiny-week-1" in week.reason
    assert (week.window_from, week.window_to) == (NOW - dt.timedelta(days=7), NOW)
    assert week.hour_mix is not None and len(week.hour_mix) == 168  # every hour of the week
    sunday, weekdays = Counter[str](), Counter[str]()
    for hour in range(7 * 24):
        (sunday if hour >= 6 * 24 else weekdays).update(week.hour_mix[hour])
    # 55 % sport on Sundays, 25 % otherwise, but only about 57 re-scored Sunday rows, and which
    # rows fall on the Sunday depends on when the test starts: over 273 start times spread over
    # a week (a simulation of this feed) the Sunday share ran 0.40-0.66, at least 0.11 above the
    # other days'
    sunday_share = sunday["Sports"] / sum(sunday.values())
    weekday_share = weekdays["Sports"] / sum(weekdays.values())
    assert sunday_share > 0.35 and sunday_share > weekday_share + 0.08, (sunday, weekdays)
    again = resolve_reference(s7, engine, meta, folder=folder, now=NOW + dt.timedelta(hours=1))
    assert again is not None and again.id == week.id  # it stands

    # a window unlike the training reference is refused, with its reason; the live path
    # meanwhile (no live window yet: the training reference stands), and no overlapping try
    other = _meta("tiny-week-2")
    folder2 = _tiny_onnx(tmp_path / "tiny2", "tiny-week-2")
    s_strict = s7.model_copy(update={"live_reference_max_psi": 0.0001})
    kept = resolve_reference(s_strict, engine, other, folder=folder2, now=NOW)
    assert kept is not None and kept.kind == "training"
    (refused,) = [
        r
        for r in refs.list_references(engine)
        if r.model_version == "tiny-week-2" and r.kind == "baseline"
    ]
    assert refused.status == "rejected" and "live path" in refused.reason, refused.reason
    assert refs.rejected_baseline_until(engine, model_version="tiny-week-2") == NOW
    later = NOW + dt.timedelta(hours=6)
    assert resolve_reference(s7, engine, other, folder=folder2, now=later) == kept
    engine.dispose()


def _jumping_feed(engine: Engine, start: dt.datetime, hours: int, jump: dt.datetime) -> None:
    """Eight articles an hour of the tiny model's words from ``start``, evenly mixed until
    ``jump``, then world news only (a change of feed inside the week)."""
    rng = np.random.default_rng(11)
    rows = []
    for i in range(hours * 8):
        at = start + dt.timedelta(seconds=i * 450)
        topic = "World" if at >= jump else str(rng.choice(LABELS))
        words = [*rng.choice(WORDS[topic], size=3), *rng.choice(ALL_WORDS, size=1)]
        rows.append(
            {
                "id": f"j{i}",
                "title": " ".join(words[:2]),
                "body": " ".join(words[2:]),
                "received_at": at,
            }
        )
    with engine.begin() as conn:
        conn.execute(insert(ArticleRow), rows)


def test_after_a_jump_in_the_week_the_part_after_it_becomes_the_reference(
    db: Settings, tmp_path: Path
) -> None:
    s = db.model_copy(
        update={
            "live_reference_rows": 300,
            "drift_window_size": 50,  # chunks of 100 rows (the floor); the part needs 600
            "drift_min_window": 50,
            "live_reference_rescore_rows": 5000,  # every article of the week
            "live_reference_days": 7.0,
            "live_reference_max_psi": 10.0,  # the tiny model is unlike its training sample
        }
    )
    engine = make_engine(s)
    jump = NOW - dt.timedelta(days=3, hours=12)
    _jumping_feed(engine, NOW - dt.timedelta(days=8), 8 * 24, jump)
    meta = _meta("tiny-jump-1")
    folder = _tiny_onnx(tmp_path / "tiny", "tiny-jump-1")
    part = resolve_reference(s, engine, meta, folder=folder, now=NOW)
    assert part is not None and part.kind == "baseline" and part.status == "active", part
    assert part.reason.startswith("automatic: the part after a change in chunk"), part.reason
    assert rhythm(part) == "by hour of the day" and part.window_to == NOW  # 3.5 days
    assert part.window_from is not None
    assert abs(part.window_from - jump) <= dt.timedelta(hours=13)  # a chunk of 100 rows
    assert part.topic_mix.get("World", 0) > 0.9, part.topic_mix
    (week,) = [r for r in refs.list_references(engine) if r.status == "rejected"]
    assert "topic-mix PSI" in week.reason and "the chunks before it" in week.reason, week.reason
    # it stands while no whole week can be tried (the next would overlap the refused one)
    again = resolve_reference(s, engine, meta, folder=folder, now=NOW + dt.timedelta(hours=6))
    assert again is not None and again.id == part.id

    # a part shorter than 6 drift windows is not taken: the training reference stays
    s_big = s.model_copy(update={"drift_window_size": 150})  # the part would need 900 rows
    other = _meta("tiny-jump-2")
    folder2 = _tiny_onnx(tmp_path / "tiny2", "tiny-jump-2")
    kept = resolve_reference(s_big, engine, other, folder=folder2, now=NOW)
    assert kept is not None and kept.kind == "training"
    engine.dispose()
