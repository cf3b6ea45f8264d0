"""Model tier: checkpoints and `newsflow train --resume` with a tiny random encoder: an
interrupted run resumed from its checkpoint ends exactly where an uninterrupted one does, and
every checkpoint that would not continue the same run is refused before a training step."""

from __future__ import annotations

import dataclasses
import io
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.settings import Settings
from retraining import checkpoint as ck
from retraining.errors import TrainingError
from retraining.flow import FlowOptions
from retraining.recipe import Recipe
from retraining.train import TrainConfig, fine_tune
from tests.model.synthetic import LABELS, make_rows

pytestmark = pytest.mark.model

CFG = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-3, warmup_share=0.25, patience=5)

TRAIN, VAL = make_rows(32, 1), make_rows(8, 2)  # 4 steps per epoch at batch size 8
TR_X, TR_Y = [r.text for r in TRAIN], [LABELS.index(r.label) for r in TRAIN]
VA_X, VA_Y = [r.text for r in VAL], [LABELS.index(r.label) for r in VAL]


def fresh(base: Path) -> tuple[Any, Any]:
    import torch

    from retraining.modeling import load_base

    torch.manual_seed(0)
    return load_base(str(base), len(LABELS))


def identity_of(
    base: Path,
    *,
    cfg: TrainConfig = CFG,
    labels: list[str] = LABELS,
    train: tuple[list[str], list[int]] = (TR_X, TR_Y),
) -> dict[str, Any]:
    model, tok = fresh(base)
    return ck.training_identity(
        base_model=base.name,
        model=model,
        tokenizer=tok,
        labels=labels,
        cfg=cfg,
        train_texts=train[0],
        train_y=train[1],
        val_texts=VA_X,
        val_y=VA_Y,
    )


class Recording(ck.Checkpointing):
    """Keeps each checkpoint's learning rates and the last model state."""

    lrs: dict[int, list[float]]
    last_model: dict[str, Any]

    def write(self, payload: dict[str, Any]) -> Path:
        if not hasattr(self, "lrs"):
            self.lrs = {}
        self.lrs[payload["step"]] = list(payload["scheduler"]["_last_lr"])
        self.last_model = {k: v.clone() for k, v in payload["model"].items()}
        return super().write(payload)


class Stop(Exception):
    pass


def stop_at(step: int) -> Any:
    def progress(msg: str, done: int, total: int) -> None:
        if done == step:
            raise Stop(msg)

    return progress


def without_time(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in history]


def test_resumed_run_ends_where_an_uninterrupted_one_does(bert_base: Path, tmp_path: Path) -> None:
    import torch

    identity = identity_of(bert_base)
    model, tok = fresh(bert_base)
    straight = Recording(tmp_path / "straight", identity, every_s=0)  # every step
    done = fine_tune(model, tok, TR_X, TR_Y, VA_X, VA_Y, CFG, checkpoint=straight)
    assert done.steps == 8 and len(done.history) == 2
    assert sorted(straight.lrs) == list(range(1, 9))

    # (a) stopped in epoch 2, resumed from the epoch-1 checkpoint; (b) stopped at step 6,
    # resumed from the checkpoint written inside epoch 2
    for name, every_s, stop, expect in (("epoch", None, 5, 4), ("inside", 0.0, 6, 6)):
        where = tmp_path / name
        model, tok = fresh(bert_base)
        with pytest.raises(Stop):
            fine_tune(
                model,
                tok,
                TR_X,
                TR_Y,
                VA_X,
                VA_Y,
                CFG,
                checkpoint=ck.Checkpointing(where, identity, every_s=every_s),
                progress=stop_at(stop),
            )
        path = ck.find(tmp_path, identity, where)
        assert path.name == f"step-{expect:08d}.pt"
        assert [p.name for p in where.glob("*.pt")] == [path.name]  # older ones removed
        payload = ck.load(path, identity)
        assert payload["epoch_done"] is (name == "epoch")

        model, tok = fresh(bert_base)
        calls: list[tuple[str, int, int]] = []
        again = Recording(where, identity, every_s=0)
        resumed = fine_tune(
            model,
            tok,
            TR_X,
            TR_Y,
            VA_X,
            VA_Y,
            CFG,
            checkpoint=again,
            resume=payload,
            progress=lambda m, s, t, calls=calls: calls.append((m, s, t)),
        )
        # the bar starts at the checkpoint's step, then counts on from there
        assert calls[0][1:] == (expect, 8) and calls[0][0].startswith("resumed at step")
        assert [c[1] for c in calls[1:]] == list(range(expect + 1, 9))
        assert resumed.steps == done.steps == 8
        assert resumed.resumed_from == str(path)
        assert without_time(resumed.history) == without_time(done.history)
        for step, lr in again.lrs.items():
            assert lr == pytest.approx(straight.lrs[step], rel=1e-12), step
        for key, value in straight.last_model.items():
            torch.testing.assert_close(again.last_model[key], value, rtol=0, atol=1e-6)
        final = dict(resumed.model.state_dict())
        for key, value in done.model.state_dict().items():
            torch.testing.assert_close(final[key], value, rtol=0, atol=1e-6)


