"""The replayed feed: which articles arrive in each simulated hour, built from the project's
data (AG News, 20 Newsgroups; read through :mod:`pipeline.core.datasets`, never copied) and
a script of events. Pure: the same pools, script and seed give the same feed.

* **Rhythm** (every day): more articles in the daytime than at night; more Business on
  weekday working hours, more Sports in the evening and twice the share at weekends.
* **New kind of news** (``novel_day`` on): posts of the religion groups of 20 Newsgroups,
  a kind none of the four topics covers (their truth is ``__none__``), ``novel_share`` of
  each hour, and it stays.
* **Change of source** (``source_day`` on): ``source_share`` of each topic's articles come
  from 20 Newsgroups groups of that topic (another style: forum posts, not wire copy).
* **Malformed burst** (``burst_day``, at ``burst_hour``): ``burst_size`` malformed messages
  (every kind of :mod:`pipeline.malformed`, in turn), to be dead-lettered, never stored.

Example:
    >>> pools = Pools.from_rows(ag=[], ng=[])  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
from collections.abc import Mapping, Sequence

from pipeline.core.datasets import AG_LABELS, LabelledText
from pipeline.malformed import bad_messages

NONE_LABEL = "__none__"  # the reviewers' "none of these" (monitoring.web.review_queue)
NOVEL_GROUPS = ("soc.religion.christian", "talk.religion.misc", "alt.atheism")
SOURCE_GROUPS: Mapping[str, tuple[str, ...]] = {  # 20 Newsgroups groups onto the AG topics
    "World": ("talk.politics.mideast", "talk.politics.guns", "talk.politics.misc"),
    "Sports": ("rec.sport.hockey", "rec.sport.baseball"),
    "Business": ("misc.forsale",),
    "Sci/Tech": ("sci.space", "sci.electronics", "sci.crypt", "comp.graphics"),
}
# articles per hour of the day, relative: quiet at night, busy in the daytime
HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 4, 4, 3, 3, 2, 1)
BASE_MIX: Mapping[str, float] = {"World": 0.3, "Sports": 0.2, "Business": 0.25, "Sci/Tech": 0.25}


@dataclasses.dataclass(frozen=True)
class Script:
    """The scripted events (0-based simulated days; a day past the replay's end never
    comes) and the feed's scale."""

    days: int
    articles_per_day: int
    novel_day: int
    source_day: int
    burst_day: int
    burst_hour: int = 13
    burst_size: int = 60
    novel_share: float = 0.15
    source_share: float = 0.5
    seed: int = 0

    @classmethod
    def default(cls, days: int, articles_per_day: int, seed: int = 0) -> Script:
        """Events spread over the replay: the burst early, the new kind at a third, the
        change of source at three fifths (for 30 days: days 4, 10 and 18)."""
        return cls(
            days=days,
            articles_per_day=articles_per_day,
            burst_day=min(days - 1, round(days * 0.15)),
            novel_day=min(days - 1, round(days / 3)),
            source_day=min(days - 1, max(round(days * 0.6), round(days / 3) + 1)),
            seed=seed,
        )

    def events(self) -> list[Event]:
        out = [
            Event("malformed_burst", self.burst_day, self.burst_hour, expect_alert=False),
            Event("new_kind", self.novel_day, 0, expect_alert=True),
            Event("source_change", self.source_day, 0, expect_alert=True),
        ]
        return [e for e in out if e.day < self.days]


@dataclasses.dataclass(frozen=True)
class Event:
    name: str
    day: int
    hour: int
    expect_alert: bool  # a malformed burst is dead-lettered: it must not move drift

    def start(self, origin: dt.datetime) -> dt.datetime:
        return origin + dt.timedelta(days=self.day, hours=self.hour)


@dataclasses.dataclass(frozen=True)
class FeedItem:
    """One message: a labelled article (``truth``: its topic, ``__none__`` for the new kind)
    or a malformed one (``value`` set, ``truth`` empty)."""

    id: str
    kind: str  # ag | source | novel | malformed
    truth: str
    title: str = ""
    body: str = ""
    value: bytes | None = None

    def message(self) -> bytes:
        if self.value is not None:
            return self.value
        doc = {"id": self.id, "title": self.title, "body": self.body, "source": self.kind}
        return json.dumps(doc).encode()


