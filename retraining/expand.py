"""Retrain with a larger label set: the champion's classes plus topics people onboarded.

The encoder and the known classes' head rows warm-start from the champion's fine-tuned
weights; each new class gets a fresh head row. Training rows: a balanced sample of the base
labelled set, the reviewed labels of known classes, and the new classes' reviewed examples
(a share held out for the gate, the rest repeated until each new class is about as frequent
as a known one).
Promotion needs both, each decided on an interval (:mod:`retraining.topic_gate`): every new
class's F1 on its held-out reviewed examples (promote, refuse, or ask for a stated number of
labels), and the old classes' macro-F1 change against the champion on the same rows (then
the usual gate, :func:`retraining.promotion.promote`).
The run keeps the champion's recipe (:mod:`retraining.retrain_recipe`, chosen by the caller)
but for its starting point (the grown champion, not a registered version) and its teacher
(which does not know the new classes).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from pipeline.core.datasets import LabelledText
from pipeline.core.db import reviews
from pipeline.core.settings import Settings
from retraining.errors import TrainingError
from retraining.gate import GatePolicy
from retraining.recipe import Recipe
from retraining.topic_gate import (
    NewTopicGate,
    OldClassesGate,
    decide_new_topic,
    old_classes_change,
    topic_counts,
)

log = logging.getLogger("newsflow.expand")
MAX_REPEAT = 20


@dataclasses.dataclass(frozen=True)
class ExpandOutcome:
    status: str  # promoted | rejected | needs_labels | failed
    reason: str
    version: str | None
    new_class_f1: dict[str, float]
    held_out: dict[str, int]
    gate: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # per new topic
    old_classes: dict[str, Any] | None = None  # the old classes' macro-F1 change

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def grow_state(
    state: dict[str, Any], old_labels: Sequence[str], new_labels: Sequence[str], seed: int = 13
) -> dict[str, Any]:
    """The champion's state dict with its head resized to ``new_labels``: rows of labels it
    knows are copied (by name, whatever the new order), new rows are small random values."""
    import torch

    weight, bias = state["head.weight"], state["head.bias"]
    gen = torch.Generator().manual_seed(seed)
    grown_w = torch.randn((len(new_labels), weight.shape[1]), generator=gen) * 0.02
    grown_b = torch.zeros(len(new_labels))
    index = {label: i for i, label in enumerate(old_labels)}
    for row, label in enumerate(new_labels):
        if label in index:
            grown_w[row] = weight[index[label]]
            grown_b[row] = bias[index[label]]
    return {**state, "head.weight": grown_w, "head.bias": grown_b}


def balanced_sample(
    rows: Sequence[LabelledText], *, per_class: int, seed: int
) -> list[LabelledText]:
    """At most ``per_class`` rows of each label (the warm start carries what the champion
    learnt from the rest; the sample keeps the known classes in view while the new ones
    are learnt)."""
    rng = random.Random(seed)
    by_label: dict[str, list[LabelledText]] = {}
    for r in rows:
        by_label.setdefault(r.label, []).append(r)
    out: list[LabelledText] = []
    for label in sorted(by_label):
        mine = by_label[label]
        out += mine if len(mine) <= per_class else rng.sample(mine, per_class)
    return out


def relabel(rows: Sequence[LabelledText], mapping: Mapping[str, str | None]) -> list[LabelledText]:
    """Rows with retired topics mapped: merged ones to their target, removed ones dropped."""
    out = []
    for r in rows:
        if r.label not in mapping:
            out.append(r)
        elif (target := mapping[r.label]) is not None:
            out.append(dataclasses.replace(r, label=target))
    return out


def split_new(
    rows: Sequence[LabelledText], new: Sequence[str], *, held_share: float, seed: int
) -> tuple[list[LabelledText], list[LabelledText]]:
    """(training, held out) among the reviewed rows of the new classes, per class."""
    rng = random.Random(seed)
    train, held = [], []
    for label in new:
        mine = [r for r in rows if r.label == label]
        rng.shuffle(mine)
        cut = max(1, round(len(mine) * held_share))
        held += mine[:cut]
        train += mine[cut:]
    return train, held


def new_class_repeats(
    rows: Sequence[LabelledText], new_topics: Sequence[str], *, base_per_class: int
) -> dict[str, int]:
    """How many times each new topic's training rows are used so that it is about as frequent
    as a known class (``base_per_class`` rows), at most ``MAX_REPEAT``.

    Example:
        >>> rows = [LabelledText(str(i), "t", "b", "Arts" if i < 20 else "Health")
        ...         for i in range(25)]
        >>> new_class_repeats(rows, ["Arts", "Health"], base_per_class=100)
        {'Arts': 5, 'Health': 20}
    """
    counts = Counter(r.label for r in rows)
    return {
        t: min(MAX_REPEAT, max(1, -(-base_per_class // max(1, counts.get(t, 0)))))
        for t in new_topics
    }


def retrain_expanded(
    settings: Settings,
    *,
    engine: Engine,
    new_topics: Sequence[str],
    base_rows: Sequence[LabelledText],
    test_rows: Sequence[LabelledText],
    recipe: Recipe,
    min_labels: int,
    min_f1: float,
    retire: Mapping[str, str | None] | None = None,
    recipe_tags: Mapping[str, str] | None = None,
    held_share: float = 0.3,
    base_per_class: int = 600,
    seed: int = 13,
) -> ExpandOutcome:
    """Train, gate and (when both gates pass) promote a champion that knows ``new_topics``
    and no longer ``retire``'s topics: each removed (→ None; its examples are dropped) or
    merged into another (its examples count as that topic); a split is its old topic removed
    and its parts in ``new_topics`` (their examples are the old topic's, relabelled by
    reviewers; each part is gated as a new topic). ``recipe``: the champion's
    (its warm start and teacher are not used: the grown champion is the starting point);
    ``recipe_tags``: where it came from, for the MLflow run."""
    from pipeline.core import registry
    from pipeline.core.model_folder import read_metadata
    from retraining.data import make_splits
    from retraining.flow import FlowOptions, run_flow
    from retraining.reviewed import load_reviewed_rows

    champion = registry.version_by_alias(settings, registry.CHAMPION)
    if champion is None:
        raise TrainingError("no champion to grow: train one first")
    champion_labels = list(read_metadata(registry.local_copy(settings, champion.version)).labels)
    clash = sorted(set(new_topics) & set(champion_labels))
    if clash:
        raise TrainingError(f"the champion knows these topics already: {clash}")
    mapping = dict(retire or {})
    unknown = sorted(set(mapping) - set(champion_labels))
    if unknown:
        raise TrainingError(f"cannot retire topics the champion does not have: {unknown}")
    old_labels = [t for t in champion_labels if t not in mapping]
    reviewed = relabel(
        load_reviewed_rows(engine=engine, labels=[*champion_labels, *new_topics]), mapping
    )
    base_rows, test_rows = relabel(base_rows, mapping), relabel(test_rows, mapping)
    counts = Counter(r.label for r in reviewed)
    short = {t: counts.get(t, 0) for t in new_topics if counts.get(t, 0) < min_labels}
    if short:
        raise TrainingError(
            f"not enough reviewed examples yet (need {min_labels} each): "
            + ", ".join(f"{t}: {n}, {min_labels - n} more" for t, n in short.items())
        )
    new_train, held = split_new(reviewed, new_topics, held_share=held_share, seed=seed)
    # uniformly sampled reviews are never trained on: the live check's evidence
    known = [r for r in reviewed if r.label in old_labels]
    uniform = reviews.uniform_reviewed_ids(engine, article_ids=[r.id for r in known])
    known_reviewed = [r for r in known if r.id not in uniform]
    known_uniform = [r for r in known if r.id in uniform]
    base = balanced_sample(base_rows, per_class=base_per_class, seed=seed)
    # each new class about as frequent as a known one (its few examples repeated), each by
    # its own count: several new topics with different numbers of labels are each balanced
    repeat = new_class_repeats(new_train, new_topics, base_per_class=base_per_class)
    splits = make_splits(
        [*base, *known_reviewed, *new_train], [*test_rows, *held, *known_uniform], seed=seed
    )
    # repeated after the split: make_splits drops duplicate texts
    # (block by block, so one new topic's rows come in the order they always did)
    new_rows = [r for r in splits.train if r.label in repeat]
    extra = [r for k in range(1, MAX_REPEAT) for r in new_rows if repeat[r.label] > k]
    splits = dataclasses.replace(splits, train=[*splits.train, *extra])
    state_dir = Path(tempfile.mkdtemp(prefix="newsflow-grow-", dir=settings.home))
    init_from = _grown_champion_state(
        settings, champion.version, champion_labels, splits.labels, state_dir
    )
    result = run_flow(
        settings,
        dataclasses.replace(recipe, warm_start=None, teacher=None),
        splits=splits,
        options=FlowOptions(
            baseline=False,
            init_from=init_from,
            tags={
                **(recipe_tags or {}),
                "trigger": "new_topic" if new_topics else "retire_topic",
                "new_topics": ",".join(new_topics),
                "retired_topics": ",".join(f"{k}->{v or '-'}" for k, v in mapping.items()),
                "warm_start": str(init_from is not None),
                "new_topic_examples": str(len(new_train)),
                "repeat": ",".join(f"{t}:{n}" for t, n in repeat.items()),
            },
        ),
    )
    held_counts = dict(Counter(r.label for r in held))
    if result.registered_version is None:
        return ExpandOutcome(
            "failed", "parity check failed; nothing registered", None, {}, held_counts
        )
    version = result.registered_version
    return _gate_and_promote(
        settings,
        engine=engine,
        version=version,
        champion_version=champion.version,
        mapping=mapping,
        test_rows=test_rows,
        held=held,
        new_topics=new_topics,
        old_labels=old_labels,
        labelled=counts,
        min_labels=min_labels,
        min_f1=min_f1,
        held_share=held_share,
        live_exclude={r.id for r in splits.train},
    )


def _gate_and_promote(
    settings: Settings,
    *,
    engine: Engine,
    version: str,
    champion_version: str,
    mapping: Mapping[str, str | None],
    test_rows: Sequence[LabelledText],
    held: Sequence[LabelledText],
    new_topics: Sequence[str],
    old_labels: Sequence[str],
    labelled: Mapping[str, int],
    min_labels: int,
    min_f1: float,
    held_share: float,
    live_exclude: set[str],
) -> ExpandOutcome:
    """Decide on the intervals (:func:`_gate`), record the decision as a model event
    (``needs_labels``, ``rejected`` or ``topic_gate``), and when it passes run the usual
    gate and promotion."""
    from pipeline.core import registry
    from pipeline.core.db.events import record_model_event
    from retraining.promotion import promote

    held_counts = dict(Counter(r.label for r in held))
    folder = registry.local_copy(settings, version)
    gates = _gate(
        settings,
        folder=folder,
        champion_version=champion_version,
        mapping=mapping,
        test_rows=test_rows,
        held=held,
        new_topics=new_topics,
        old_labels=old_labels,
        min_f1=min_f1,
        held_share=held_share,
    )
    f1 = {g.topic: round(g.f1.estimate, 4) for g in gates.new}
    metrics: dict[str, Any] = {
        "new_class_f1": f1,
        "held_out": held_counts,
        "topic_gate": {
            g.topic: {
                **g.to_json(),
                "labels_required": labelled.get(g.topic, 0) + _more(g, min_labels),
            }
            for g in gates.new
        },
        "old_classes": gates.old.to_json() if gates.old else None,
    }
    outcome = functools.partial(
        ExpandOutcome,
        version=version,
        new_class_f1=f1,
        held_out=held_counts,
        gate=[g.to_json() for g in gates.new],
        old_classes=metrics["old_classes"],
    )
    status, kind = gates.verdict()
    record_model_event(
        engine=engine,
        kind=kind,
        model_name=settings.registered_model_name,
        version=version,
        previous_version=champion_version,
        reason=gates.reason(),
        metrics=metrics,
    )
    if status != "promote":
        return outcome(status=status, reason=gates.reason())
    policy = GatePolicy(
        max_macro_f1_drop=settings.gate_max_macro_f1_drop,
        max_class_f1_drop=settings.gate_max_class_f1_drop,
    )
    if gates.old is not None and gates.old.decision == "pass":  # decided on the interval
        policy = dataclasses.replace(
            policy, max_macro_f1_drop=max(policy.max_macro_f1_drop, gates.old.tolerance)
        )
    decision = promote(  # the live check leaves out the reviewed rows it trained on
        settings,
        version,
        eval_rows=list(test_rows),
        engine=engine,
        policy=policy,
        live_exclude=live_exclude,
    )
    return outcome(
        status="promoted" if decision.passed else "rejected",
        reason="; ".join([gates.reason(), *decision.reasons]),
    )


def _more(gate: NewTopicGate, min_labels: int) -> int:
    """Reviewed labels to collect before this topic is retrained again: the estimate when
    the gate asked for labels, another ``min_labels`` after a refusal, none after a pass."""
    return {"needs_labels": gate.more_labels, "refuse": min_labels}.get(gate.decision, 0)


@dataclasses.dataclass(frozen=True)
class _Gates:
    new: list[NewTopicGate]
    old: OldClassesGate | None

    def verdict(self) -> tuple[str, str]:
        """(outcome status, model event kind)."""
        decisions = {g.decision for g in self.new}
        if "refuse" in decisions or (self.old is not None and self.old.decision == "refuse"):
            return "rejected", "rejected"
        if "needs_labels" in decisions:
            return "needs_labels", "needs_labels"
        return "promote", "topic_gate"

    def reason(self) -> str:
        parts = [g.reason for g in self.new]
        if self.old is not None:
            parts.append(self.old.reason)
        return "; ".join(parts)


def _gate(
    settings: Settings,
    *,
    folder: Path,
    champion_version: str,
    mapping: Mapping[str, str | None],
    test_rows: Sequence[LabelledText],
    held: Sequence[LabelledText],
    new_topics: Sequence[str],
    old_labels: Sequence[str],
    min_f1: float,
    held_share: float,
) -> _Gates:
    """The new topics' three-way decisions (on the test rows and the held-out reviewed
    examples) and the old classes' macro-F1 change against the champion (on the test rows)."""
    from pipeline.core import registry
    from retraining.gate import evaluate_folder

    rows = [*test_rows, *held]
    ev, probs = evaluate_folder(folder, rows)
    predicted = [ev.labels[int(i)] for i in probs.argmax(axis=1)]
    truth = [r.label for r in rows]
    new = []
    balanced = 1 / len(ev.labels)  # each topic's share in a balanced split, as the old ones
    for t in new_topics:
        tp, fn, fp, negatives = topic_counts(truth, predicted, t)
        new.append(
            decide_new_topic(
                t,
                tp=tp,
                fn=fn,
                fp=fp,
                negatives=negatives,
                threshold=min_f1,
                held_share=held_share,
                prevalence=balanced,
            )
        )
    old = None
    if test_rows and old_labels:
        champ_ev, champ_probs = evaluate_folder(
            registry.local_copy(settings, champion_version), test_rows
        )
        champ = [champ_ev.labels[int(i)] for i in champ_probs.argmax(axis=1)]
        champ = [mapping.get(c) or c for c in champ]  # a merged topic's rows count as its target
        old = old_classes_change(
            truth[: len(test_rows)],
            champ,
            predicted[: len(test_rows)],
            classes=old_labels,
            tolerance=settings.topic_gate_old_max_loss,
        )
    return _Gates(new, old)


def _grown_champion_state(
    settings: Settings,
    version: str,
    old_labels: Sequence[str],
    new_labels: Sequence[str],
    scratch: Path,
) -> Path | None:
    import torch

    from pipeline.core import registry

    path = registry.torch_state(settings, version, scratch)
    if path is None:
        log.warning("the champion has no torch state; the larger model starts from the base")
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    grown = scratch / "grown.pt"
    torch.save(grow_state(state, old_labels, new_labels), grown)
    return grown
