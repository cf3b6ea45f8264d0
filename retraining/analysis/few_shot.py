"""Few-shot onboarding of a kind of news that overlaps the known topics: plain fine-tuning
(what :mod:`retraining.expand` does) against a prototype-initialised new head row and a
nearest-centroid classifier on the champion's frozen encoder, with 32 and 64 reviewed labels.
Also how pure the worker's provisional suggestions are at each cosine threshold (the
champion's pooled, L2-normalised embedding against the named examples' prototype).

The data: a four-topic MiniLM champion fine-tuned briefly on AG News (as the topics-loop
test's), the new kind a 20 Newsgroups group (default ``sci.med``: medicine and health, which
AG News files under Sci/Tech, Business and World alike), stripped of headers, footers and
quotes. Unseen items: posts of the group's test split nobody labelled, mixed into AG News test
rows. Run it under the CPU lock::

    flock /tmp/newsflow-cpu.lock .venv/bin/python -m retraining.analysis.few_shot \\
        --json few_shot.json

``--gate``: the labels are split into training and held out by the product's own split
(:func:`retraining.expand.split_new`), and each fine-tuned model gets the product's decisions
(:mod:`retraining.topic_gate`, at the settings' default thresholds): the new topic's on the
AG News rows plus the held-out labels (promote, needs_labels or refuse, with the F1 interval),
the old classes' macro-F1 change against the champion on the AG News rows.

Nothing imports this module.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.core.datasets import LabelledText, load_20newsgroups, load_ag_news

log = logging.getLogger("newsflow.few_shot")
NEW = "New"
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
METHODS = ("fine_tune", "fine_tune_proto_init", "nearest_centroid")


def _product_default(name: str) -> float:
    """A setting's default in :class:`pipeline.core.settings.Settings` (not the environment's)."""
    from pipeline.core.settings import Settings

    return float(Settings.model_fields[name].default)


@dataclasses.dataclass(frozen=True)
class Options:
    data_dir: Path
    group: str = "sci.med"
    labels: tuple[int, ...] = (32, 64)
    seeds: tuple[int, ...] = (13, 14)
    champion_rows: int = 2400
    champion_steps: int = 60
    base_per_class: int = 300
    epochs: int = 1
    test_rows: int = 1000
    unseen: int = 150
    held_share: float = 0.3  # as the onboarding retraining: this share of the labels is the gate's
    max_length: int = 128
    min_body: int = 0  # the new kind's posts need a body this long (the topics-loop test: 201)
    methods: tuple[str, ...] = METHODS
    gate: bool = False  # the product's split and gates for the fine-tuned models
    min_f1: float = dataclasses.field(
        default_factory=functools.partial(_product_default, "topic_min_f1")
    )
    old_max_loss: float = dataclasses.field(
        default_factory=functools.partial(_product_default, "topic_gate_old_max_loss")
    )


@dataclasses.dataclass(frozen=True)
class Data:
    champion: list[LabelledText]
    validation: list[LabelledText]
    base: list[LabelledText]
    pool: list[LabelledText]  # the new kind's posts reviewers may label
    eval_rows: list[LabelledText]  # AG News test rows + unseen posts of the new kind
    old_labels: list[str]


def _long_enough(
    rows: Sequence[LabelledText], min_chars: int = 80, min_body: int = 0
) -> list[LabelledText]:
    return [r for r in rows if len(r.text) >= min_chars and len(r.body) >= min_body]


def load_data(opts: Options) -> Data:
    rng = random.Random(7)
    ag_train = load_ag_news(opts.data_dir, "train")
    ag_test = load_ag_news(opts.data_dir, "test")
    news_train = [r for r in load_20newsgroups(opts.data_dir, "train") if r.label == opts.group]
    news_test = [r for r in load_20newsgroups(opts.data_dir, "test") if r.label == opts.group]
    if not news_train or not news_test:
        raise SystemExit(f"no posts of newsgroup {opts.group!r} under {opts.data_dir}")
    shuffled = list(ag_train)
    rng.shuffle(shuffled)
    champion = shuffled[: opts.champion_rows]
    validation = shuffled[opts.champion_rows : opts.champion_rows + 400]
    base = shuffled  # expansion samples its base rows from the whole base set, as expand.py
    pool = [
        dataclasses.replace(r, label=NEW) for r in _long_enough(news_train, min_body=opts.min_body)
    ]
    unseen = [
        dataclasses.replace(r, label=NEW) for r in _long_enough(news_test, min_body=opts.min_body)
    ]
    if opts.test_rows > len(ag_test) or opts.unseen > len(unseen):
        raise SystemExit(
            f"asked for {opts.test_rows} AG News test rows and {opts.unseen} unseen posts; "
            f"there are {len(ag_test)} and {len(unseen)}"
        )
    eval_rows = rng.sample(list(ag_test), opts.test_rows) + rng.sample(unseen, opts.unseen)
    labels = sorted({r.label for r in champion})
    return Data(champion, validation, base, pool, eval_rows, labels)


def _fit(
    model: Any,
    tok: Any,
    rows: Sequence[LabelledText],
    val: Sequence[LabelledText],
    labels: Sequence[str],
    opts: Options,
    *,
    seed: int,
    max_steps: int | None,
) -> Any:
    from retraining.train import TrainConfig, fine_tune

    index = {label: i for i, label in enumerate(labels)}
    cfg = TrainConfig(
        epochs=opts.epochs,
        batch_size=32,
        max_length=opts.max_length,
        seed=seed,
        max_steps=max_steps,
        patience=opts.epochs,
    )
    out = fine_tune(
        model,
        tok,
        [r.text for r in rows],
        [index[r.label] for r in rows],
        [r.text for r in val],
        [index[r.label] for r in val],
        cfg,
    )
    return out.model


def pooled(model: Any, tok: Any, texts: Sequence[str], max_length: int) -> npt.NDArray[np.float32]:
    """Unit rows: the pooled vector the head reads, L2-normalised (what the worker compares)."""
    import torch

    from retraining.train import collate, encode

    ids, types = encode(tok, texts, max_length)
    with_types = getattr(model.config, "type_vocab_size", 0) > 1
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = np.zeros((len(ids), model.config.hidden_size), dtype=np.float32)
    model.eval()
    with torch.no_grad():
        for s in range(0, len(order), 64):
            b = order[s : s + 64]
            feed = collate(ids, types, b, tok.pad_token_id or 0, with_types)
            out[b] = torch.nn.functional.normalize(model.pool(**feed), dim=1).numpy()
    return out


def scores(truth: Sequence[str], predicted: Sequence[str], old: Sequence[str]) -> dict[str, Any]:
    """New-class F1 with its bootstrap interval, and the old classes' macro-F1 (on the rows
    whose truth is an old class; a row taken for the new class counts as missed)."""
    from sklearn.metrics import f1_score

    from retraining.topic_gate import f1_interval, topic_counts

    tp, fn, fp, negatives = topic_counts(list(truth), list(predicted), NEW)
    f1 = f1_interval(tp=tp, fn=fn, fp=fp, negatives=negatives)
    keep = [i for i, t in enumerate(truth) if t != NEW]
    macro = f1_score(
        [truth[i] for i in keep],
        [predicted[i] for i in keep],
        labels=list(old),
        average="macro",
        zero_division=0,
    )
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "new_f1": round(f1.estimate, 4),
        "new_f1_low": round(f1.low, 4),
        "new_f1_high": round(f1.high, 4),
        "new_precision": round(precision, 4),
        "new_recall": round(recall, 4),
        "old_macro_f1": round(float(macro), 4),
    }


def _predict(
    model: Any, tok: Any, rows: Sequence[LabelledText], labels: Sequence[str], max_length: int
) -> list[str]:
    from retraining.train import predict_logits

    logits = predict_logits(model, tok, [r.text for r in rows], max_length=max_length)
    return [labels[int(i)] for i in logits.argmax(axis=1)]


def _grown(
    champion: Any,
    old: Sequence[str],
    new: Sequence[str],
    seed: int,
    init: npt.NDArray[np.float32] | None,
) -> Any:
    """A five-class model warm-started from the champion (:func:`retraining.expand.grow_state`);
    ``init``: the new row's direction (a prototype), scaled like the old rows."""
    import copy

    import torch

    from retraining.expand import grow_state

    state = grow_state(champion.state_dict(), old, new, seed=seed)
    if init is not None:
        w = state["head.weight"]
        norm = float(w[: len(old)].norm(dim=1).mean())
        w[new.index(NEW)] = torch.from_numpy(init) * norm
        state["head.bias"][new.index(NEW)] = float(state["head.bias"][: len(old)].mean())
    model = copy.deepcopy(champion)
    model.head = torch.nn.Linear(model.head.in_features, len(new))
    model.load_state_dict(state)
    return model


