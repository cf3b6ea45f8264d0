"""Synthetic labelled news rows and tiny random base encoders (plain Hugging Face folders,
what `newsflow train --base DIR` takes) for the model-tier tests of resume and distillation."""

from __future__ import annotations

import random
from pathlib import Path

from pipeline.core.datasets import LabelledText

LABELS = ["Business", "Sci/Tech", "Sports", "World"]  # sorted, as make_splits orders them
WORDS = {
    "Business": "market stocks bank profit shares trade deal company",
    "Sci/Tech": "software chip internet nasa research space computer",
    "Sports": "team match goal season player league score",
    "World": "war minister election peace government court police",
}


def make_rows(n: int, seed: int) -> list[LabelledText]:
    """``n`` rows cycling through the labels, each a few of its label's words (unique)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        words = WORDS[label].split()
        text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 10)))
        out.append(LabelledText(f"{seed}-{i}", "", f"{text} {seed}x{i}", label))
    return out


def write_bert_base(out: Path) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    from retraining.bases.resolve import minilm_folder

    tok = AutoTokenizer.from_pretrained(str(minilm_folder()))
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
    )
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def write_roberta_base(out: Path) -> Path:
    from transformers import RobertaConfig, RobertaModel

    from retraining.bases.tiny import tiny_roberta_tokenizer

    tok = tiny_roberta_tokenizer()
    cfg = RobertaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=132,
        pad_token_id=tok.pad_token_id,
        type_vocab_size=1,
    )
    RobertaModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out
