"""Model tier: the MPNet path (``--base mpnet-base``, all-mpnet-base-v2) end to end with a tiny
random MPNet: tokenizer layout, layer-wise learning rates, fine-tuning, ONNX export (fp32 and
int8), the parity gate, the torch-free runtime and the training flow on a base folder.

MPNet has no token type ids, pads with id 1 and numbers positions after the padding id (as
RoBERTa does) while adding a relative position bias shared by all layers. Nothing here needs
the network, Postgres or MLflow; the last test uses the real checkpoint only when
``newsflow models fetch-base mpnet-base`` has installed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.core.errors import ModelError
from pipeline.core.model_folder import FP32, INT8, read_metadata
from pipeline.core.runtime import Classifier
from pipeline.core.settings import Settings
from retraining.bases.tiny import build_tiny, build_tiny_encoder, tiny_mpnet_tokenizer
from retraining.export import parity_check, torch_logits, write_model_folder
from retraining.train import TrainConfig, fine_tune, layer_depth, param_groups

pytestmark = pytest.mark.model
LABELS = ("World", "Sports", "Business", "Sci/Tech")
TEXTS = [
    "Stocks rally as the central bank cuts rates",
    "x",
    "",
    "The team won the match with a late goal " * 8,
    "NASA launches a new probe to study the outer planets and their moons",
    "Café owners in Zürich protest — 東京 markets close higher!",
    "word " * 400,  # truncated to max_length
    "Oil prices climb",
    "Election results: the minister concedes, the government resigns",
]


def _spread(model: Any, std: float = 0.3, seed: int = 1) -> Any:
    """Redraw the weights wider than the default 0.02 so that random logits differ between
    texts and classes (near-equal logits would make argmax and tolerance checks vacuous)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" not in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    """A tiny random MPNet classifier (wide weights) and its model folder (fp32 + int8)."""
    model, tok = build_tiny("mpnet", LABELS)
    _spread(model)
    folder = tmp_path_factory.mktemp("mpnet") / "model"
    write_model_folder(model, tok, LABELS, folder, version="tiny-mpnet-1", base_model="tiny")
    return model, tok, folder


def _ort_logits(graph: Path, tok: Any, texts: Sequence[str]) -> np.ndarray:
    """The raw graph on one batch padded by the Hugging Face tokenizer (pad id 1)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    enc = tok(list(texts), padding=True, truncation=True, max_length=128, return_tensors="np")
    feed = {i.name: enc[i.name].astype(np.int64) for i in sess.get_inputs()}
    return np.asarray(sess.run(None, feed)[0])


def test_tiny_tokenizer_has_the_mpnet_layout() -> None:
    tok = tiny_mpnet_tokenizer()
    assert (tok.cls_token_id, tok.pad_token_id, tok.sep_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids(["[UNK]", "<mask>"]) == [104, 30526]
    assert len(tok) == 30527  # all-mpnet-base-v2's vocab_size
    enc = tok(["Stocks rally", "x"], padding=True)
    assert "token_type_ids" not in enc
    assert enc["input_ids"][0][0] == 0 and enc["input_ids"][0][-1] == 2
    assert enc["input_ids"][1][-1] == 1  # padded with <pad> = 1, not 0


def test_graph_has_no_token_type_ids_and_dynamic_axes(exported: tuple[Any, Any, Path]) -> None:
    import onnx

    _, _, folder = exported
    meta = read_metadata(folder)
    assert meta.input_names == ["input_ids", "attention_mask"]
    assert meta.architecture == "mpnet" and meta.pad_token_id == 1
    for graph in (FP32, INT8):
        inputs = onnx.load(str(folder / graph)).graph.input
        dims = {i.name: [d.dim_param for d in i.type.tensor_type.shape.dim] for i in inputs}
        assert dims == {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]}


def test_fp32_graph_matches_torch_on_varied_lengths_and_padding(
    exported: tuple[Any, Any, Path],
) -> None:
    model, tok, folder = exported
    ref = torch_logits(model, tok, TEXTS, 128)  # one batch padded to the longest (128)
    assert ref.std(axis=0).min() > 0.05  # the texts really get different logits
    assert len(set(ref.argmax(1))) > 1
    whole = _ort_logits(folder / FP32, tok, TEXTS)
    np.testing.assert_allclose(whole, ref, atol=1e-4, rtol=1e-4)
    # other batch sizes and widths: each row alone (no padding) and a short padded pair
    alone = np.vstack([_ort_logits(folder / FP32, tok, [t]) for t in TEXTS])
    np.testing.assert_allclose(alone, ref, atol=1e-4, rtol=1e-4)
    pair = _ort_logits(folder / FP32, tok, TEXTS[:2])
    np.testing.assert_allclose(pair, ref[:2], atol=1e-4, rtol=1e-4)


