"""Does the temperature fitted on the newest training posts hold better on the later test
period than one fitted on a random validation split? Measured on 20 Newsgroups "bydate"
with TF-IDF + logistic regression (the flow's baseline recipe; no transformer, a few
minutes on two cores).

For each validation split (random with each ``--seeds`` seed, and time-aware: the newest
``--share`` of each newsgroup, :mod:`retraining.time_split`) the model is trained on the
remaining training rows, the temperature is fitted on the validation rows' decision scores
(:func:`retraining.evaluate.fit_temperature`, as the flow does) and ECE is measured on the
whole bydate test split. Reference points: the validation split's own accuracy and ECE (what
the split promises), the temperature fitted on the test split itself (the best NLL
temperature) and the lowest test ECE any single temperature reaches; no split that can be
used in training knows either. A paired bootstrap over test rows gives a 95 %
interval for ECE(time) - ECE(random) from test-set sampling alone.

    NEWSFLOW_DATA_DIR=../shared/data .venv/bin/python -m retraining.analysis.bench_calibration \\
        --seeds 13 14 15 --json calibration-20ng.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.core.datasets import load_dataset
from pipeline.core.runtime import softmax
from pipeline.core.settings import Settings
from retraining.data import Splits, Validation, make_splits
from retraining.evaluate import expected_calibration_error, fit_temperature
from retraining.model_card import cpu_model
from retraining.time_split import default_order
from retraining.training_data import DataChoice, choose_rows

DATASET = "20newsgroups"
JSON_NAME = "calibration-20ng.json"


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    validation: dict[str, Any]
    train_rows: int
    validation_rows: int
    temperature: float
    validation_accuracy: float
    validation_ece_scaled: float
    test_accuracy: float
    test_ece_raw: float
    test_ece_scaled: float
    test_nll_scaled: float
    oracle_temperature: float  # NLL-optimal on the test split itself (reference only)
    test_ece_oracle: float
    test_ece_min: float  # the lowest test ECE any one temperature reaches (reference only)
    test_ece_min_temperature: float
    seconds: float


def nll(probs: npt.NDArray[np.float64], y: npt.NDArray[np.int64]) -> float:
    return float(-np.mean(np.log(probs[np.arange(len(y)), y] + 1e-12)))


def tfidf_lr_logits(
    train_x: Sequence[str], train_y: Sequence[int], *others: Sequence[str]
) -> list[npt.NDArray[np.float32]]:
    """Decision scores (the multinomial model's logits) of ``others`` after fitting
    :func:`retraining.evaluate.tfidf_baseline`'s recipe on the training rows."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000)
    clf = LogisticRegression(max_iter=2000, C=10.0)
    clf.fit(vec.fit_transform(train_x), list(train_y))
    out = []
    for x in others:
        scores = np.asarray(clf.decision_function(vec.transform(x)), dtype=np.float32)
        if scores.ndim == 1:  # two classes: one score, the logit of the second class
            scores = np.column_stack([np.zeros_like(scores), scores])
        out.append(scores)
    return out


def run_variant(name: str, splits: Splits) -> tuple[Variant, npt.NDArray[np.float64]]:
    """Train, calibrate on the validation split, score the test split; also returns the
    scaled test probabilities (for the paired bootstrap)."""
    index = {lbl: i for i, lbl in enumerate(splits.labels)}
    start = time.perf_counter()

    def ys(rows: Sequence[Any]) -> npt.NDArray[np.int64]:
        return np.array([index[r.label] for r in rows], dtype=np.int64)

    va_y, te_y = ys(splits.validation), ys(splits.test)
    val, test = tfidf_lr_logits(
        [r.text for r in splits.train],
        ys(splits.train).tolist(),
        [r.text for r in splits.validation],
        [r.text for r in splits.test],
    )
    t = fit_temperature(val, va_y)
    oracle = fit_temperature(test, te_y)
    scaled = softmax(test, t)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 181))
    eces = [expected_calibration_error(softmax(test, float(g)), te_y) for g in grid]
    best = int(np.argmin(eces))
    variant = Variant(
        name=name,
        validation=splits.validation_info,
        train_rows=len(splits.train),
        validation_rows=len(splits.validation),
        temperature=t,
        validation_accuracy=float(np.mean(val.argmax(1) == va_y)),
        validation_ece_scaled=expected_calibration_error(softmax(val, t), va_y),
        test_accuracy=float(np.mean(test.argmax(1) == te_y)),
        test_ece_raw=expected_calibration_error(softmax(test), te_y),
        test_ece_scaled=expected_calibration_error(scaled, te_y),
        test_nll_scaled=nll(scaled, te_y),
        oracle_temperature=oracle,
        test_ece_oracle=expected_calibration_error(softmax(test, oracle), te_y),
        test_ece_min=float(eces[best]),
        test_ece_min_temperature=float(grid[best]),
        seconds=round(time.perf_counter() - start, 1),
    )
    return variant, scaled