def run(opts: Options) -> dict[str, Any]:
    from retraining.bases.resolve import minilm_folder
    from retraining.modeling import load_base

    data = load_data(opts)
    old = data.old_labels
    grown_labels = sorted([*old, NEW])
    t0 = time.monotonic()
    champion, tok = load_base(str(minilm_folder()), len(old))
    champion = _fit(
        champion,
        tok,
        data.champion,
        data.validation,
        old,
        opts,
        seed=13,
        max_steps=opts.champion_steps,
    )
    log.info("champion trained in %.0f s", time.monotonic() - t0)
    truth = [r.label for r in data.eval_rows]
    champ_pred = _predict(champion, tok, data.eval_rows, old, opts.max_length)
    unseen_spread = Counter(p for p, t in zip(champ_pred, truth, strict=True) if t == NEW)
    result: dict[str, Any] = {
        "options": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(opts).items()
        },
        "champion": {
            **scores(truth, champ_pred, old),
            "unseen_predicted_as": dict(unseen_spread.most_common()),
        },
        "runs": [],
        "suggestions": [],
    }
    emb_eval = pooled(champion, tok, [r.text for r in data.eval_rows], opts.max_length)
    for k in opts.labels:
        for seed in opts.seeds:
            result["runs"] += _one(
                opts, data, champion, tok, emb_eval, champ_pred, k, seed, grown_labels
            )
            result["suggestions"].append(_suggestions(opts, data, champion, tok, emb_eval, k, seed))
    result["seconds"] = round(time.monotonic() - t0)
    return result