@dataclasses.dataclass(frozen=True)
class Pools:
    """Texts by topic: AG News (``ag``), 20 Newsgroups by AG topic (``source``), and the
    new kind (``novel``)."""

    ag: Mapping[str, Sequence[LabelledText]]
    source: Mapping[str, Sequence[LabelledText]]
    novel: Sequence[LabelledText]

    @classmethod
    def from_rows(cls, *, ag: Sequence[LabelledText], ng: Sequence[LabelledText]) -> Pools:
        by_group: dict[str, list[LabelledText]] = {}
        for r in ng:
            by_group.setdefault(r.label, []).append(r)
        return cls(
            ag={t: [r for r in ag if r.label == t] for t in AG_LABELS},
            source={
                t: [r for g in groups for r in by_group.get(g, [])]
                for t, groups in SOURCE_GROUPS.items()
            },
            novel=[r for g in NOVEL_GROUPS for r in by_group.get(g, [])],
        )

    def check(self) -> None:
        empty = [f"AG News {t}" for t, rows in self.ag.items() if not rows]
        empty += [f"20 Newsgroups for {t}" for t, rows in self.source.items() if not rows]
        if not self.novel:
            empty.append("20 Newsgroups religion groups")
        if empty:
            raise ValueError("no texts for the replay's feed: " + ", ".join(empty))


def hour_counts(total: int, weights: Sequence[int] = HOUR_WEIGHTS) -> list[int]:
    """``total`` articles over the hours in proportion to ``weights`` (largest remainder)."""
    whole = sum(weights)
    exact = [total * w / whole for w in weights]
    counts = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (counts[i] - exact[i], i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def topic_mix(weekday: int, hour: int) -> dict[str, float]:
    """The topic shares at this hour (``weekday``: Monday 0): the daily and weekly rhythm."""
    w = dict(BASE_MIX)
    if weekday >= 5:  # weekend: sport up, business down
        w["Sports"] *= 2.0
        w["Business"] *= 0.4
    elif 8 <= hour < 18:  # weekday working hours: business up
        w["Business"] *= 1.3
    if hour >= 18:  # evening: sport up
        w["Sports"] *= 1.5
    total = sum(w.values())
    return {t: v / total for t, v in w.items()}


def build_hour(
    script: Script, pools: Pools, *, run: str, day: int, hour: int, weekday: int
) -> list[FeedItem]:
    """The messages of one simulated hour (ids ``<run>-d<day>h<hour>-<n>``)."""
    rng = random.Random(f"{script.seed}:{day}:{hour}")
    n = hour_counts(script.articles_per_day)[hour]
    mix = topic_mix(weekday, hour)
    topics = list(mix)
    prefix = f"{run}-d{day:03d}h{hour:02d}"
    items: list[FeedItem] = []
    for i in range(n):
        ident = f"{prefix}-{i}"
        if day >= script.novel_day and rng.random() < script.novel_share:
            row, kind, truth = rng.choice(pools.novel), "novel", NONE_LABEL
        else:
            truth = rng.choices(topics, weights=[mix[t] for t in topics])[0]
            if day >= script.source_day and rng.random() < script.source_share:
                row, kind = rng.choice(pools.source[truth]), "source"
            else:
                row, kind = rng.choice(pools.ag[truth]), "ag"
        items.append(FeedItem(ident, kind, truth, row.title, row.body))
    if day == script.burst_day and hour == script.burst_hour:
        items += malformed_burst(f"{prefix}-bad", script.burst_size)
    return items


def malformed_burst(prefix: str, size: int, max_bytes: int = 256 * 1024) -> list[FeedItem]:
    """``size`` malformed messages, every kind in turn (keys ``<prefix>-<n>``)."""
    kinds = sorted(bad_messages("x", max_bytes))
    out = []
    for i in range(size):
        ident = f"{prefix}-{i}"
        value, _ = bad_messages(ident, max_bytes)[kinds[i % len(kinds)]]
        out.append(FeedItem(ident, "malformed", "", value=value))
    return out
