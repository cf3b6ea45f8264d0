"""How far a model's calibration travels from its validation split to its test split.

``python -m retraining.temperature_shift SUMMARY.json [--json out.json]`` reads a ``newsflow
train --json`` summary, scores its model folder (fp32 ONNX: equal to torch within 1e-4) on
the same validation and test rows the training used, and prints test ECE with no scaling,
with the temperature fitted on validation (what training does) and with the temperature
that is best for the test rows themselves: a bound on what any single temperature can reach.
A fitted temperature far from the test's best one means the validation rows do not look like
the test period (20 Newsgroups' bydate split: test posts are later than all training posts).
The splits are rebuilt from the summary's data card with the default validation split; a
changed row count is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pipeline.core.runtime import softmax
from retraining.evaluate import expected_calibration_error, fit_temperature

if TYPE_CHECKING:
    from retraining.data import Splits


@dataclasses.dataclass(frozen=True)
class TemperatureShift:
    validation_accuracy: float
    test_accuracy: float
    t_fitted_on_validation: float
    t_best_on_test: float
    test_ece_unscaled: float
    test_ece_fitted: float
    test_ece_best: float  # the bound: no single temperature does better on these test rows


def measure(
    val_logits: npt.NDArray[np.float32],
    val_y: npt.NDArray[np.int64],
    test_logits: npt.NDArray[np.float32],
    test_y: npt.NDArray[np.int64],
) -> TemperatureShift:
    t_fit = fit_temperature(val_logits, val_y)
    t_best = fit_temperature(test_logits, test_y)

    def ece(t: float) -> float:
        return expected_calibration_error(softmax(test_logits, t), test_y)

    return TemperatureShift(
        validation_accuracy=float((val_logits.argmax(1) == val_y).mean()),
        test_accuracy=float((test_logits.argmax(1) == test_y).mean()),
        t_fitted_on_validation=t_fit,
        t_best_on_test=t_best,
        test_ece_unscaled=ece(1.0),
        test_ece_fitted=ece(t_fit),
        test_ece_best=ece(t_best),
    )


def _splits_of(summary: dict[str, Any]) -> Splits:
    """The training run's splits, rebuilt from its data card (default validation split)."""
    from pipeline.core.settings import Settings
    from retraining.flow import load_training_data
    from retraining.training_data import DataChoice

    card = summary.get("data_card") or {}
    choice = None
    if card.get("source") == "union":
        cut = card.get("rows_kept") if card.get("removed_by_max_rows") else None
        choice = DataChoice(
            source="union", formats=tuple(card.get("formats_kept") or ()), max_rows=cut
        )
    return load_training_data(Settings(), str(summary["dataset"]), choice=choice)


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.core.runtime import Classifier

    ap = argparse.ArgumentParser(
        prog="python -m retraining.temperature_shift", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("summary", type=Path, help="a `newsflow train --json` summary")
    ap.add_argument("--json", dest="json_path", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    try:
        summary = json.loads(args.summary.read_text())
        folder = Path(summary["model_dir"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        ap.exit(2, f"error: {args.summary} is not a `newsflow train --json` summary: {exc}\n")
    splits = _splits_of(summary)
    counts = summary.get("splits") or {}
    clf = Classifier.load(folder, precision="fp32", warmup=False)
    labels = list(splits.labels)
    if list(clf.labels) != labels:
        ap.exit(2, f"error: the model predicts {clf.labels}, the data has {labels}\n")
    got: dict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]] = {}
    for name in ("validation", "test"):
        rows = getattr(splits, name)
        if counts.get(name) not in (None, len(rows)):
            ap.exit(2, f"error: {name} has {len(rows)} rows now, {counts[name]} in training\n")
        y = np.array([labels.index(r.label) for r in rows], dtype=np.int64)
        got[name] = (clf.logits([r.text for r in rows]), y)
    res = measure(*got["validation"], *got["test"])
    sys.stdout.write("".join(f"{k:24s} {v:.4f}\n" for k, v in dataclasses.asdict(res).items()))
    if args.json_path:
        args.json_path.write_text(json.dumps(dataclasses.asdict(res), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
