"""Retrain with a larger label set: the champion's classes plus topics people onboarded.

The encoder and the known classes' head rows warm-start from the champion's fine-tuned
weights; each new class gets a fresh head row. Training rows: a balanced sample of the base
labelled set, the reviewed labels of known classes, and the new classes' reviewed examples
(a share held out for the gate, the rest repeated until each new class is about as frequent
as a known one).
Promotion needs both: the usual gate on the known classes (against the champion, on their
rows only) and a minimum F1 for every new class on its held-out reviewed examples.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from pipeline.core.datasets import LabelledText
from pipeline.core.settings import Settings
from retraining.errors import TrainingError
from retraining.train import TrainConfig

log = logging.getLogger("newsflow.expand")
MAX_REPEAT = 20


@dataclasses.dataclass(frozen=True)
class ExpandOutcome:
    status: str  # promoted | rejected | failed
    reason: str
    version: str | None
    new_class_f1: dict[str, float]
    held_out: dict[str, int]

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


def retrain_expanded(
    settings: Settings,
    *,
    engine: Engine,
    new_topics: Sequence[str],
    base_rows: Sequence[LabelledText],
    test_rows: Sequence[LabelledText],
    cfg: TrainConfig,
    min_labels: int,
    min_f1: float,
    retire: Mapping[str, str | None] | None = None,
    quantize: bool = True,
    held_share: float = 0.3,
    base_per_class: int = 600,
    seed: int = 13,
) -> ExpandOutcome:
    """Train, gate and (when both gates pass) promote a champion that knows ``new_topics``
    and no longer ``retire``'s topics: each removed (→ None; its examples are dropped) or
    merged into another (its examples count as that topic)."""
    from pipeline.core import registry
    from pipeline.core.db.events import record_model_event
    from pipeline.core.model_folder import read_metadata
    from retraining.data import make_splits
    from retraining.flow import FlowOptions, run_flow
    from retraining.gate import evaluate_folder
    from retraining.promotion import promote
    from retraining.recipe import Recipe
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
            + ", ".join(f"{t}: {n}" for t, n in short.items())
        )
    new_train, held = split_new(reviewed, new_topics, held_share=held_share, seed=seed)
    known_reviewed = [r for r in reviewed if r.label in old_labels]
    base = balanced_sample(base_rows, per_class=base_per_class, seed=seed)
    # each new class about as frequent as a known one (its few examples repeated)
    per_new = max(1, len(new_train) // max(1, len(new_topics)))
    repeat = min(MAX_REPEAT, max(1, -(-base_per_class // per_new)))
    splits = make_splits([*base, *known_reviewed, *new_train], [*test_rows, *held], seed=seed)
    # repeated after the split: make_splits drops duplicate texts
    extra = [r for r in splits.train if r.label in new_topics] * (repeat - 1)
    splits = dataclasses.replace(splits, train=[*splits.train, *extra])
    state_dir = Path(tempfile.mkdtemp(prefix="newsflow-grow-", dir=settings.home))
    init_from = _grown_champion_state(
        settings, champion.version, champion_labels, splits.labels, state_dir
    )
    result = run_flow(
        settings,
        Recipe(training=cfg, quantize=quantize),
        splits=splits,
        options=FlowOptions(
            baseline=False,
            init_from=init_from,
            tags={
                "trigger": "new_topic" if new_topics else "retire_topic",
                "new_topics": ",".join(new_topics),
                "retired_topics": ",".join(f"{k}->{v or '-'}" for k, v in mapping.items()),
                "warm_start": str(init_from is not None),
                "new_topic_examples": str(len(new_train)),
                "repeat": str(repeat),
            },
        ),
    )
    held_counts = dict(Counter(r.label for r in held))
    if result.registered_version is None:
        return ExpandOutcome(
            "failed", "parity check failed; nothing registered", None, {}, held_counts
        )
    version = result.registered_version
    folder = registry.local_copy(settings, version)
    ev, _ = evaluate_folder(folder, [*test_rows, *held])
    f1 = {t: round(ev.per_class.get(t, {}).get("f1", 0.0), 4) for t in new_topics}
    weak = {t: v for t, v in f1.items() if v < min_f1}
    if weak:
        reason = ", ".join(f"new topic {t!r} F1 {v:.3f} < {min_f1}" for t, v in weak.items())
        record_model_event(
            engine=engine,
            kind="rejected",
            model_name=settings.registered_model_name,
            version=version,
            previous_version=champion.version,
            reason=reason,
            metrics={"new_class_f1": f1, "held_out": held_counts},
        )
        return ExpandOutcome("rejected", reason, version, f1, held_counts)
    decision = promote(settings, version, eval_rows=list(test_rows), engine=engine)
    status = "promoted" if decision.passed else "rejected"
    return ExpandOutcome(status, "; ".join(decision.reasons), version, f1, held_counts)


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
