"""A learning curve from the ``--json`` summaries of ``newsflow train`` runs: test accuracy
against training rows, one line per base model and number of epochs, so where a long CPU run
is heading can be seen before it is paid for.

    .venv/bin/python -m retraining.analysis.learning_curve runs/*.json --out c.png --json c.json

Each summary gives its base (``base_model``), training rows (``splits.train``), epochs run
(``epoch_seconds``), test rows (``splits.test``), the fp32 and served int8 accuracy and the
training time. A file that is not such a summary is named in a clear error; nothing is drawn
from it. The plot's error bars are the 95 % Wilson interval of each accuracy on its own test
rows (a 2,000-row sample moves a figure by about ±1.2 points at 0.92), the interval the drift
reports use; unlike the normal one it does not shrink to nothing at 0 or 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.core.stats import wilson_interval
from retraining.errors import InputError

MAX_BYTES = 10_000_000  # a train summary is a few kB
_NAME = re.compile(r"[\w.@/+-]{1,200}")  # base names, folders, hub names; no table breakers


class CurveError(InputError):
    """A file that cannot be read as a ``newsflow train --json`` summary."""


@dataclasses.dataclass(frozen=True)
class Point:
    source: str
    base: str
    dataset: str
    train_rows: int
    epochs: int
    test_rows: int
    accuracy: float
    int8_accuracy: float | None
    train_seconds: float | None

    @property
    def bounds(self) -> tuple[float, float]:
        """The 95 % Wilson interval of ``accuracy`` on ``test_rows`` rows."""
        return wilson_interval(round(self.accuracy * self.test_rows), self.test_rows)

    @property
    def interval(self) -> tuple[float, float]:
        """The 95 % interval as (below, above) distances from ``accuracy`` (error bars)."""
        low, high = self.bounds
        return max(0.0, self.accuracy - low), max(0.0, high - self.accuracy)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge integer"
    return text if len(text) <= 60 else text[:57] + "..."


def _number(obj: dict[str, Any], key: str, where: str, *, optional: bool = False) -> Any:
    value = obj.get(key)
    if value is None and optional:
        return None
    ok = False
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            ok = math.isfinite(value) and abs(value) < 1e15
        except OverflowError:  # an integer too large for a float
            ok = False
    if not ok:
        raise CurveError(f"{where}: {key!r} must be a finite number, not {_short(value)}")
    return value


def read_point(path: Path) -> Point:
    """One run's point; :class:`CurveError` with the file's name when it is not a summary."""
    where = str(path)
    if not path.is_file():  # a folder, a fifo (would block), a device, a dangling link
        raise CurveError(f"{where}: not a regular file")
    if path.stat().st_size > MAX_BYTES:
        raise CurveError(f"{where}: {path.stat().st_size:,} bytes, not a train summary")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: JSON, UTF-8, digits
        raise CurveError(f"{where}: cannot read a JSON summary ({_short(str(exc))})") from None
    if not isinstance(data, dict):
        raise CurveError(f"{where}: not a newsflow train --json summary (no object)")
    splits, epochs = data.get("splits"), data.get("epoch_seconds")
    base, dataset = data.get("base_model"), data.get("dataset")
    if not isinstance(splits, dict) or not isinstance(epochs, list) or not epochs:
        raise CurveError(f"{where}: not a newsflow train --json summary (no splits/epochs)")
    for i, _ in enumerate(epochs):
        _number({"epoch_seconds": epochs[i]}, "epoch_seconds", f"{where}: epoch {i + 1}")
    if not isinstance(base, str) or not isinstance(dataset, str):
        raise CurveError(f"{where}: base_model and dataset must be strings")
    if not _NAME.fullmatch(base) or not _NAME.fullmatch(dataset):
        raise CurveError(f"{where}: base_model and dataset must be plain names, not {_short(base)}")
    train, test = _number(splits, "train", where), _number(splits, "test", where)
    if train < 1 or test < 1 or int(train) != train or int(test) != test:
        raise CurveError(f"{where}: splits need positive whole train and test counts")
    accuracy = _number(data, "accuracy", where)
    int8 = _number(data, "served_int8_accuracy", where, optional=True)
    for name, value in (("accuracy", accuracy), ("served_int8_accuracy", int8)):
        if value is not None and not 0 <= value <= 1:
            raise CurveError(f"{where}: {name} {value} is not in [0, 1]")
    seconds = _number(data, "train_seconds", where, optional=True)
    if seconds is not None and seconds < 0:
        raise CurveError(f"{where}: train_seconds {seconds} is negative")
    return Point(
        source=path.name,
        base=base,
        dataset=dataset,
        train_rows=int(train),
        epochs=len(epochs),
        test_rows=int(test),
        accuracy=float(accuracy),
        int8_accuracy=None if int8 is None else float(int8),
        train_seconds=None if seconds is None else float(seconds),
    )


def read_points(paths: Sequence[Path]) -> list[Point]:
    """Every file's point, sorted by base, epochs and rows; one dataset only."""
    if not paths:
        raise CurveError("no summaries given")
    unique = list(dict.fromkeys(p.resolve() for p in paths))  # a file named twice is one run
    points = [read_point(p) for p in unique]
    datasets = sorted({p.dataset for p in points})
    if len(datasets) > 1:
        raise CurveError(f"summaries of several datasets ({', '.join(datasets)}): plot one")
    return sorted(points, key=lambda p: (p.base, p.epochs, p.train_rows))


