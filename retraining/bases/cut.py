"""Shallow bases cut from the offline MiniLM, for quick recipes (the demo's ``--quick``).

``minilm-l3`` is all-MiniLM-L6-v2's embeddings and its first 3 of 6 transformer layers: about
half the cost of every training step, evaluation and served prediction (the demo's accuracy
with it: docs/benchmarks/2026-12-07-demo.md).
The folder is built once into ``cache_dir/bases/<name>`` (``from_pretrained`` with fewer layers
keeps the first ones) and reused; a recipe records the name, so a retraining builds it again
on a host that lacks it.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.errors import ModelError

CUTS: dict[str, int] = {"minilm-l3": 3}  # name -> layers kept from the offline MiniLM


def cut_folder(name: str, cache_dir: Path) -> Path:
    """The Hugging Face folder of the cut ``name``, built on first use (safe for several
    processes at once: a file lock, then an atomic rename)."""
    if name not in CUTS:
        raise ModelError(f"unknown cut base {name!r}; known: {', '.join(sorted(CUTS))}")
    out = cache_dir / "bases" / name
    if (out / "config.json").is_file():
        return out
    from filelock import FileLock

    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{out}.lock"):
        if not (out / "config.json").is_file():
            _build(out, layers=CUTS[name])
    return out


def _build(out: Path, *, layers: int) -> None:
    import shutil

    from transformers import AutoModel, AutoTokenizer

    from retraining.bases.resolve import minilm_folder

    src = str(minilm_folder())
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    AutoModel.from_pretrained(src, num_hidden_layers=layers).save_pretrained(partial)
    AutoTokenizer.from_pretrained(src).save_pretrained(partial)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
