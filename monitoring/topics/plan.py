"""What the next topic retraining changes: every onboarding topic that has the reviewed labels
it needs, every split whose parts all have theirs (the old topic out, the parts in), and the
removals and merges asked for. Several topics go in one retraining; each is still decided on
its own by the new-topic gate, and :meth:`RetrainPlan.narrowed` is the plan without the
topics the gate did not promote, so a topic that needs more labels (or was refused) does not
hold back the others: the retraining runs again at once with the rest.

Why not promote the first model and leave the undecided topic out of it: that model has a
class for the undecided topic (it would serve it), and its other figures were measured with
that class in; a model without it must be trained and gated on its own.

Example:
    >>> plan = RetrainPlan(("Arts", "Health"), {}, {})
    >>> plan.narrowed({"Arts": "promote", "Health": "needs_labels"}).new_topics
    ('Arts',)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from sqlalchemy import Engine

from monitoring.topics import onboarding, split


@dataclasses.dataclass(frozen=True)
class RetrainPlan:
    new_topics: tuple[str, ...]  # standalone topics, then the parts of the splits
    retire: Mapping[str, str | None]  # removed (None) or merged; a split's old topic: None
    splits: Mapping[str, tuple[str, ...]]  # old topic -> its parts (all in new_topics)

    @property
    def empty(self) -> bool:
        return not self.new_topics and not self.retire

    def narrowed(self, decisions: Mapping[str, str]) -> RetrainPlan | None:
        """This plan without the new topics whose gate ``decisions`` (topic → promote |
        needs_labels | refuse) are not ``promote``; a split stays only when every part was
        promoted (its old topic goes only with all its parts). None when that leaves the
        plan as it is or changes nothing at all."""
        passed = {t for t, d in decisions.items() if d == "promote"}
        splits = {o: ps for o, ps in self.splits.items() if set(ps) <= passed}
        parts = {p for ps in self.splits.values() for p in ps}
        kept = {p for ps in splits.values() for p in ps}
        new = tuple(t for t in self.new_topics if t in kept or (t not in parts and t in passed))
        retire = {k: v for k, v in self.retire.items() if k not in self.splits or k in splits}
        if new == self.new_topics or (not new and not retire):
            return None
        return RetrainPlan(new, retire, splits)

    def reason(self) -> str:
        """The plan in words (a retraining request's reason)."""
        parts = {p for ps in self.splits.values() for p in ps}
        single = [t for t in self.new_topics if t not in parts]
        out = []
        if single:
            out.append("new topics with the reviewed examples they need: " + ", ".join(single))
        for old, ps in self.splits.items():
            out.append(f"split {old} into {', '.join(ps)}")
        others = {k: v for k, v in self.retire.items() if k not in self.splits}
        if others:
            said = (f"merge {k} into {v}" if v else f"remove {k}" for k, v in others.items())
            out.append("topics to " + ", ".join(said))
        return "; ".join(out)


def build_plan(engine: Engine, *, min_labels: int) -> RetrainPlan:
    """The next retraining's plan from what is in PostgreSQL: onboarding topics (not parts of
    a split) with ``min_labels`` reviewed labels or what the gate asked for, splits whose
    every part has as many, and the removals and merges asked for."""
    parts_of = split.split_parts(engine)
    single = [
        t
        for t in onboarding.onboarding_topics(engine)
        if t not in parts_of
        and onboarding.labelled_count(engine, t)
        >= onboarding.labels_required(engine, t, min_labels=min_labels)
    ]
    ready = {
        s.old: tuple(p.name for p in s.parts)
        for s in split.split_progress(engine, min_labels=min_labels)
        if s.ready
    }
    retire: dict[str, str | None] = {**onboarding.pending_changes(engine)}
    retire.update({old: None for old in ready})
    new = (*single, *(p for ps in ready.values() for p in ps))
    return RetrainPlan(new, retire, ready)