def test_parity_gate_reports_fp32_and_int8(exported: tuple[Any, Any, Path]) -> None:
    model, tok, folder = exported
    report = parity_check(model, tok, folder, TEXTS * 3, max_length=128)
    assert report.fp32_max_abs_diff <= 1e-4
    assert report.fp32_argmax_equal
    # int8 of random weights may flip a close call; the 98 % gate is for trained models
    assert report.int8_agreement is not None and report.int8_agreement >= 0.75
    print(f"tiny MPNet int8 argmax agreement with torch: {report.int8_agreement:.3f}")


def test_runtime_serves_the_folder_like_torch(exported: tuple[Any, Any, Path]) -> None:
    model, tok, folder = exported
    ref = torch_logits(model, tok, TEXTS, 128)
    clf = Classifier.load(folder, precision="fp32", sub_batch=4)  # 3 padded sub-batches
    assert "token_type_ids" not in {i.name for i in clf.session.get_inputs()}
    np.testing.assert_allclose(clf.logits(TEXTS), ref, atol=1e-4, rtol=1e-4)
    assert [s.topic for s in clf.predict(TEXTS)] == [LABELS[i] for i in ref.argmax(1)]
    served = Classifier.load(folder)  # CPU default: the int8 graph
    assert served.graph.name == INT8
    assert all(s.topic in LABELS for s in served.predict(TEXTS))


N_LAYERS = 2


@pytest.mark.parametrize(
    ("arch", "extra"),
    [
        ("bert", {}),
        ("roberta", {}),
        ("mpnet", {"encoder.encoder.relative_attention_bias.weight": 0}),
    ],
)
def test_layer_depth_of_each_architecture(arch: str, extra: dict[str, int]) -> None:
    from retraining.modeling import MeanPoolClassifier

    encoder, _ = build_tiny_encoder(arch)  # type: ignore[arg-type]
    model = MeanPoolClassifier(encoder, len(LABELS))
    names = [n for n, _ in model.named_parameters()]
    expected = {
        "encoder.embeddings.word_embeddings.weight": 0,
        "encoder.embeddings.position_embeddings.weight": 0,
        "encoder.embeddings.LayerNorm.weight": 0,
        "encoder.pooler.dense.weight": N_LAYERS + 1,
        "head.weight": N_LAYERS + 1,
        **extra,
    }
    for i in range(N_LAYERS):
        expected.update({n: i + 1 for n in names if f".layer.{i}." in n})
    assert set(expected) <= set(names)
    assert {n: layer_depth(n, N_LAYERS) for n in expected} == expected
    # the Hugging Face classification models name things differently
    cls, _ = build_tiny(arch, LABELS)  # type: ignore[arg-type]
    for name in dict(cls.named_parameters()):
        depth = layer_depth(name, N_LAYERS)
        if "embeddings" in name or "relative_attention_bias" in name:
            assert depth == 0, name
        elif name.startswith("classifier") or ".pooler." in name:
            assert depth == N_LAYERS + 1, name
        else:
            assert depth == int(name.split(".layer.")[1].split(".")[0]) + 1, name


def test_mpnet_param_groups_put_relative_bias_with_embeddings() -> None:
    from retraining.modeling import MeanPoolClassifier

    encoder, _ = build_tiny_encoder("mpnet")
    model = MeanPoolClassifier(encoder, len(LABELS))
    cfg = TrainConfig(learning_rate=1e-3, layer_decay=0.5, weight_decay=0.1)
    setting = {
        id(p): (g["lr"], g["weight_decay"]) for g in param_groups(model, cfg) for p in g["params"]
    }
    named = dict(model.named_parameters())
    assert len(setting) == len(named)
    lr = {n: setting[id(p)][0] for n, p in named.items()}
    wd = {n: setting[id(p)][1] for n, p in named.items()}
    bias = "encoder.encoder.relative_attention_bias.weight"
    assert lr[bias] == pytest.approx(1.25e-4) == lr["encoder.embeddings.word_embeddings.weight"]
    assert wd[bias] == 0.0  # a bias table: undecayed
    assert lr["encoder.encoder.layer.0.attention.attn.q.weight"] == pytest.approx(2.5e-4)
    assert lr["encoder.encoder.layer.1.attention.attn.q.weight"] == pytest.approx(5e-4)
    assert lr["head.weight"] == pytest.approx(1e-3) and wd["head.weight"] == 0.1


def test_fine_tune_feeds_mpnet_no_token_type_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    from retraining.modeling import MeanPoolClassifier

    encoder, tok = build_tiny_encoder("mpnet")
    model = MeanPoolClassifier(encoder, 2)
    seen: list[set[str]] = []
    inner = model.forward

    def recording(**feed: Any) -> Any:
        seen.append({k for k, v in feed.items() if v is not None})
        return inner(**feed)

    monkeypatch.setattr(model, "forward", recording)
    texts = ["stocks and shares rally", "the team scores a late goal"] * 8
    y = [0, 1] * 8
    cfg = TrainConfig(epochs=1, batch_size=4, max_steps=4, learning_rate=1e-3, device="cpu")
    out = fine_tune(model, tok, texts, y, texts[:4], y[:4], cfg)
    assert seen and all(keys == {"input_ids", "attention_mask"} for keys in seen)
    assert np.isfinite(out.history[0]["train_loss"])