def paired_bootstrap(
    a: npt.NDArray[np.float64],
    b: npt.NDArray[np.float64],
    y: npt.NDArray[np.int64],
    *,
    rounds: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """95 % interval of ECE(a) - ECE(b) over test rows resampled with replacement."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(rounds):
        i = rng.integers(0, len(y), size=len(y))
        diffs.append(
            expected_calibration_error(a[i], y[i]) - expected_calibration_error(b[i], y[i])
        )
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"lo": float(lo), "hi": float(hi), "rounds": rounds}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--share", type=float, default=0.1, help="validation share per label")
    ap.add_argument("--seeds", type=int, nargs="+", default=[13], help="seeds of the random splits")
    ap.add_argument(
        "--json", type=Path, default=None, help="where to write the figures (default: reports)"
    )
    args = ap.parse_args(argv)

    settings = Settings()
    test = load_dataset(DATASET, split="test", data_dir=settings.data_dir)
    # the flow's data path (retraining.flow.load_training_data), with this share
    train, _ = choose_rows(settings.data_dir, DATASET, DataChoice(), test)
    results: list[Variant] = []
    scaled: dict[str, npt.NDArray[np.float64]] = {}
    test_y: npt.NDArray[np.int64] | None = None
    plans: list[tuple[str, Validation, int]] = [
        *[(f"random (seed {s})", "random", s) for s in args.seeds],
        ("time", "time", 13),
    ]
    for name, mode, seed in plans:
        splits = make_splits(
            train,
            test,
            validation_share=args.share,
            seed=seed,
            validation=mode,
            time_order=default_order(train),
        )
        variant, probs = run_variant(name, splits)
        results.append(variant)
        scaled[name] = probs
        index = {lbl: i for i, lbl in enumerate(splits.labels)}
        test_y = np.array([index[r.label] for r in splits.test], dtype=np.int64)
        _say(_line(variant))
    assert test_y is not None
    first_random = results[0].name
    boot = paired_bootstrap(scaled["time"], scaled[first_random], test_y)
    out: dict[str, Any] = {
        "dataset": DATASET,
        "model": "TF-IDF (1-2 grams, min_df 2, 200k features) + logistic regression (C 10)",
        "share": args.share,
        "test_rows": len(test_y),
        "variants": [dataclasses.asdict(v) for v in results],
        "ece_time_minus_random_ci95": {**boot, "random": first_random},
        "machine": {
            "cpu": cpu_model(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "command": " ".join(
            ["python -m retraining.analysis.bench_calibration", *(argv or sys.argv[1:])]
        ),
    }
    _say(
        f"ECE(time) - ECE({first_random}) on the test split: 95% interval "
        f"[{boot['lo']:+.4f}, {boot['hi']:+.4f}] (paired bootstrap, test rows only)"
    )
    path = args.json or (settings.reports_dir or settings.home / "reports") / JSON_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    _say(f"wrote {path}")
    return out


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _line(v: Variant) -> str:
    return (
        f"{v.name:18s} train {v.train_rows} val {v.validation_rows}: T {v.temperature:.3f}  "
        f"val acc {v.validation_accuracy:.4f} ECE {v.validation_ece_scaled:.4f} | test acc "
        f"{v.test_accuracy:.4f} ECE raw {v.test_ece_raw:.4f} -> {v.test_ece_scaled:.4f} "
        f"(NLL {v.test_nll_scaled:.4f}); test-fitted T {v.oracle_temperature:.3f} ECE "
        f"{v.test_ece_oracle:.4f}; lowest test ECE {v.test_ece_min:.4f} at T "
        f"{v.test_ece_min_temperature:.3f}  [{v.seconds:.0f}s]"
    )


if __name__ == "__main__":
    main()