def test_a_finished_checkpoint_resumes_without_training(bert_base: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(epochs=1, batch_size=8, learning_rate=1e-3, max_steps=2)
    identity = identity_of(bert_base, cfg=cfg)
    model, tok = fresh(bert_base)
    fine_tune(
        model, tok, TR_X, TR_Y, VA_X, VA_Y, cfg, checkpoint=ck.Checkpointing(tmp_path, identity)
    )
    payload = ck.load(ck.find(tmp_path, identity, tmp_path), identity)
    assert payload["finished"] is True
    model, tok = fresh(bert_base)
    calls: list[int] = []
    out = fine_tune(
        model,
        tok,
        TR_X,
        TR_Y,
        VA_X,
        VA_Y,
        cfg,
        resume=payload,
        progress=lambda m, s, t: calls.append(s),
    )
    assert out.steps == 2 and calls == [2] and len(out.history) == 1


def test_checkpoints_of_another_run_are_refused(
    bert_base: Path, roberta_base: Path, tmp_path: Path
) -> None:
    cfg = TrainConfig(epochs=1, batch_size=8, learning_rate=1e-3, max_steps=1)
    identity = identity_of(bert_base, cfg=cfg)
    home = tmp_path / "home"
    model, tok = fresh(bert_base)
    writer = ck.Checkpointing(ck.run_dir(home, identity), identity)
    fine_tune(model, tok, TR_X, TR_Y, VA_X, VA_Y, cfg, checkpoint=writer)
    path = ck.find(home, identity, "auto")
    assert ck.load(path, identity)["step"] == 1
    # the device may change between the two runs: it changes neither data order nor schedule
    assert ck.load(path, identity_of(bert_base, cfg=TrainConfig(**{**vars(cfg), "device": "cpu"})))

    other_cfg = TrainConfig(**{**vars(cfg), "epochs": 3, "learning_rate": 2e-3})
    cases = {
        "base model: the checkpoint was trained from 'tiny-bert' (BertModel": identity_of(
            roberta_base, cfg=cfg
        ),
        "labels: checkpoint ['Business'": identity_of(
            bert_base, cfg=cfg, labels=["Business", "Sci/Tech", "Sports", "Health"]
        ),
        "training data: checkpoint 32 train": identity_of(
            bert_base, cfg=cfg, train=(TR_X[:-1], TR_Y[:-1])
        ),
        "training options: epochs 1 -> 3, learning_rate 0.001 -> 0.002": identity_of(
            bert_base, cfg=other_cfg
        ),
    }
    for match, other in cases.items():
        with pytest.raises(TrainingError, match=re.escape(match)):
            ck.load(path, other)
        with pytest.raises(TrainingError, match="no checkpoint to resume") as info:
            ck.find(home, other, "auto")
        assert "differs in" in str(info.value)  # names why the existing one does not fit

    # corrupt and truncated files, with and without the sidecar
    flipped = tmp_path / "flipped" / path.name
    flipped.parent.mkdir()
    shutil.copy(path, flipped)
    shutil.copy(path.with_suffix(".json"), flipped.with_suffix(".json"))
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    with pytest.raises(TrainingError, match="is corrupt: its SHA-256 differs"):
        ck.load(flipped, identity)
    cut = tmp_path / "cut" / path.name
    cut.parent.mkdir()
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    shutil.copy(path.with_suffix(".json"), cut.with_suffix(".json"))
    with pytest.raises(TrainingError, match="truncated or corrupt"):
        ck.load(cut, identity)
    cut.with_suffix(".json").unlink()
    with pytest.raises(TrainingError, match="corrupt or truncated"):
        ck.load(cut, identity)
    with pytest.raises(TrainingError, match="does not exist"):
        ck.find(home, identity, tmp_path / "no-such.pt")
    with pytest.raises(TrainingError, match="no checkpoint to resume"):
        ck.find(tmp_path / "empty-home", identity, "auto")


def test_flow_resumes_and_refuses_before_training(
    bert_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retraining import flow
    from retraining.data import make_splits

    settings = Settings().model_copy(update={"home": tmp_path / "home"})
    splits = make_splits([*TRAIN, *VAL, *make_rows(8, 3)], make_rows(12, 4))
    recipe = Recipe(base=str(bert_base), training=CFG, quantize=False)
    quick = FlowOptions(register=False, baseline=False, card_speed=False)
    per_epoch = -(-len(splits.train) // CFG.batch_size)
    with pytest.raises(Stop):
        flow.run_flow(
            settings,
            recipe,
            splits=splits,
            progress=stop_at(per_epoch + 1),
            options=quick,
        )
    (run_dir,) = (settings.home / "checkpoints").iterdir()
    saved = f"step-{per_epoch:08d}.pt"
    assert [p.name for p in run_dir.glob("*.pt")] == [saved]  # the end of epoch 1

    # a corrupt checkpoint or a missing path: refused before any training step
    original = flow.fine_tune
    monkeypatch.setattr(flow, "fine_tune", lambda *a, **k: pytest.fail("training started"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    for resume, match in ((bad, "corrupt or truncated"), (tmp_path / "nope.pt", "does not exist")):
        with pytest.raises(TrainingError, match=match):
            flow.run_flow(
                settings, recipe, splits=splits, options=dataclasses.replace(quick, resume=resume)
            )
    monkeypatch.setattr(flow, "fine_tune", original)

    result = flow.run_flow(
        settings, recipe, splits=splits, options=dataclasses.replace(quick, resume="auto")
    )
    assert result.summary["resumed_from"] == str(run_dir / saved)
    assert result.summary["train_steps"] == 2 * per_epoch
    assert not run_dir.exists()  # a completed run removes its checkpoints


def test_progress_bar_starts_at_the_checkpoint_step() -> None:
    from rich.console import Console
    from rich.progress import Progress

    from monitoring.cli.progress import bar_progress

    with Progress(console=Console(file=io.StringIO())) as bar:
        task = bar.add_task("training", total=None)
        progress = bar_progress(bar, task)
        progress("teacher soft labels", 500, 500)
        progress("resumed at step 40", 40, 100)  # a new phase: the clock restarts at 40
        state = bar.tasks[0]
        assert (state.completed, state.total) == (40, 100)
        assert not state._progress  # no sample claims 40 steps were done just now
        progress("epoch 2/2", 41, 100)
        progress("epoch 2/2", 42, 100)
        assert [s.completed for s in state._progress] == [1, 1]
        assert state.completed == 42


def test_cli_refuses_a_missing_checkpoint_path(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from monitoring.cli.train import register

    app = typer.Typer()
    register(app)
    got = CliRunner().invoke(app, ["train", "--resume-from", str(tmp_path / "missing.pt")])
    assert got.exit_code == 2
    assert "does not exist" in got.output


def test_a_checkpoint_without_its_sidecar_is_crc_checked(tmp_path: Path) -> None:
    """torch.load does not check the zip's CRC-32s: a flipped byte in a tensor of a
    checkpoint whose .json was not copied along loaded silently (a diverging resume)."""
    import torch

    identity = {"format": ck.FORMAT, "base_model": "x"}
    path = ck.save(
        tmp_path / "run",
        {
            "step": 3,
            "epoch": 1,
            "epoch_done": True,
            "finished": False,
            "identity": identity,
            "model": {"w": torch.arange(200_000, dtype=torch.float32)},
        },
    )
    lone = tmp_path / "lone" / path.name
    lone.parent.mkdir()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the tensor's record
    lone.write_bytes(bytes(data))
    with pytest.raises(TrainingError, match="fails its CRC-32 check"):
        ck.load(lone, identity)
    lone.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(TrainingError, match="corrupt or truncated"):
        ck.load(lone, identity)


def test_the_same_seed_gives_the_same_initial_head(
    bert_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The classifier head was drawn from torch's unseeded RNG before fine_tune seeded it,
    so two runs with the same --seed differed."""
    from retraining import flow
    from retraining.data import make_splits

    settings = Settings().model_copy(update={"home": tmp_path / "home"})
    splits = make_splits([*TRAIN, *VAL], make_rows(8, 4))
    heads: list[Any] = []

    def capture(model: Any, *a: Any, **k: Any) -> Any:
        heads.append(model.head.weight.detach().clone())
        raise Stop

    monkeypatch.setattr(flow, "fine_tune", capture)
    for seed in (5, 5, 6):
        with pytest.raises(Stop):
            flow.run_flow(
                settings,
                Recipe(base=str(bert_base), training=TrainConfig(seed=seed)),
                splits=splits,
                options=FlowOptions(register=False, checkpoints=False),
            )
    assert heads[0].equal(heads[1]) and not heads[0].equal(heads[2])


def test_bad_input_found_by_the_flow_exits_with_code_2(tmp_path: Path, bert_base: Path) -> None:
    """A damaged base folder (weights that do not fit its config) was a RuntimeError
    traceback; a bad base, checkpoint or teacher found by the flow exited with 1, not 2."""
    import typer
    from typer.testing import CliRunner

    from monitoring.cli.train import register
    from retraining.errors import InputError
    from retraining.modeling import load_base

    bad = tmp_path / "bad-base"
    shutil.copytree(bert_base, bad)
    config = (bad / "config.json").read_text()
    (bad / "config.json").write_text(re.sub(r'"hidden_size": \d+', '"hidden_size": 48', config))
    with pytest.raises(TrainingError, match=r"cannot load base model .*RuntimeError"):
        load_base(str(bad), 4)
    cut = tmp_path / "cut-base"
    shutil.copytree(bert_base, cut)
    (cut / "model.safetensors").write_bytes((cut / "model.safetensors").read_bytes()[:100])
    with pytest.raises(TrainingError, match=r"cannot load base model .*SafetensorError"):
        load_base(str(cut), 4)

    data = tmp_path / "rows.csv"
    data.write_text("text,label\n" + "".join(f"{r.text},{r.label}\n" for r in TRAIN + VAL))
    app = typer.Typer()
    register(app)
    runner = CliRunner(env={"NEWSFLOW_HOME": str(tmp_path / "home")})
    args = ["train", "--quick", "--dataset", str(data), "--no-register", "--no-baseline"]
    for extra in (["--base", str(bad)], ["--base", str(tmp_path / "none")]):
        got = runner.invoke(app, [*args, *extra])
        assert got.exit_code == 2, got.output
        assert isinstance(got.exception, SystemExit) and "error:" in got.output
    assert issubclass(InputError, TrainingError)


def test_a_base_folder_is_the_same_base_with_or_without_a_trailing_slash(bert_base: Path) -> None:
    from retraining.checkpoint import base_name

    assert base_name(f"{bert_base}/") == base_name(str(bert_base)) == str(bert_base.resolve())
    assert base_name("minilm") == "minilm"


def test_progress_prints_plain_lines_when_no_bar_can_be_drawn() -> None:
    """Under nohup or a service the bar draws nothing: one line per phase and one a minute."""
    from rich.console import Console
    from rich.progress import Progress

    from monitoring.cli.progress import bar_progress

    now = [0.0]
    lines: list[str] = []
    with Progress(console=Console(file=io.StringIO())) as bar:
        task = bar.add_task("training", total=None)
        progress = bar_progress(bar, task, plain=lines.append, every_s=60, clock=lambda: now[0])
        progress("resumed at step 100", 100, 1100)
        for step in range(101, 1101):
            now[0] += 1.0  # one step a second
            progress("epoch 1/1", step, 1100)
    assert lines[0] == "resumed at step 100: 100/1,100 (9%)"
    # every 60 s: steps 160, 220, ... and the last step; the rate counts only this process
    assert lines[1] == "epoch 1/1: 160/1,100 (14%), 1.00/s, ETA 16 min"
    assert len(lines) == 1 + 1000 // 60 + 1
    assert lines[-1] == "epoch 1/1: 1,100/1,100 (100%), 1.00/s"


def test_plain_progress_lines_at_the_edges() -> None:
    from rich.console import Console
    from rich.progress import Progress

    from monitoring.cli.progress import bar_progress, plain_progress

    assert plain_progress("x", 999, 1000, 10, 10) == "x: 999/1,000 (99%), 1.00/s, ETA 1 s"
    assert plain_progress("x", 1, 1000, 300, 1) == "x: 1/1,000 (0%), 300.0 s each, ETA 83.2 h"
    assert plain_progress("x", 11, 10, 5, 5) == "x: 11/10 (100%), 1.00/s"
    assert plain_progress("x", 7, 0, 7, 7) == "x: 7, 1.00/s"  # an unknown total
    now = [0.0]
    lines: list[str] = []
    with Progress(console=Console(file=io.StringIO())) as bar:
        progress = bar_progress(
            bar, bar.add_task("t", total=None), plain=lines.append, clock=lambda: now[0]
        )
        progress("epoch 1/1", 0, 10)
        for step in (10, 10, 11, 12):  # the end is said once, repeats and overshoots are not
            now[0] += 1.0
            progress("epoch 1/1", step, 10)
        progress("count", 0, 0)
        for step in range(1, 50):  # total 0: throttled like any other phase
            now[0] += 1.0
            progress("count", step, 0)
    assert lines == ["epoch 1/1: 0/10 (0%)", "epoch 1/1: 10/10 (100%), 10.00/s", "count: 0"]