def _one(
    opts: Options,
    data: Data,
    champion: Any,
    tok: Any,
    emb_eval: npt.NDArray[np.float32],
    champ_pred: Sequence[str],
    k: int,
    seed: int,
    grown_labels: list[str],
) -> list[dict[str, Any]]:
    from retraining.expand import MAX_REPEAT, balanced_sample

    old = data.old_labels
    rng = random.Random(seed)
    labelled = rng.sample(data.pool, k)
    train_new, held = _split(opts, labelled, seed)
    base = balanced_sample(data.base, per_class=opts.base_per_class, seed=seed)
    repeat = min(MAX_REPEAT, max(1, -(-opts.base_per_class // len(train_new))))
    rows = [*base, *(train_new * repeat)]
    truth = [r.label for r in data.eval_rows]
    out = []
    emb_new = pooled(champion, tok, [r.text for r in train_new], opts.max_length)
    proto = emb_new.mean(axis=0)
    proto = (proto / np.linalg.norm(proto)).astype(np.float32)
    for method, init in (("fine_tune", None), ("fine_tune_proto_init", proto)):
        if method not in opts.methods:
            continue
        t0 = time.monotonic()
        model = _grown(champion, old, grown_labels, seed, init)
        model = _fit(
            model, tok, rows, data.validation, grown_labels, opts, seed=seed, max_steps=None
        )
        pred = _predict(model, tok, data.eval_rows, grown_labels, opts.max_length)
        out.append(
            {
                "method": method,
                "labels": k,
                "trained_on": len(train_new),
                "seed": seed,
                "seconds": round(time.monotonic() - t0),
                **scores(truth, pred, old),
            }
        )
        if opts.gate:
            out[-1]["gate"] = _gate(opts, data, model, tok, held, pred, champ_pred, grown_labels)
        log.info("%s", out[-1])
    if "nearest_centroid" in opts.methods:
        pred = _nearest_centroid(opts, champion, tok, base, emb_new, emb_eval, grown_labels)
        out.append(
            {
                "method": "nearest_centroid",
                "labels": k,
                "trained_on": len(train_new),
                "seed": seed,
                "seconds": 0,
                **scores(truth, pred, old),
            }
        )
        log.info("%s", out[-1])
    return out


def _split(
    opts: Options, labelled: Sequence[LabelledText], seed: int
) -> tuple[list[LabelledText], list[LabelledText]]:
    """(training, held out). With ``--gate``: the product's own split
    (:func:`retraining.expand.split_new`); otherwise the first share held out, as the figures
    of 2026-12-07 were made (the same counts)."""
    if opts.gate:
        from retraining.expand import split_new

        return split_new(labelled, [NEW], held_share=opts.held_share, seed=seed)
    cut = max(1, round(len(labelled) * opts.held_share))
    return list(labelled[cut:]), list(labelled[:cut])


def _gate(
    opts: Options,
    data: Data,
    model: Any,
    tok: Any,
    held: Sequence[LabelledText],
    pred: Sequence[str],
    champ_pred: Sequence[str],
    labels: Sequence[str],
) -> dict[str, Any]:
    """The product's decisions on this model, as :mod:`retraining.expand` takes them: the new
    topic's on the test rows (here the AG News rows) plus the held-out labels, the old
    classes' macro-F1 change against the champion on the test rows. ``pred``, ``champ_pred``:
    both models' predictions on ``data.eval_rows``."""
    from retraining.topic_gate import decide_new_topic, old_classes_change, topic_counts

    test = [i for i, r in enumerate(data.eval_rows) if r.label != NEW]
    truth = [data.eval_rows[i].label for i in test]
    ours = [pred[i] for i in test]
    held_pred = _predict(model, tok, held, labels, opts.max_length)
    tp, fn, fp, negatives = topic_counts(
        [*truth, *(r.label for r in held)], [*ours, *held_pred], NEW
    )
    new = decide_new_topic(
        NEW,
        tp=tp,
        fn=fn,
        fp=fp,
        negatives=negatives,
        threshold=opts.min_f1,
        held_share=opts.held_share,
        prevalence=1 / len(labels),  # as expand._gate: each topic's share in a balanced split
    )
    old = old_classes_change(
        truth,
        [champ_pred[i] for i in test],
        ours,
        classes=data.old_labels,
        tolerance=opts.old_max_loss,
    )
    return {"new_topic": new.to_json(), "old_classes": old.to_json()}


def _nearest_centroid(
    opts: Options,
    champion: Any,
    tok: Any,
    base: Sequence[LabelledText],
    emb_new: npt.NDArray[np.float32],
    emb_eval: npt.NDArray[np.float32],
    labels: Sequence[str],
) -> list[str]:
    """Nearest centroid on the frozen champion encoder: no training step (old classes' centroids
    from the base rows, the new one from its training examples)."""
    emb_base = pooled(champion, tok, [r.text for r in base], opts.max_length)
    centroids = []
    for label in labels:
        mine = emb_new if label == NEW else emb_base[[r.label == label for r in base]]
        c = mine.mean(axis=0)
        centroids.append(c / np.linalg.norm(c))
    return [labels[int(i)] for i in (emb_eval @ np.stack(centroids).T).argmax(axis=1)]


def _suggestions(
    opts: Options,
    data: Data,
    champion: Any,
    tok: Any,
    emb_eval: npt.NDArray[np.float32],
    k: int,
    seed: int,
) -> dict[str, Any]:
    """Share of the new kind among the unseen items whose cosine to the prototype of ``k``
    named examples clears each threshold (the worker's provisional suggestions)."""
    named = random.Random(seed).sample(data.pool, k)
    emb = pooled(champion, tok, [r.text for r in named], opts.max_length)
    proto = emb.mean(axis=0)
    sims = emb_eval @ (proto / np.linalg.norm(proto))
    is_new = np.array([r.label == NEW for r in data.eval_rows])
    rows = []
    for t in THRESHOLDS:
        taken = sims >= t
        n = int(taken.sum())
        rows.append(
            {
                "threshold": t,
                "suggested": n,
                "precision": round(float(is_new[taken].mean()), 4) if n else None,
                "recall": round(float(taken[is_new].mean()), 4),
            }
        )
    edge = float((emb @ (proto / np.linalg.norm(proto))).min())
    return {"labels": k, "seed": seed, "by_threshold": rows, "named_min_cosine": round(edge, 4)}


def _mean(rows: Sequence[dict[str, Any]], key: str) -> float:
    return sum(float(r[key]) for r in rows) / len(rows)


def summarise(result: dict[str, Any]) -> list[str]:
    lines = [
        "method | labels | new F1 (mean over seeds) [lowest low, highest high] | "
        "precision | recall | old macro-F1"
    ]
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in result["runs"]:
        groups.setdefault((r["method"], r["labels"]), []).append(r)
    for (method, k), rs in groups.items():
        mean = functools.partial(_mean, rs)
        lines.append(
            f"{method} | {k} | {mean('new_f1'):.3f} [{min(r['new_f1_low'] for r in rs):.3f}, "
            f"{max(r['new_f1_high'] for r in rs):.3f}] | {mean('new_precision'):.3f} | "
            f"{mean('new_recall'):.3f} | {mean('old_macro_f1'):.4f}"
        )
    for r in result["runs"]:
        if "gate" in r:
            g, o = r["gate"]["new_topic"], r["gate"]["old_classes"]
            lines.append(
                f"gate, {r['method']}, {r['labels']} labels, seed {r['seed']}: {g['decision']} "
                f"({g['reason']}); old classes {o['decision']} ({o['reason']})"
            )
    c = result["champion"]
    lines.append(
        f"champion old macro-F1 {c['old_macro_f1']:.4f}; unseen posts predicted as "
        f"{c['unseen_predicted_as']}"
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=Path("/work/shared/data"))
    p.add_argument("--group", default="sci.med")
    p.add_argument("--labels", type=int, nargs="+", default=[32, 64])
    p.add_argument("--seeds", type=int, nargs="+", default=[13, 14])
    p.add_argument("--base-per-class", type=int, default=300)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument(
        "--test-rows",
        type=int,
        default=1000,
        help="AG News test rows scored (and the gate's test rows); the product's gate takes "
        "the whole test split, 7600, unless NEWSFLOW_EVAL_LIMIT caps it",
    )
    p.add_argument(
        "--min-body",
        type=int,
        default=0,
        help="keep the group's posts whose body has at least this many characters "
        "(the topics-loop test takes bodies over 200: 201)",
    )
    p.add_argument(
        "--gate",
        action="store_true",
        help="the product's train/held-out split and its gates' decisions for the fine-tuned "
        "models (default thresholds)",
    )
    p.add_argument("--json", type=Path)
    p.add_argument("--smoke", action="store_true", help="a few rows and steps: checks the script")
    a = p.parse_args(argv)
    if min(a.labels) < 4:
        p.error("--labels: at least 4 each")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    opts = Options(
        a.data_dir,
        a.group,
        tuple(a.labels),
        tuple(a.seeds),
        base_per_class=a.base_per_class,
        epochs=a.epochs,
        test_rows=a.test_rows,
        min_body=a.min_body,
        methods=tuple(a.methods),
        gate=a.gate,
    )
    if a.smoke:
        opts = dataclasses.replace(
            opts,
            champion_rows=64,
            champion_steps=2,
            base_per_class=8,
            test_rows=40,
            unseen=10,
            max_length=32,
        )
    result = run(opts)
    text = "\n".join(summarise(result))
    sys.stdout.write(text + "\n")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
