"""Sentence embeddings for topic discovery: the offline all-MiniLM-L6-v2 encoder with mean
pooling, L2-normalised (cosine similarity = dot product). Needs the `train` extra (torch);
the workers never call it."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

MAX_TOKENS = 128
BATCH = 64


@lru_cache(maxsize=1)
def _encoder() -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    from retraining.bases.resolve import minilm_folder

    folder = str(minilm_folder())
    return AutoTokenizer.from_pretrained(folder, use_fast=True), AutoModel.from_pretrained(
        folder
    ).eval()


def embed_texts(texts: Sequence[str]) -> npt.NDArray[np.float32]:
    """One unit-length row per text (``[n, 384]``); texts are cut at 128 tokens."""
    import torch

    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    tokenizer, model = _encoder()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), BATCH):
            idx = order[start : start + BATCH]
            enc = tokenizer(
                [texts[i] for i in idx],
                truncation=True,
                max_length=MAX_TOKENS,
                padding=True,
                return_tensors="pt",
            )
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=1)
            out[idx] = pooled.numpy()
    return out
