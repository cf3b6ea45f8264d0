"""Simulated reviewers: they take items from the review queue in its own order (the claim
the web app makes, at the simulated time) and label each with the article's true topic,
``__none__`` for the new kind, within a capacity of ``per_hour`` labels per simulated hour
(the review budget the queue is sized by, ``NEWSFLOW_REVIEW_BUDGET_PER_HOUR``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

from sqlalchemy import Engine

from pipeline.core.db import review_queue

REVIEWER = "replay-reviewer"


@dataclasses.dataclass
class Reviewers:
    truth: Mapping[str, str]  # article id -> true label
    per_hour: int
    claim_s: float = 15 * 60
    labelled: int = 0
    unknown: int = 0  # queued articles that are not the replay's (never labelled)
    _credit: float = 0.0

    def work(self, engine: Engine, *, hours: float, now: dt.datetime) -> int:
        """Label up to ``per_hour × hours`` items (unused capacity is not saved up beyond
        one day); returns how many were labelled."""
        self._credit = min(self._credit + self.per_hour * hours, self.per_hour * 24.0)
        done = 0
        while self._credit >= 1:
            with engine.begin() as conn:
                item = review_queue.claim_free_item(
                    conn, reviewer=REVIEWER, claim_s=self.claim_s, now=now
                )
                if item is None:
                    break
                view = review_queue.select_review_item(conn, item_id=item)
                label = self.truth.get(view.article_id)
                if label is None:  # not ours: leave it to real people
                    self.unknown += 1
                    review_queue.release_held_item(conn, item_id=item, reviewer=REVIEWER, penalty=0)
                    break
                review_queue.label_held_item(
                    conn,
                    item_id=item,
                    reviewer=REVIEWER,
                    label=label,
                    note="newsflow replay",
                    simulated=True,
                    now=now,
                )
            self._credit -= 1
            done += 1
        self.labelled += done
        return done
