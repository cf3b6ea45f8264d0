"""The model folder: the one format shared by training (writer) and workers (reader).

Layout (``newsflow-model/1``)::

    model.onnx          fp32 graph; inputs input_ids, attention_mask [, token_type_ids];
                        outputs logits [batch, n_labels] and (folders written since
                        issue 24; metadata ``outputs`` lists it) embedding [batch, hidden]:
                        the pooled vector the head reads, L2-normalised
    model.int8.onnx     optional dynamic-int8 graph for CPUs
    model.fp16.onnx     optional fp16 graph for GPUs
    tokenizer.json      Hugging Face fast-tokenizer file (read with `tokenizers`, no torch)
    metadata.json       ModelMetadata below: version, labels, max length, temperature,
                        reference distributions for drift monitoring, and the training
                        recipe (``retraining.recipe.Recipe.to_dict``; absent in folders
                        written before recipes were recorded)

Example:
    >>> meta = read_metadata(Path("models/champion"))  # doctest: +SKIP
    >>> meta.labels  # doctest: +SKIP
    ['World', 'Sports', 'Business', 'Sci/Tech']
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from pipeline.core.errors import ModelError

FP32, INT8, FP16 = "model.onnx", "model.int8.onnx", "model.fp16.onnx"
LOGITS, EMBEDDING = "logits", "embedding"  # the graphs' outputs
TOKENIZER, METADATA = "tokenizer.json", "metadata.json"


class ReferenceDistribution(BaseModel):
    """What the champion's predictions looked like on held-out data at promotion time."""

    confidences: list[float] = Field(
        default_factory=list, description="sample of max-softmax confidences (calibrated)"
    )
    topic_mix: dict[str, float] = Field(default_factory=dict, description="share per topic")


class ModelMetadata(BaseModel):
    format: Literal["newsflow-model/1"] = "newsflow-model/1"
    version: str = Field(min_length=1, max_length=64)
    labels: list[str] = Field(min_length=2)
    max_length: int = Field(default=128, ge=8, le=8192)
    input_names: list[str] = Field(default_factory=lambda: ["input_ids", "attention_mask"])
    pad_token_id: int = Field(default=0, ge=0)
    temperature: float = Field(default=1.0, gt=0)
    base_model: str = ""
    architecture: str = ""
    created_at: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    reference: ReferenceDistribution = Field(default_factory=ReferenceDistribution)
    outputs: list[str] = Field(
        default_factory=lambda: [LOGITS],
        description="the graphs' outputs: logits, and embedding where the export added it "
        "(folders written before it have logits only)",
    )
    recipe: dict[str, Any] | None = Field(
        default=None,
        description="how the model was trained (retraining.recipe.Recipe.to_dict; read "
        "strictly by Recipe.from_dict); None: a folder from before recipes were recorded",
    )

    @model_validator(mode="after")
    def _unique_labels(self) -> ModelMetadata:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        if not self.outputs or self.outputs[0] != LOGITS:
            raise ValueError(f"outputs must start with {LOGITS!r}")
        return self

    @property
    def has_embedding(self) -> bool:
        """The graphs also output the pooled, L2-normalised embedding."""
        return EMBEDDING in self.outputs


def read_metadata(folder: Path) -> ModelMetadata:
    path = folder / METADATA
    try:
        return ModelMetadata.model_validate_json(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{folder} is not a newsflow model folder: {METADATA} missing") from None
    except ValidationError as exc:
        raise ModelError(f"{path} is invalid: {exc}") from None


def write_metadata(folder: Path, meta: ModelMetadata) -> None:
    (folder / METADATA).write_text(json.dumps(meta.model_dump(), indent=2) + "\n")


def check_folder(folder: Path) -> ModelMetadata:
    """Validate a model folder and return its metadata; raise ModelError naming what's wrong."""
    if not folder.is_dir():
        raise ModelError(f"model folder {folder} does not exist")
    for name in (FP32, TOKENIZER):
        if not (folder / name).is_file():
            raise ModelError(f"model folder {folder} lacks {name}")
    return read_metadata(folder)


Precision = Literal["auto", "fp32", "int8", "fp16"]
