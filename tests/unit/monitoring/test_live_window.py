"""The strict acceptance of a live window as the drift reference (monitoring.live_window):
a shift that starts in the window's last chunk is refused with the chunk and the value even
where the whole window's PSI passes; a clean window, or one with a rhythm in its mix, passes."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from monitoring.live_window import CHUNK_MIN_ROWS, WindowVerdict, check_window, chunk_spans

TOPICS = ["World", "Sports", "Business", "Sci/Tech"]
T0 = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)


def _usual(rng: np.random.Generator, n: int) -> list[float]:
    """The model's usual confidence: most near 1."""
    return [float(c) for c in 1 - rng.beta(0.5, 8, n)]


def _check(conf: list[float], topics: list[str], training: list[float] | None) -> WindowVerdict:
    """Chunks of 500 rows, one a second from T0, the default limits."""
    times = [T0 + dt.timedelta(seconds=i) for i in range(len(conf))]
    return check_window(
        conf,
        topics,
        times,
        training=training,
        chunk_rows=500,
        bins=10,
        max_psi=0.25,
        max_topic_psi=0.5,
    )


def test_a_clean_window_passes_and_says_what_it_measured() -> None:
    rng = np.random.default_rng(0)
    v = _check(_usual(rng, 2000), [TOPICS[i % 4] for i in range(2000)], _usual(rng, 3000))
    assert v.accepted and [(c.start, c.end) for c in v.chunks] == [
        (0, 500),
        (500, 1000),
        (1000, 1500),
        (1500, 2000),
    ]
    assert v.whole_psi is not None and v.whole_psi < 0.05
    assert "4 chunks of 500 rows consistent" in v.reason()
    assert "against the training reference, at most" in v.reason()


def test_a_shift_in_the_last_chunk_is_refused_although_the_whole_window_passes() -> None:
    rng = np.random.default_rng(1)
    training = _usual(rng, 3000)
    conf = _usual(rng, 1800) + [float(c) for c in rng.uniform(0.3, 0.6, 200)]
    v = _check(conf, [TOPICS[i % 4] for i in range(2000)], training)
    assert v.whole_psi is not None and v.whole_psi < 0.25  # the old check adopted it
    assert not v.accepted
    first = v.failures[0]
    assert first.chunk is not None and first.chunk.number == 4 and first.value > 0.25
    reason = v.reason()
    assert reason.startswith(
        "chunk 4 of 4 (rows 1501–2000, predicted 2026-12-07 08:25 UTC – 2026-12-07 08:33 UTC): "
        f"confidence PSI {first.value:.3f} against the training reference is above "
        "NEWSFLOW_LIVE_REFERENCE_MAX_PSI 0.25"
    )
    assert "against the chunks before it" in reason  # and the consistency check too
    assert all(f.chunk is not None and f.chunk.number == 4 for f in v.failures)


def test_a_jump_in_the_topic_mix_is_refused_a_rhythm_is_not() -> None:
    rng = np.random.default_rng(2)
    conf = _usual(rng, 2000)
    training = _usual(rng, 3000)
    balanced = [str(t) for t in rng.choice(TOPICS, 1500)]
    weekend = [str(t) for t in rng.choice(TOPICS, 500, p=[0.22, 0.45, 0.1, 0.23])]
    assert _check(conf, balanced + weekend, training).accepted
    jump = _check(conf, balanced + ["Sports"] * 500, training)
    assert not jump.accepted and [f.metric for f in jump.failures] == ["topic-mix"]
    assert "chunk 4 of 4" in jump.reason()
    assert "above NEWSFLOW_LIVE_REFERENCE_MAX_TOPIC_PSI 0.5" in jump.reason()


def test_without_a_training_reference_only_the_window_itself_is_checked() -> None:
    rng = np.random.default_rng(3)
    conf = _usual(rng, 1500) + [float(c) for c in rng.uniform(0.3, 0.6, 500)]
    v = _check(conf, ["World"] * 2000, None)
    assert v.whole_psi is None and v.chunk_max_training is None
    assert [(f.chunk.number if f.chunk else 0, f.against) for f in v.failures] == [
        (4, "the chunks before it")
    ]
    ok = _check(_usual(rng, 400), ["World"] * 400, None)
    assert ok.accepted and len(ok.chunks) == 1
    assert ok.reason() == "no training reference to compare with"


def test_chunks_take_the_drift_window_size_with_a_floor_and_keep_the_remainder() -> None:
    assert chunk_spans(2000, 1000) == [(0, 1000), (1000, 2000)]
    assert chunk_spans(2100, 500) == [(0, 500), (500, 1000), (1000, 1500), (1500, 2100)]
    assert chunk_spans(1000, 10) == [(i, i + CHUNK_MIN_ROWS) for i in range(0, 1000, 100)]
    assert chunk_spans(300, 5000) == [(0, 300)]
    assert chunk_spans(0, 500) == []
    with pytest.raises(ValueError, match="differ in length"):
        check_window(
            [0.9], [], [], training=None, chunk_rows=1, bins=10, max_psi=0.25, max_topic_psi=0.5
        )
