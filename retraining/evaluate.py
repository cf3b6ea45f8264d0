"""Honest measurement: accuracy, F1, per-class scores, confusion matrix, calibration (ECE and
a reliability diagram) and temperature scaling fitted on validation logits."""

from __future__ import annotations

import csv
import dataclasses
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.core.runtime import softmax

FloatArray = npt.NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class Evaluation:
    accuracy: float
    macro_f1: float
    micro_f1: float
    ece: float
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    labels: list[str]
    n: int

    def flat(self, prefix: str = "") -> dict[str, float]:
        out = {
            f"{prefix}accuracy": self.accuracy,
            f"{prefix}macro_f1": self.macro_f1,
            f"{prefix}micro_f1": self.micro_f1,
            f"{prefix}ece": self.ece,
        }
        for label, scores in self.per_class.items():
            safe = "".join(c if c.isalnum() else "_" for c in label)
            out[f"{prefix}f1_{safe}"] = scores["f1"]
        return out


def expected_calibration_error(
    probs: FloatArray, y: npt.NDArray[np.int64], bins: int = 15
) -> float:
    """ECE with equal-width confidence bins."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def fit_temperature(logits: npt.NDArray[np.float32], y: npt.NDArray[np.int64]) -> float:
    """Temperature minimising validation NLL (golden-section search on log T)."""

    def nll(log_t: float) -> float:
        p = softmax(logits, float(np.exp(log_t)))
        return float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))

    lo, hi = np.log(0.05), np.log(20.0)
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return float(np.exp((lo + hi) / 2))


def evaluate_probs(
    probs: FloatArray, y: npt.NDArray[np.int64], labels: Sequence[str]
) -> Evaluation:
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    pred = probs.argmax(1)
    idx = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=idx, zero_division=0)
    return Evaluation(
        accuracy=float((pred == y).mean()),
        macro_f1=float(f1_score(y, pred, labels=idx, average="macro", zero_division=0)),
        micro_f1=float(f1_score(y, pred, labels=idx, average="micro", zero_division=0)),
        ece=expected_calibration_error(probs, y),
        per_class={
            lbl: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": float(s[i]),
            }
            for i, lbl in enumerate(labels)
        },
        confusion=confusion_matrix(y, pred, labels=idx).tolist(),
        labels=list(labels),
        n=len(y),
    )


def write_report(
    ev: Evaluation, probs: FloatArray, y: npt.NDArray[np.int64], out: Path, *, title: str = ""
) -> list[Path]:
    """Confusion matrix (CSV + PNG) and reliability diagram (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files = [out / "confusion_matrix.csv", out / "confusion_matrix.png", out / "reliability.png"]
    with open(files[0], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["true \\ predicted", *ev.labels])
        for lbl, row in zip(ev.labels, ev.confusion, strict=True):
            w.writerow([lbl, *row])
    cm = np.array(ev.confusion)
    size = max(4.0, 0.45 * len(ev.labels) + 2)
    fig: Any
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(ev.labels)), ev.labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(ev.labels)), ev.labels, fontsize=7)
    if len(ev.labels) <= 12:
        for i in range(len(ev.labels)):
            for j in range(len(ev.labels)):
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if cm[i, j] > cm.max() / 2 else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} accuracy {ev.accuracy:.3f}, macro-F1 {ev.macro_f1:.3f}")
    fig.tight_layout()
    fig.savefig(files[1], dpi=120)
    plt.close(fig)

    conf, correct = probs.max(1), probs.argmax(1) == y
    edges = np.linspace(0, 1, 11)
    mids, accs, counts = [], [], []
    for lo, hi in itertools.pairwise(edges):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            mids.append(conf[m].mean())
            accs.append(correct[m].mean())
            counts.append(int(m.sum()))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot(mids, accs, "o-", label="model")
    for x, yy, c in zip(mids, accs, counts, strict=True):
        ax.annotate(str(c), (x, yy), fontsize=6, xytext=(3, -8), textcoords="offset points")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {ev.ece:.3f})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(files[2], dpi=120)
    plt.close(fig)
    return files


def tfidf_baseline(
    train_texts: Sequence[str],
    train_y: Sequence[int],
    test_texts: Sequence[str],
    test_y: Sequence[int],
) -> float:
    """TF-IDF + logistic regression accuracy on the same split (a reference point)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000)
    x = vec.fit_transform(train_texts)
    clf = LogisticRegression(max_iter=2000, C=10.0)
    clf.fit(x, list(train_y))
    pred = clf.predict(vec.transform(test_texts))
    return float(np.mean(np.asarray(pred) == np.asarray(test_y)))