def table(points: Sequence[Point]) -> str:
    """A Markdown table of the points, as the training benchmark page prints them."""
    lines = [
        "| base | epochs | train rows | test rows | accuracy [95 % interval] | int8 | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in points:
        int8 = "" if p.int8_accuracy is None else f"{p.int8_accuracy:.4f}"
        secs = "" if p.train_seconds is None else f"{p.train_seconds:,.0f}"
        low, high = p.bounds
        lines.append(
            f"| {p.base} | {p.epochs} | {p.train_rows:,} | {p.test_rows:,} | "
            f"{p.accuracy:.4f} [{low:.4f}, {high:.4f}] | {int8} | {secs} |"
        )
    return "\n".join(lines)


def plot(points: Sequence[Point], out: Path, *, target: float | None = None) -> Path:
    """Accuracy against training rows (log scale), a line per (base, epochs): a colour per
    base, solid for one epoch, dashed for more."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups: dict[tuple[str, int], list[Point]] = {}
    for p in points:
        groups.setdefault((p.base, p.epochs), []).append(p)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {b: palette[i % len(palette)] for i, b in enumerate(sorted({p.base for p in points}))}
    for (base, epochs), pts in sorted(groups.items()):
        ax.errorbar(
            [p.train_rows for p in pts],
            [p.accuracy for p in pts],
            yerr=[[p.interval[0] for p in pts], [p.interval[1] for p in pts]],
            color=colour[base],
            marker="o" if epochs == 1 else "s",
            linestyle="-" if epochs == 1 else "--",
            capsize=3,
            label=f"{base}, {epochs} epoch{'s' if epochs > 1 else ''}",
        )
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target}")
    ax.set_xscale("log")
    ax.set_xlabel("training rows")
    ax.set_ylabel("test accuracy (fp32)")
    ax.set_title(f"{points[0].dataset}: test accuracy against training rows")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, dpi=110, format="png")
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return out


def check_outputs(inputs: Sequence[Path], out: Path, points_json: Path | None) -> None:
    """Refuse outputs that would overwrite an input or each other, or cannot be written,
    before anything is read or drawn."""
    if out.suffix.lower() != ".png":
        raise CurveError(f"--out {out}: the plot is a PNG; name it *.png")
    if points_json is not None and points_json.suffix.lower() != ".json":
        raise CurveError(f"--json {points_json}: name it *.json")
    mine = {p.resolve() for p in inputs}
    for flag, target in (("--out", out), ("--json", points_json)):
        if target is None:
            continue
        if target.resolve() in mine:
            raise CurveError(f"{flag} {target} is one of the summaries: it would be overwritten")
        if target.is_dir():
            raise CurveError(f"{flag} {target} is a folder")
    if points_json is not None and points_json.resolve() == out.resolve():
        raise CurveError("--out and --json are the same file")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retraining.analysis.learning_curve",
        description="Plot test accuracy against training rows from newsflow train --json files.",
    )
    parser.add_argument("summaries", nargs="+", type=Path, help="newsflow train --json files")
    parser.add_argument("--out", type=Path, default=Path("learning-curve.png"), help="PNG path")
    parser.add_argument("--json", type=Path, help="also write the points here")
    parser.add_argument("--target", type=float, help="draw this accuracy as a dashed line")
    args = parser.parse_args(argv)
    if args.target is not None and not 0 < args.target < 1:
        parser.error(f"--target must be an accuracy between 0 and 1, not {args.target}")
    try:
        check_outputs(args.summaries, args.out, args.json)
        points = read_points(args.summaries)
        plot(points, args.out, target=args.target)
        if args.json:
            rows = [dataclasses.asdict(p) | {"interval_95": list(p.bounds)} for p in points]
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
    except CurveError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except (OSError, ValueError) as exc:  # a full disk, a folder without write permission
        sys.stderr.write(f"error: cannot write the outputs: {_short(str(exc))}\n")
        return 2
    sys.stdout.write(table(points) + f"\nplot: {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
