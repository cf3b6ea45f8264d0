"""Time-aware validation: the newest share of each label's training rows becomes the
validation set (early stopping and temperature fitting), so the temperature is fitted on the
posts closest in time to the later test period instead of on a random sample of the past.

Per label, not overall: each label keeps its share of the validation set (the temperature is
then fitted on the same class mix as a random split, so the two differ only in *when* the rows
were written), every label is present for early stopping's macro-F1, and the one ordering
that the 20 Newsgroups files here offer, the article number, is only meaningful within one
newsgroup.

Orderings (:data:`TimeOrder`):

* ``published``: the row's ``published`` date; rows without one stay in train.
* ``newsgroup_article``: 20 Newsgroups "bydate" has no ``Date:`` headers (that version drops
  them), but its rows come ordered by newsgroup, then by article number, and a news server
  numbers a group's articles in the order they arrive. The row index in the ``20ng-train-N``
  id is that order within each newsgroup. Checked on the data: 2,440 training posts quote an
  earlier post's message id that carries a timestamp; within each newsgroup the quoted time
  rises with the row index (median Spearman 0.80 over the 20 groups), and the test posts
  quote later posts (median 23 April 1993) than the training posts do (15 April).
  Rows with other ids (reviewed rows added to the training set) stay in train.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pipeline.core.datasets import LabelledText
from retraining.errors import TrainingError

TimeOrder = Literal["published", "newsgroup_article"]
TIME_ORDERS: tuple[TimeOrder, ...] = ("published", "newsgroup_article")
_NEWSGROUP_ID = re.compile(r"20ng-train-(\d+)")  # pipeline.core.datasets.load_20newsgroups


def published_key(row: LabelledText) -> Any:
    return row.published


def newsgroup_article_key(row: LabelledText) -> Any:
    m = _NEWSGROUP_ID.fullmatch(row.id)
    return int(m.group(1)) if m else None


KEYS: dict[TimeOrder, Callable[[LabelledText], Any]] = {
    "published": published_key,
    "newsgroup_article": newsgroup_article_key,
}


def default_order(rows: Sequence[LabelledText]) -> TimeOrder:
    """``published`` when at least half the rows carry a date, else ``newsgroup_article``
    when the rows are 20 Newsgroups training posts, else ``published`` (which then fails
    in :func:`time_split` for want of dates)."""
    dated = sum(r.published is not None for r in rows)
    if dated * 2 >= len(rows):
        return "published"
    if any(newsgroup_article_key(r) is not None for r in rows):
        return "newsgroup_article"
    return "published"


@dataclasses.dataclass(frozen=True)
class TimeSplit:
    train: list[LabelledText]
    validation: list[LabelledText]
    info: dict[str, Any]  # how the split was made (logged with the run)


def time_split(
    rows: Sequence[LabelledText],
    share: float = 0.1,
    *,
    order: TimeOrder = "published",
    seed: int = 13,
) -> TimeSplit:
    """The newest ``share`` of each label's ordered rows to validation (at least one row
    when the label has two ordered rows, and never the label's last training row); rows
    without an order key stay in train. Both sides are shuffled with ``seed``."""
    if not 0 < share < 1:
        raise TrainingError(f"validation share must be between 0 and 1, got {share}")
    if order not in KEYS:
        raise TrainingError(f"unknown time order {order!r}: use {', '.join(TIME_ORDERS)}")
    key = KEYS[order]
    by_label: dict[str, list[tuple[Any, int, LabelledText]]] = defaultdict(list)
    train: list[LabelledText] = []
    undated = 0
    for i, r in enumerate(rows):
        k = key(r)
        if k is None:
            undated += 1
            train.append(r)
        else:
            by_label[r.label].append((k, i, r))
    if not by_label:
        raise TrainingError(
            f"time-aware validation needs rows ordered by {order}, and none of the "
            f"{len(rows)} rows has one; use the random validation split"
        )
    total = Counter(r.label for r in rows)
    validation: list[LabelledText] = []
    cutoffs: dict[str, str] = {}
    for label in sorted(by_label):
        ranked = sorted(by_label[label], key=lambda t: (t[0], t[1]))  # ties: file order
        n = max(1, round(len(ranked) * share)) if len(ranked) > 1 else 0
        n = min(n, total[label] - 1)
        cut = len(ranked) - n
        train += [r for _, _, r in ranked[:cut]]
        validation += [r for _, _, r in ranked[cut:]]
        if n:
            cutoffs[label] = _show(ranked[cut][0])
    missing = sorted(set(total) - set(cutoffs))
    rng = random.Random(seed)
    rng.shuffle(train)
    rng.shuffle(validation)
    info: dict[str, Any] = {
        "mode": "time",
        "order": order,
        "share": share,
        "per_label": True,
        "validation_rows": len(validation),
        "unordered_rows_kept_in_train": undated,
        "labels_without_validation_rows": missing,
        "newest_from": cutoffs,  # per label: the oldest validation row's date or article index
    }
    return TimeSplit(train, validation, info)


_ORDER_WORDS = {
    "published": "publication date",
    "newsgroup_article": "article number within each newsgroup",
}


def describe_validation(info: dict[str, Any]) -> str:
    """One line for a ``Splits.validation_info``."""
    share = info.get("share")
    pct = f"{share:.0%} " if isinstance(share, float) else ""
    if info.get("mode") != "time":
        seed = f" (seed {info['seed']})" if "seed" in info else ""
        return f"random {pct}of each label{seed}"
    order = _ORDER_WORDS.get(str(info.get("order")), str(info.get("order")))
    text = f"newest {pct}of each label by {order} ({info.get('validation_rows')} rows"
    kept = info.get("unordered_rows_kept_in_train") or 0
    text += f"; {kept} rows without an order kept in train)" if kept else ")"
    missing = info.get("labels_without_validation_rows") or []
    return text + (f"; no validation rows for {', '.join(missing)}" if missing else "")


def _show(key: Any) -> str:
    return key.isoformat() if hasattr(key, "isoformat") else str(key)
