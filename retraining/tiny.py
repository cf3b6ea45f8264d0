"""Tiny randomly initialised BERT and RoBERTa classifiers, for tests and smoke runs.

They exercise every code path of export and serving in seconds without any download:
BERT reuses the offline MiniLM tokenizer; RoBERTa gets a byte-level BPE tokenizer trained
here on generated text.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from retraining.base_models import minilm_folder

_WORDS = [
    "market",
    "stocks",
    "shares",
    "profit",
    "bank",
    "election",
    "minister",
    "government",
    "war",
    "peace",
    "team",
    "match",
    "goal",
    "season",
    "player",
    "league",
    "score",
    "software",
    "internet",
    "computer",
    "chip",
    "research",
    "space",
    "nasa",
    "oil",
    "price",
    "trade",
    "economy",
    "company",
    "deal",
    "court",
    "police",
    "city",
    "world",
    "sports",
    "business",
    "science",
]


def _corpus(n: int = 400) -> list[str]:
    import random

    rng = random.Random(7)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 30))) for _ in range(n)]


def tiny_roberta_tokenizer() -> Any:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(_corpus(), vocab_size=600, min_frequency=1, special_tokens=special)
    from tokenizers.processors import RobertaProcessing

    bpe._tokenizer.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        cls_token="<s>",
        sep_token="</s>",
    )


def build_tiny(
    arch: Literal["bert", "roberta"], labels: Sequence[str], *, seed: int = 0, max_length: int = 128
) -> tuple[Any, Any]:
    """Return ``(model, tokenizer)`` for a tiny random classifier of ``arch``."""
    import torch
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    torch.manual_seed(seed)
    common = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={v: i for i, v in enumerate(labels)},
    )
    model: Any
    if arch == "bert":
        tok = AutoTokenizer.from_pretrained(str(minilm_folder()))
        cfg = BertConfig(
            vocab_size=tok.vocab_size, max_position_embeddings=max_length + 2, **common
        )
        model = BertForSequenceClassification(cfg)
    else:
        tok = tiny_roberta_tokenizer()
        cfg = RobertaConfig(
            vocab_size=len(tok),
            max_position_embeddings=max_length + 4,
            pad_token_id=tok.pad_token_id,
            bos_token_id=0,
            eos_token_id=2,
            type_vocab_size=1,
            **common,
        )
        model = RobertaForSequenceClassification(cfg)
    tok.model_max_length = max_length
    return model.eval(), tok


def write_tiny_model_folder(
    out: Path,
    arch: Literal["bert", "roberta"] = "bert",
    labels: Sequence[str] = ("World", "Sports", "Business", "Sci/Tech"),
    *,
    version: str = "tiny-1",
    seed: int = 0,
) -> Path:
    from retraining.export import write_model_folder

    model, tok = build_tiny(arch, labels, seed=seed)
    write_model_folder(
        model, tok, labels, out, version=version, base_model=f"tiny-{arch}", max_length=128
    )
    return out
