"""How far a model's calibration travels from its validation split to its test split.

``python -m retraining.analysis.temperature_shift SUMMARY.json [--json out.json]`` reads a
``newsflow train --json`` summary, scores its model folder (fp32 ONNX: equal to torch within
1e-4) on the same validation and test rows the training used, and prints test ECE with no scaling,
with the temperature fitted on validation (what training does) and with the temperature
that gives the lowest ECE on the test rows themselves (a search over 0.1–10): a bound on what
any single temperature can reach.
A fitted temperature far from the test's best one means the validation rows do not look like
the test period (20 Newsgroups' bydate split: test posts are later than all training posts).
The splits are rebuilt as the run drew them (dataset, data choice, seed, validation split,
from files whose SHA-256 equals the data card's); a changed row count is refused.
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
from retraining.errors import InputError
from retraining.evaluate import expected_calibration_error, fit_temperature

if TYPE_CHECKING:
    from pipeline.core.settings import Settings
    from retraining.data import Splits


@dataclasses.dataclass(frozen=True)
class TemperatureShift:
    validation_accuracy: float
    test_accuracy: float
    t_fitted_on_validation: float  # NLL-optimal on validation: what training uses
    t_nll_on_test: float  # NLL-optimal on the test rows themselves
    t_min_ece_on_test: float  # the temperature of test_ece_min
    test_ece_unscaled: float
    test_ece_fitted: float
    test_ece_min: float  # no temperature on the grid does better on these test rows


# the ECE search: log-spaced temperatures from 0.1 to 10, plus the NLL-optimal ones
_GRID = np.exp(np.linspace(np.log(0.1), np.log(10.0), 461))


def measure(
    val_logits: npt.NDArray[np.float32],
    val_y: npt.NDArray[np.int64],
    test_logits: npt.NDArray[np.float32],
    test_y: npt.NDArray[np.int64],
) -> TemperatureShift:
    t_fit = fit_temperature(val_logits, val_y)
    t_nll = fit_temperature(test_logits, test_y)

    def ece(t: float) -> float:
        return expected_calibration_error(softmax(test_logits, t), test_y)

    candidates = [*map(float, _GRID), t_fit, t_nll, 1.0]
    eces = [ece(t) for t in candidates]
    best = int(np.argmin(eces))
    return TemperatureShift(
        validation_accuracy=float((val_logits.argmax(1) == val_y).mean()),
        test_accuracy=float((test_logits.argmax(1) == test_y).mean()),
        t_fitted_on_validation=t_fit,
        t_nll_on_test=t_nll,
        t_min_ece_on_test=candidates[best],
        test_ece_unscaled=ece(1.0),
        test_ece_fitted=ece(t_fit),
        test_ece_min=eces[best],
    )


class SummaryError(InputError):
    """The summary cannot be scored as the run was: a clear message, exit 2."""


def _splits_of(summary: dict[str, Any], settings: Settings) -> Splits:
    """The training run's splits, rebuilt as the run drew them: its dataset, data choice,
    seed and validation split, from files whose SHA-256 equals the data card's."""
    from retraining.checkpoint import file_sha256
    from retraining.flow import load_training_data
    from retraining.train import TrainConfig
    from retraining.training_data import DataChoice

    data_dir = settings.data_dir

    dataset, card = summary.get("dataset"), summary.get("data_card") or {}
    if not isinstance(dataset, str) or not isinstance(card, dict):
        raise SummaryError("it names no dataset (or its data_card is not an object)")
    for f in card.get("files") or []:
        path = Path(f["path"]) if Path(f["path"]).is_absolute() else data_dir / f["path"]
        if not path.is_file():
            raise SummaryError(f"the training data file {path} is missing")
        if f.get("sha256") and file_sha256(path) != f["sha256"]:
            raise SummaryError(f"{path} differs from the file the run was trained on (SHA-256)")
    seed = summary.get("seed")
    info = summary.get("validation_info") or {}
    if seed is None or not info:
        sys.stderr.write(
            "note: the summary predates recorded seeds and validation splits: the training "
            "defaults (seed 13, the dataset's default split) are assumed\n"
        )
    seed = TrainConfig().seed if seed is None else int(seed)
    cut = card.get("rows_kept") if card.get("removed_by_max_rows") else None
    choice = DataChoice(
        source="union" if card.get("source") == "union" else "sample",
        formats=tuple(card.get("formats_kept") or ("title+desc",)),
        max_rows=cut,
        seed=seed,
    )
    mode = info.get("mode") if isinstance(info, dict) else None
    return load_training_data(settings, dataset, choice=choice, validation=mode)


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.core.errors import NewsflowError
    from pipeline.core.runtime import Classifier
    from pipeline.core.settings import Settings

    ap = argparse.ArgumentParser(
        prog="python -m retraining.analysis.temperature_shift", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("summary", type=Path, help="a `newsflow train --json` summary")
    ap.add_argument("--json", dest="json_path", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    out = args.json_path
    if out is not None and (out.is_dir() or not out.parent.is_dir()):
        ap.exit(2, f"error: --json {out}: not a file in an existing folder\n")
    try:
        summary = json.loads(args.summary.read_text())
        if not isinstance(summary, dict):
            raise SummaryError("not a JSON object")
        splits = _splits_of(summary, Settings())
        folder = Path(str(summary["model_dir"]))
        clf = Classifier.load(folder, precision="fp32", warmup=False)
        labels = list(splits.labels)
        if list(clf.labels) != labels:
            raise SummaryError(f"the model predicts {clf.labels}, the data has {labels}")
        raw = summary.get("splits")
        counts: dict[str, Any] = raw if isinstance(raw, dict) else {}
        got: dict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]] = {}
        for name in ("validation", "test"):
            rows = getattr(splits, name)
            if counts.get(name) not in (None, len(rows)):
                raise SummaryError(f"{name} has {len(rows)} rows now, {counts[name]} in training")
            y = np.array([labels.index(r.label) for r in rows], dtype=np.int64)
            got[name] = (clf.logits([r.text for r in rows]), y)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, NewsflowError) as exc:
        ap.exit(2, f"error: cannot score {args.summary}: {type(exc).__name__}: {exc}\n")
    res = measure(*got["validation"], *got["test"])
    sys.stdout.write("".join(f"{k:24s} {v:.4f}\n" for k, v in dataclasses.asdict(res).items()))
    if out is not None:
        out.write_text(json.dumps(dataclasses.asdict(res), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
