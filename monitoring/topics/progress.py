"""Where each topic people added stands: its reviewed labels against what it needs, the
candidates named as it (their members counted together), what it waits for in words, and the
new-topic gate's latest decision with its interval. The page and `newsflow topics list`
show these rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import Engine

from monitoring.topics import onboarding
from monitoring.topics.split import SplitProgress, split_progress
from pipeline.core.db import topics as topics_db


@dataclasses.dataclass(frozen=True)
class TopicProgress:
    name: str
    status: str
    created_by: str
    created_at: dt.datetime
    retrain_version: str | None
    labelled: int
    required: int  # labels it needs before it trains (more after the gate asked for more)
    pending: int  # onboarding suggestions waiting for a reviewer
    rejected: int  # suggestions a reviewer answered with another label
    candidates: list[int]
    members: int  # the candidates' members, together
    next_step: str
    gate: dict[str, Any] | None  # the gate's latest decision (see retraining.topic_gate)

    def ready(self, min_labels: int) -> bool:
        return self.labelled >= max(min_labels, self.required)

    @property
    def gate_text(self) -> str | None:
        """ "needs_labels: F1 0.667 [0.353, 0.833] < 0.8 on 14" style, or None."""
        g = self.gate
        if not g:
            return None
        f1 = g.get("f1", {})
        return (
            f"{g.get('decision')}: F1 {f1.get('estimate', 0):.3f} [{f1.get('low', 0):.3f}, "
            f"{f1.get('high', 0):.3f}] vs {g.get('threshold')} on {g.get('positives')} held out"
        )

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "gate_text": self.gate_text}


def topic_rows(engine: Engine, *, min_labels: int) -> list[TopicProgress]:
    """Topics people added, newest first. A split's old topic and its parts say where the
    whole split stands (it trains when every part has its labels)."""
    splits: dict[str, SplitProgress] = {}
    for s in split_progress(engine, min_labels=min_labels):
        splits.update({name: s for name in (s.old, *(p.name for p in s.parts))})
    out = []
    for t in topics_db.select_topics(engine):
        labelled = onboarding.labelled_count(engine, t.name)
        required = max(min_labels, int((t.gate or {}).get("labels_required") or 0))
        out.append(
            TopicProgress(
                name=t.name,
                status=t.status,
                created_by=t.created_by,
                created_at=t.created_at,
                retrain_version=t.retrain_version,
                labelled=labelled,
                required=required,
                pending=t.pending,
                rejected=t.rejected,
                candidates=t.candidates,
                members=t.members,
                next_step=splits[t.name].text()
                if t.name in splits
                else onboarding.next_step(engine, t.name, labelled=labelled, min_labels=min_labels),
                gate=t.gate,
            )
        )
    return out
