"""The trainable classifier: any Hugging Face encoder + mean pooling + a linear head.

Mean pooling suits sentence encoders such as all-MiniLM-L6-v2 (trained with it) and works
for RoBERTa/BERT checkpoints as well. The forward pass returns logits; :meth:`pool` gives
the pooled vector the head reads (the export adds it, L2-normalised, as a second output).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class MeanPoolClassifier(nn.Module):  # type: ignore[misc]
    def __init__(self, encoder: Any, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        pooled = self.pool(input_ids, attention_mask, token_type_ids)
        logits: torch.Tensor = self.head(self.dropout(pooled))
        return logits

    def pool(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The vector the head reads: the encoder's last hidden state, mean-pooled over the
        real tokens (``[batch, hidden]``, not normalised)."""
        kwargs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled: torch.Tensor = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return pooled


def load_base(name_or_path: str, num_labels: int) -> tuple[MeanPoolClassifier, Any]:
    """Encoder and fast tokenizer from a local folder or the hub (``roberta-base`` needs the
    network)."""
    from transformers import AutoModel, AutoTokenizer

    from retraining.errors import TrainingError

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, use_fast=True)
        encoder = AutoModel.from_pretrained(name_or_path)
    except Exception as exc:  # a damaged folder raises anything: RuntimeError (weights that
        # do not fit config.json), SafetensorError (truncated weights), OSError, ValueError
        raise TrainingError(
            f"cannot load base model {name_or_path!r}: {type(exc).__name__}: {str(exc)[:500]}"
        ) from exc
    if not getattr(tokenizer, "is_fast", False):
        raise TrainingError(f"{name_or_path} has no fast tokenizer (tokenizer.json)")
    return MeanPoolClassifier(encoder, num_labels), tokenizer


_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "mpnet", "camembert"}  # positions start at pad + 1


def position_limit(config: Any) -> int | None:
    """The longest input (in tokens) the encoder's position table can take, if it has one."""
    table = getattr(config, "max_position_embeddings", None)
    if not isinstance(table, int):
        return None
    if getattr(config, "model_type", "") in _OFFSET_POSITIONS:
        return table - int(getattr(config, "pad_token_id", 1) or 1) - 1
    return table


def check_max_length(config: Any, max_length: int) -> None:
    """Refuse a ``max_length`` the base cannot embed, before any training step."""
    from retraining.errors import TrainingError

    limit = position_limit(config)
    if limit is not None and max_length > limit:
        raise TrainingError(
            f"max_length {max_length} is longer than this base model takes ({limit} tokens, "
            f"{getattr(config, 'model_type', '?')}); use --max-length {limit} or less"
        )
