"""Whether a window of the champion's live predictions may become its drift reference.

A live window is adopted only when it passes every check below, so that a reference never
hides a shift that started inside it (a window whose last part already holds a new kind of
news passes on average, and every later check would then read that news as usual):

1. **the whole window**: confidence PSI against the training reference at most
   ``NEWSFLOW_LIVE_REFERENCE_MAX_PSI``;
2. **each chunk against the training reference**: the window is cut into consecutive chunks
   of the drift window's size (``NEWSFLOW_DRIFT_WINDOW_SIZE``, at least
   :data:`CHUNK_MIN_ROWS` rows; the remainder joins the last chunk), what a drift check would
   see; each chunk's confidence PSI against the training reference at most the same limit;
3. **each chunk against the chunks before it** (consistency within the window): its
   confidence PSI at most ``NEWSFLOW_LIVE_REFERENCE_MAX_PSI`` and its topic-mix PSI at most
   ``NEWSFLOW_LIVE_REFERENCE_MAX_TOPIC_PSI`` (wider: a daily or weekly rhythm moves the mix
   between chunks by design; a mix that jumps past it is a change of feed).

Checks 1 and 2 need the training reference's confidences and are skipped without them; check
2 is skipped on request (``per_chunk_training=False``: a week's chunks follow the daily
rhythm, whose topics the model reads with more or less confidence, so a chunk of a few hours
can sit past the limit against a balanced test split while nothing changed). The
verdict lists every failure in that order; its reason names the first few (which chunk, its
rows and times, the value and the limit). Pure: no database, no settings object.

Example:
    >>> v = check_window([0.9] * 400, ["a"] * 400, [], training=[0.9] * 400, chunk_rows=100,
    ...                  bins=10, max_psi=0.25, max_topic_psi=0.5)
    >>> v.accepted, len(v.chunks)
    (True, 4)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Sequence

from monitoring.psi import categorical_psi, psi, quantile_edges

CHUNK_MIN_ROWS = 100  # a confidence PSI over fewer rows is mostly sampling noise
CONF_SETTING = "NEWSFLOW_LIVE_REFERENCE_MAX_PSI"
TOPIC_SETTING = "NEWSFLOW_LIVE_REFERENCE_MAX_TOPIC_PSI"
SHOWN = 3  # failures a reason spells out
TRAINING = "the training reference"
EARLIER = "the chunks before it"


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Rows ``[start, end)`` of the window; ``number`` counts from 1."""

    number: int
    start: int
    end: int
    first_at: dt.datetime | None = None
    last_at: dt.datetime | None = None

    def label(self, count: int) -> str:
        times = ""
        if self.first_at is not None and self.last_at is not None:
            times = f", predicted {_when(self.first_at)} – {_when(self.last_at)}"
        return f"chunk {self.number} of {count} (rows {self.start + 1}–{self.end}{times})"


