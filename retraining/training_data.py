"""Which rows a training run learns from, and a dataset card saying so.

AG News comes in two training sources under ``<data_dir>/ag_news``:

* ``sample`` (default): the 5,557 distinct rows of ``train_first581`` + the 5,000-row sample,
  all in the original "title description" form;
* ``union``: ``train_union50867.csv.gz``, 50,867 distinct rows gathered from public samples,
  in four text forms (``text_format`` column). The test split is "title description", so the
  default keeps only ``title+desc`` rows (25,709); ``--text-format`` adds the others.

Every run, whatever the source, goes through the same checks: a format filter, de-duplication
on a normalised-text key, a leakage check against the test split (the whole text, and any
training text that ends with a test row's description: AG News has known near-duplicates that
differ only in their title) and optionally a stratified cut to ``max_rows`` for learning
curves. :class:`DataCard` records each step's counts; the flow logs it with the MLflow run.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import io
import random
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pipeline.core.datasets import AG_LABELS, DatasetError, LabelledText, load_dataset
from retraining.data import dedupe, words
from retraining.errors import TrainingError

UNION_FILE = "train_union50867.csv.gz"
UNION_FORMATS = (
    "title+desc",
    "desc-only,lowercased",
    "desc-only,tokenized",
    "title+desc,normalized(lowercase,no punct/digits)",
)
FORMAT_ALIASES = {
    "title+desc": UNION_FORMATS[0],
    "desc-lower": UNION_FORMATS[1],
    "desc-tokenized": UNION_FORMATS[2],
    "normalized": UNION_FORMATS[3],
    "all": "all",
}
MIN_DESCRIPTION_CHARS = 30  # shorter descriptions ("AP - ...") are too generic to call leakage
Source = Literal["sample", "union"]


@dataclasses.dataclass(frozen=True)
class DataChoice:
    """What to train on. ``formats`` are union ``text_format`` values (or aliases)."""

    source: Source = "sample"
    formats: tuple[str, ...] = ("title+desc",)
    max_rows: int | None = None
    seed: int = 13

    def __post_init__(self) -> None:
        if self.source not in ("sample", "union"):
            raise TrainingError(f"unknown training source {self.source!r}: use sample or union")
        if self.max_rows is not None and self.max_rows < 8:
            raise TrainingError(f"max_rows must be at least 8, got {self.max_rows}")
        unknown = [f for f in self.formats if f not in FORMAT_ALIASES and f not in UNION_FORMATS]
        if unknown or not self.formats:
            raise TrainingError(
                f"unknown text format(s) {unknown or '(none given)'}; "
                f"known: {', '.join(FORMAT_ALIASES)}"
            )

    def resolved_formats(self) -> tuple[str, ...]:
        names = [FORMAT_ALIASES.get(f, f) for f in self.formats]
        return UNION_FORMATS if "all" in names else tuple(dict.fromkeys(names))


@dataclasses.dataclass
class DataCard:
    """Sources, counts and what was removed at each step (logged as ``dataset_card.json``)."""

    dataset: str
    source: str
    files: list[dict[str, Any]]
    rows_read: int
    formats_read: dict[str, int]
    formats_kept: list[str]
    removed_by_format: int
    removed_duplicates: int
    removed_leak_exact: int
    removed_leak_description: int
    removed_by_max_rows: int
    rows_kept: int
    labels_kept: dict[str, int]
    test_rows: int
    notes: list[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def markdown(self) -> str:
        lines = [
            f"# Dataset card: {self.dataset} ({self.source})",
            "",
            "| step | rows |",
            "|---|---|",
            f"| read | {self.rows_read} |",
            f"| removed by text format (kept {', '.join(self.formats_kept) or 'all'}) "
            f"| {self.removed_by_format} |",
            f"| removed as duplicates (normalised text) | {self.removed_duplicates} |",
            f"| removed: text equals a test row | {self.removed_leak_exact} |",
            f"| removed: ends with a test row's description | {self.removed_leak_description} |",
            f"| removed by the row cap | {self.removed_by_max_rows} |",
            f"| **kept** | **{self.rows_kept}** |",
            "",
            "Formats read: " + ", ".join(f"{k} {v}" for k, v in self.formats_read.items()),
            "",
            "Labels kept: " + ", ".join(f"{k} {v}" for k, v in self.labels_kept.items()),
            "",
            f"Test split: {self.test_rows} rows.",
            "",
            "Files: "
            + "; ".join(
                f"{f['path']} ("
                + ("" if f.get("rows") is None else f"{f['rows']} rows, ")
                + f"sha256 {f['sha256'][:12]}…)"
                for f in self.files
            ),
        ]
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True)
class UnionRow:
    row: LabelledText
    text_format: str
    source: str


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_union(path: Path) -> Iterator[UnionRow]:
    """Rows of the union file; a bad label, a label index that disagrees with its name, or an
    unknown text format stops with the file and line."""
    if not path.exists():
        raise DatasetError(f"dataset file {path} does not exist")
    try:
        with io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            need = {"label", "label_name", "text", "text_format"}
            if not need <= set(reader.fieldnames or ()):
                raise DatasetError(f"{path}: needs columns {sorted(need)}, has {reader.fieldnames}")
            for i, rec in enumerate(reader):
                line = i + 2
                name, fmt = rec["label_name"], rec["text_format"]
                if name not in AG_LABELS or rec["label"] != str(AG_LABELS.index(name)):
                    raise DatasetError(
                        f"{path}:{line}: label {rec['label']!r} / {name!r} is not an AG News class"
                    )
                if fmt not in UNION_FORMATS:
                    raise DatasetError(f"{path}:{line}: unknown text_format {fmt!r}")
                text = (rec["text"] or "").replace("\\", " ").strip()
                if not text:
                    raise DatasetError(f"{path}:{line}: empty text")
                yield UnionRow(
                    LabelledText(f"union:{i}", "", text, name), fmt, rec.get("source") or ""
                )
    except (csv.Error, UnicodeDecodeError, EOFError, gzip.BadGzipFile, OSError) as exc:
        raise DatasetError(f"{path} is corrupt: {exc}") from exc


def remove_test_leaks(
    rows: Sequence[LabelledText], test: Sequence[LabelledText]
) -> tuple[list[LabelledText], int, int]:
    """Drop training rows whose normalised text equals a test text, or ends with a test row's
    description (at least MIN_DESCRIPTION_CHARS long). Returns (kept, exact, description)."""
    whole = {" ".join(words(t.text)) for t in test}
    descs = {d for t in test if len(d := " ".join(words(t.body))) >= MIN_DESCRIPTION_CHARS}
    # only suffixes that start with a description's first word and have its length are joined
    starts = {(d.split(" ", 1)[0], d.count(" ") + 1) for d in descs}
    kept: list[LabelledText] = []
    exact = desc = 0
    for r in rows:
        w = words(r.text)
        if " ".join(w) in whole:
            exact += 1
        elif any((w[k], len(w) - k) in starts and " ".join(w[k:]) in descs for k in range(len(w))):
            desc += 1
        else:
            kept.append(r)
    return kept, exact, desc


def stratified_cap(rows: Sequence[LabelledText], max_rows: int, seed: int) -> list[LabelledText]:
    """Exactly ``max_rows`` rows (all when there are fewer), each label keeping its share
    (largest remainders), at least 2 per label: fewer than 2 per label is a TrainingError."""
    if len(rows) <= max_rows:
        return list(rows)
    by_label: dict[str, list[LabelledText]] = defaultdict(list)
    for r in rows:
        by_label[r.label].append(r)
    if max_rows < 2 * len(by_label):
        raise TrainingError(
            f"--train-rows {max_rows} is too few for {len(by_label)} labels: the cut keeps at "
            f"least 2 rows per label, {2 * len(by_label)} in all"
        )
    exact = {lbl: len(g) * max_rows / len(rows) for lbl, g in by_label.items()}
    quota = {lbl: min(len(by_label[lbl]), max(2, int(exact[lbl]))) for lbl in by_label}
    while sum(quota.values()) > max_rows:  # the floor of 2 took too many: the most over gives
        over = max((lbl for lbl in quota if quota[lbl] > 2), key=lambda k: quota[k] - exact[k])
        quota[over] -= 1
    while sum(quota.values()) < max_rows:  # the rest to the largest remainders
        room = [lbl for lbl in sorted(quota) if quota[lbl] < len(by_label[lbl])]
        quota[max(room, key=lambda k: exact[k] - quota[k])] += 1
    rng = random.Random(seed)
    out: list[LabelledText] = []
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        out += group[: quota[label]]
    rng.shuffle(out)
    return out


def choose_rows(
    data_dir: Path, dataset: str, choice: DataChoice, test: Sequence[LabelledText]
) -> tuple[list[LabelledText], DataCard]:
    """Training rows after format filter, de-duplication, leakage check and row cap."""
    notes: list[str] = []
    if dataset == "ag_news" and choice.source == "union":
        path = data_dir / "ag_news" / UNION_FILE
        union = list(read_union(path))
        keep = set(choice.resolved_formats())
        formats_read = dict(Counter(u.text_format for u in union))
        rows = [u.row for u in union if u.text_format in keep]
        files = [{"path": f"ag_news/{UNION_FILE}", "rows": len(union), "sha256": _sha256(path)}]
        read, formats_kept = len(union), sorted(keep)
        if keep != {UNION_FORMATS[0]}:
            notes.append(
                "formats other than title+desc differ from the test split's form; "
                "expect them to help less than their count suggests"
            )
    else:
        if choice.source == "union":
            raise TrainingError("--train-source union exists only for --dataset ag_news")
        if choice.formats != ("title+desc",):  # any dataset: never ignored silently
            raise TrainingError(
                f"--text-format applies to --train-source union only (--dataset ag_news), "
                f"not to {dataset!r}"
            )
        rows = load_dataset(dataset, split="train", data_dir=data_dir)
        files = _files_of(data_dir, dataset, len(rows))
        read, formats_read, formats_kept = len(rows), {"as given": len(rows)}, []
    removed_format = read - len(rows)
    rows, dups = dedupe(rows)
    rows, leak_exact, leak_desc = remove_test_leaks(rows, test)
    before_cap = len(rows)
    if choice.max_rows is not None:
        rows = stratified_cap(rows, choice.max_rows, choice.seed)
        if len(rows) < before_cap:
            notes.append(f"stratified cut to {len(rows)} rows (seed {choice.seed})")
    card = DataCard(
        dataset=dataset,
        source=choice.source if dataset == "ag_news" else "file",
        files=files,
        rows_read=read,
        formats_read=formats_read,
        formats_kept=formats_kept,
        removed_by_format=removed_format,
        removed_duplicates=dups,
        removed_leak_exact=leak_exact,
        removed_leak_description=leak_desc,
        removed_by_max_rows=before_cap - len(rows),
        rows_kept=len(rows),
        labels_kept=dict(sorted(Counter(r.label for r in rows).items())),
        test_rows=len(test),
        notes=notes,
    )
    return rows, card


def _files_of(data_dir: Path, dataset: str, rows: int) -> list[dict[str, Any]]:
    if dataset == "ag_news":
        names = ["ag_news/train_first581.csv.gz", "ag_news/train_sample5000_metarepicl.csv.gz"]
    elif dataset in {"20newsgroups", "20ng"}:
        names = ["20newsgroups/train.jsonl.gz"]
    else:
        path = Path(dataset)
        return [{"path": str(path), "rows": rows, "sha256": _sha256(path)}]
    return [{"path": n, "rows": None, "sha256": _sha256(data_dir / n)} for n in names]


def data_card_markdown(card: dict[str, Any]) -> str:
    """The card (as logged in a run's summary) in Markdown."""
    fields = {f.name for f in dataclasses.fields(DataCard)}
    text = DataCard(**{k: v for k, v in card.items() if k in fields}).markdown()
    if "splits" in card:
        text += "\nSplits: " + ", ".join(f"{k} {v}" for k, v in card["splits"].items()) + "\n"
    return text
