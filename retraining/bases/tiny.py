"""Tiny randomly initialised BERT, RoBERTa and MPNet classifiers, for tests and smoke runs.

They exercise every code path of export and serving in seconds without any download:
BERT reuses the offline MiniLM tokenizer; RoBERTa gets a byte-level BPE tokenizer trained
here on generated text; MPNet gets the WordPiece tokenizer of all-mpnet-base-v2 rebuilt from
the MiniLM vocabulary (the same layout: ``<s> <pad> </s> <unk>``, BERT's 30,522 entries,
``<mask>``), so its ids, padding id 1 and position offsets match the real checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from retraining.bases.resolve import minilm_folder

Arch = Literal["bert", "roberta", "mpnet"]

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


def tiny_mpnet_tokenizer() -> Any:
    """all-mpnet-base-v2's tokenizer, rebuilt offline: MPNet's four leading specials, the
    MiniLM (BERT uncased) WordPiece vocabulary shifted by four, ``<mask>`` last."""
    from transformers import MPNetTokenizerFast

    bert_vocab = (minilm_folder() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    tokens = ["<s>", "<pad>", "</s>", "<unk>", *bert_vocab, "<mask>"]
    return MPNetTokenizerFast(vocab={t: i for i, t in enumerate(tokens)})


def build_tiny_encoder(arch: Arch, *, seed: int = 0, max_length: int = 128) -> tuple[Any, Any]:
    """Return ``(encoder, tokenizer)``: a bare tiny random ``AutoModel`` of ``arch`` (what a
    base folder holds; the training flow puts its own head on top)."""
    import torch
    from transformers import AutoModel

    torch.manual_seed(seed)
    cfg, tok = _tiny_config(arch, max_length)
    return AutoModel.from_config(cfg).eval(), tok


def write_tiny_base_folder(out: Path, arch: Arch = "mpnet", *, seed: int = 0) -> Path:
    """Save a tiny random encoder + tokenizer as a plain Hugging Face folder (what
    ``newsflow train --base DIR`` takes)."""
    model, tok = build_tiny_encoder(arch, seed=seed)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _tiny_config(
    arch: Arch, max_length: int, labels: Sequence[str] | None = None
) -> tuple[Any, Any]:
    from transformers import AutoTokenizer, BertConfig, MPNetConfig, RobertaConfig

    common: dict[str, Any] = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    if labels is not None:
        common.update(
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={v: i for i, v in enumerate(labels)},
        )
    cfg: Any
    if arch == "bert":
        tok = AutoTokenizer.from_pretrained(str(minilm_folder()))
        cfg = BertConfig(
            vocab_size=tok.vocab_size, max_position_embeddings=max_length + 2, **common
        )
    elif arch == "roberta":
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
    elif arch == "mpnet":
        tok = tiny_mpnet_tokenizer()
        # positions start after the padding id (1), as in RoBERTa: max_length + 2 slots
        cfg = MPNetConfig(
            vocab_size=len(tok),
            max_position_embeddings=max_length + 2,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.cls_token_id,
            eos_token_id=tok.sep_token_id,
            layer_norm_eps=1e-5,
            **common,
        )
    else:
        raise ValueError(f"unknown tiny architecture {arch!r}")
    tok.model_max_length = max_length
    return cfg, tok


def build_tiny(
    arch: Arch, labels: Sequence[str], *, seed: int = 0, max_length: int = 128
) -> tuple[Any, Any]:
    """Return ``(model, tokenizer)`` for a tiny random classifier of ``arch``."""
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    cfg, tok = _tiny_config(arch, max_length, labels)
    model = AutoModelForSequenceClassification.from_config(cfg)
    return model.eval(), tok


def write_tiny_model_folder(
    out: Path,
    arch: Arch = "bert",
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