def _when(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclasses.dataclass(frozen=True)
class Finding:
    """One check's value against its limit (a failure when ``value > limit``)."""

    chunk: Chunk | None  # None: the whole window
    metric: str  # "confidence" | "topic-mix"
    against: str  # "the training reference" | "the chunks before it"
    value: float
    limit: float
    setting: str

    def describe(self, count: int) -> str:
        where = "the whole window" if self.chunk is None else self.chunk.label(count)
        return (
            f"{where}: {self.metric} PSI {self.value:.3f} against {self.against} is above "
            f"{self.setting} {self.limit:g}"
        )


@dataclasses.dataclass(frozen=True)
class WindowVerdict:
    """Every failed check (empty: accepted), and the highest values seen (for the record)."""

    chunks: tuple[Chunk, ...]
    failures: tuple[Finding, ...]
    whole_psi: float | None  # confidence PSI of the whole window against the training one
    chunk_max_training: float | None  # highest chunk confidence PSI against training
    chunk_max_confidence: float | None  # highest chunk confidence PSI against earlier chunks
    chunk_max_topics: float | None  # highest chunk topic-mix PSI against earlier chunks

    @property
    def accepted(self) -> bool:
        return not self.failures

    def reason(self) -> str:
        """The first :data:`SHOWN` failures (and how many more), or what the passing checks
        measured."""
        n = len(self.chunks)
        if self.failures:
            more = len(self.failures) - SHOWN
            tail = f" ({more} more check{'s' if more > 1 else ''} failed)" if more > 0 else ""
            return "; ".join(f.describe(n) for f in self.failures[:SHOWN]) + tail
        parts = []
        if self.whole_psi is not None:
            parts.append(f"confidence PSI {self.whole_psi:.3f} against the training reference")
            if self.chunk_max_training is not None and n > 1:
                parts[-1] += f", at most {self.chunk_max_training:.3f} in a chunk"
        if n > 1:
            parts.append(
                f"{n} chunks of {self.chunks[0].end} rows consistent: against the chunks "
                f"before them confidence PSI at most {self.chunk_max_confidence or 0.0:.3f}, "
                f"topic-mix PSI at most {self.chunk_max_topics or 0.0:.3f}"
            )
        return "; ".join(parts) if parts else "no training reference to compare with"


def chunk_spans(n: int, chunk_rows: int) -> list[tuple[int, int]]:
    """Consecutive ``[start, end)`` spans of ``max(chunk_rows, CHUNK_MIN_ROWS)`` rows over
    ``n`` rows, the remainder joined to the last span (one span when ``n`` is smaller)."""
    if n <= 0:
        return []
    rows = max(chunk_rows, CHUNK_MIN_ROWS)
    count = max(1, n // rows)
    return [(i * rows, n if i == count - 1 else (i + 1) * rows) for i in range(count)]


def check_window(
    confidences: Sequence[float],
    topics: Sequence[str],
    times: Sequence[dt.datetime],
    *,
    training: Sequence[float] | None,
    chunk_rows: int,
    bins: int,
    max_psi: float,
    max_topic_psi: float,
    per_chunk_training: bool = True,
) -> WindowVerdict:
    """Judge a time-ordered live window (``times`` may be empty) against ``training``
    confidences (None or empty: checks 1 and 2 skipped; ``per_chunk_training`` False: check 2
    skipped); see the module's docstring."""
    if len(topics) != len(confidences) or (times and len(times) != len(confidences)):
        raise ValueError("confidences, topics and times differ in length")
    spans = chunk_spans(len(confidences), chunk_rows)
    chunks = tuple(
        Chunk(i + 1, a, b, times[a] if times else None, times[b - 1] if times else None)
        for i, (a, b) in enumerate(spans)
    )
    failures: list[Finding] = []
    whole = train_max = None
    if training:
        edges = quantile_edges(training, bins)
        whole = psi(training, confidences, edges)
        if whole > max_psi:
            failures.append(Finding(None, "confidence", TRAINING, whole, max_psi, CONF_SETTING))
        if per_chunk_training and len(chunks) > 1:
            per_chunk = [psi(training, confidences[c.start : c.end], edges) for c in chunks]
            train_max = max(per_chunk)
            failures += [
                Finding(c, "confidence", TRAINING, v, max_psi, CONF_SETTING)
                for c, v in zip(chunks, per_chunk, strict=True)
                if v > max_psi
            ]
    conf_max, topic_max, within = _within(confidences, topics, chunks, bins, max_psi, max_topic_psi)
    return WindowVerdict(chunks, tuple(failures + within), whole, train_max, conf_max, topic_max)


def _within(
    confidences: Sequence[float],
    topics: Sequence[str],
    chunks: Sequence[Chunk],
    bins: int,
    max_psi: float,
    max_topic_psi: float,
) -> tuple[float | None, float | None, list[Finding]]:
    """Each chunk after the first against all the rows before it: confidence (bins cut at
    the earlier rows' quantiles) and topic mix."""
    conf_max = topic_max = None
    failures: list[Finding] = []
    earlier = EARLIER
    for c in chunks[1:]:
        before = confidences[: c.start]
        conf = psi(before, confidences[c.start : c.end], quantile_edges(before, bins))
        mix = categorical_psi(
            {t: float(k) for t, k in Counter(topics[: c.start]).items()},
            Counter(topics[c.start : c.end]),
        )
        conf_max = conf if conf_max is None else max(conf_max, conf)
        topic_max = mix if topic_max is None else max(topic_max, mix)
        if conf > max_psi:
            failures.append(Finding(c, "confidence", earlier, conf, max_psi, CONF_SETTING))
        if mix > max_topic_psi:
            failures.append(Finding(c, "topic-mix", earlier, mix, max_topic_psi, TOPIC_SETTING))
    return conf_max, topic_max, failures