def test_training_flow_on_a_tiny_mpnet_base_folder(
    tmp_path: Path, base_settings: Settings, data_dir: Path
) -> None:
    """What `newsflow train --base DIR` does for an MPNet folder, without registering."""
    import torch

    from pipeline.core.datasets import load_dataset
    from retraining.bases.tiny import write_tiny_base_folder
    from retraining.data import make_splits
    from retraining.flow import TORCH_STATE, FlowOptions, run_flow
    from retraining.modeling import load_base
    from retraining.recipe import Recipe

    base = write_tiny_base_folder(tmp_path / "tiny-mpnet", "mpnet")
    s = base_settings.model_copy(update={"home": tmp_path / "home"})
    train = load_dataset("ag_news", split="train", data_dir=data_dir)[:240]
    test = load_dataset("ag_news", split="test", data_dir=data_dir)[:80]
    cfg = TrainConfig(epochs=1, max_steps=8, batch_size=16, learning_rate=1e-3, max_length=64)
    result = run_flow(
        s,
        Recipe(base=str(base), training=cfg),
        splits=make_splits(train, test),
        options=FlowOptions(register=False, baseline=False),
    )
    summary = result.summary
    assert summary["parity"]["fp32_max_abs_diff"] <= 1e-3
    assert summary["parity"]["fp32_argmax_equal"] is True
    assert summary["parity"]["int8_agreement"] is not None
    meta = read_metadata(result.model_dir)
    assert meta.architecture == "mpnet" and meta.input_names == ["input_ids", "attention_mask"]
    assert meta.pad_token_id == 1 and meta.max_length == 64

    # the served folder computes what the fine-tuned torch weights compute
    model, tok = load_base(str(base), len(meta.labels))
    model.load_state_dict(torch.load(result.model_dir.parent / TORCH_STATE, weights_only=True))
    texts = [r.text for r in test[:24]]
    ref = torch_logits(model, tok, texts, 64)
    clf = Classifier.load(result.model_dir, precision="fp32", sub_batch=8)
    np.testing.assert_allclose(clf.logits(texts), ref, atol=1e-4, rtol=1e-4)


def _installed_mpnet(settings: Settings) -> Path:
    from retraining.bases.mpnet import installed_folder

    try:
        return installed_folder(settings.cache_dir)
    except ModelError as exc:
        pytest.skip(f"all-mpnet-base-v2 not installed (optional check): {exc}")


def test_installed_all_mpnet_base_v2_exports_truncated(
    tmp_path: Path, base_settings: Settings
) -> None:
    """The real checkpoint (when installed): its tokenizer and config load through the
    `--base mpnet-base` resolution, and the first two layers export (fp32 + int8) and pass
    parity."""
    from retraining.bases.resolve import resolve_base_model
    from retraining.modeling import load_base

    folder = _installed_mpnet(base_settings)
    assert resolve_base_model("mpnet-base", base_settings) == str(folder)
    model, tok = load_base(str(folder), len(LABELS))
    assert model.config.model_type == "mpnet" and tok.pad_token_id == 1
    assert not hasattr(model.config, "type_vocab_size")
    enc = tok(TEXTS, truncation=True, max_length=128)
    assert "token_type_ids" not in enc
    assert len({len(i) for i in enc["input_ids"]}) > 2  # not padded to a fixed width
    model.encoder.encoder.layer = model.encoder.encoder.layer[:2]
    model.config.num_hidden_layers = 2
    out = tmp_path / "model"
    write_model_folder(model, tok, LABELS, out, version="mpnet-2l", base_model="mpnet-base")
    report = parity_check(model, tok, out, TEXTS * 2, max_length=128)
    assert report.fp32_max_abs_diff <= 1e-3 and report.fp32_argmax_equal
    assert report.int8_agreement is not None and report.int8_agreement >= 0.75
    print(f"all-mpnet-base-v2 (2 layers, random head) int8 agreement: {report.int8_agreement}")
    assert read_metadata(out).input_names == ["input_ids", "attention_mask"]


def test_max_length_beyond_the_position_table_is_refused_before_training() -> None:
    from transformers import AutoConfig

    from retraining.bases.resolve import minilm_folder
    from retraining.bases.tiny import build_tiny_encoder
    from retraining.errors import TrainingError
    from retraining.modeling import check_max_length, position_limit

    mpnet = build_tiny_encoder("mpnet")[0].config
    assert position_limit(mpnet) == mpnet.max_position_embeddings - 2
    check_max_length(mpnet, position_limit(mpnet))
    with pytest.raises(TrainingError, match="longer than this base model takes"):
        check_max_length(mpnet, mpnet.max_position_embeddings)
    bert = AutoConfig.from_pretrained(str(minilm_folder()))
    assert position_limit(bert) == 512
    with pytest.raises(TrainingError, match="--max-length 512 or less"):
        check_max_length(bert, 513)
