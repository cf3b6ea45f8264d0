"""Model tier: `newsflow train --warm-start VERSION`. A tiny model trained by the real flow is
registered in a real MLflow store (SQLite in tmp_path) with its torch weights; a second run
must start from exactly those weights, and every version it cannot continue is refused before
any training step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.core import registry
from pipeline.core.settings import Settings
from retraining.errors import TrainingError
from retraining.flow import FlowOptions
from retraining.recipe import Recipe
from retraining.train import TrainConfig
from tests.model.synthetic import LABELS, make_rows

pytestmark = pytest.mark.model

ROWS = make_rows(48, 1)
CFG = TrainConfig(epochs=1, batch_size=16, learning_rate=1e-3, max_steps=2)
QUICK = FlowOptions(register=False, card_speed=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    tmp = tmp_path_factory.mktemp("registry")
    return Settings().model_copy(
        update={"home": tmp / "home", "mlflow_tracking_uri": f"sqlite:///{tmp}/mlflow.db"}
    )


def _splits() -> Any:
    from retraining.data import make_splits

    return make_splits(ROWS, make_rows(16, 5))


def _train(store: Settings, bert_base: Path, warm_start: str | None = None) -> Any:
    """A real tiny run of the flow, registered in ``store``."""
    from retraining.flow import run_flow

    return run_flow(
        store,
        Recipe(base=str(bert_base), training=CFG, quantize=False, warm_start=warm_start),
        splits=_splits(),
        options=FlowOptions(baseline=False, card_speed=False),
    )


@pytest.fixture(scope="module")
def versions(
    store: Settings, bert_base: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """1: trained by the flow (weights logged); 2: other labels; 3: same base name and labels
    but registered from a bare folder, so its run logged no weights."""
    from retraining.bases.tiny import build_tiny, write_tiny_model_folder
    from retraining.export import write_model_folder
    from retraining.register import register_model_folder

    first = _train(store, bert_base)
    assert first.summary["registered_version"] == "1"
    tmp = tmp_path_factory.mktemp("folders")
    health = ("World", "Sports", "Business", "Health")
    other = write_tiny_model_folder(tmp / "health", "bert", health)
    assert register_model_folder(store, other) == "2"
    model, tok = build_tiny("bert", tuple(LABELS), seed=3)
    bare = tmp / "bare"
    write_model_folder(
        model, tok, list(LABELS), bare, version="bare-1", base_model=str(bert_base), int8=False
    )
    assert register_model_folder(store, bare) == "3"
    return {"trained": "1", "other_labels": "2", "no_weights": "3"}


def test_the_run_starts_from_the_registered_weights(
    store: Settings, versions: dict[str, str], bert_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from retraining import flow

    registered = torch.load(
        registry.torch_state(store, versions["trained"], store.home / "check"),
        map_location="cpu",
        weights_only=True,
    )
    seen: dict[str, Any] = {}

    def capture(model: Any, *args: Any, **kwargs: Any) -> Any:
        seen["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        raise TrainingError("stopped by the test after the first look at the weights")

    with monkeypatch.context() as m:  # the same base folder spelled another way, "01" for 1
        m.setattr(flow, "fine_tune", capture)
        with pytest.raises(TrainingError, match="stopped by the test"):
            flow.run_flow(
                store,
                Recipe(
                    base=f"{bert_base}/../{bert_base.name}/",
                    training=CFG,
                    warm_start="0" + versions["trained"],
                ),
                splits=_splits(),
                options=QUICK,
            )
    assert seen["state"].keys() == registered.keys()
    assert all(torch.equal(seen["state"][k], registered[k]) for k in registered)
    # and a fresh start does not: the head is new
    with monkeypatch.context() as m:
        m.setattr(flow, "fine_tune", capture)
        with pytest.raises(TrainingError, match="stopped by the test"):
            flow.run_flow(
                store, Recipe(base=str(bert_base), training=CFG), splits=_splits(), options=QUICK
            )
    assert not all(torch.equal(seen["state"][k], registered[k]) for k in registered)

    # "001": recorded in its canonical spelling
    result = _train(store, bert_base, warm_start="00" + versions["trained"])
    s = result.summary
    assert s["warm_start"] is True and s["warm_start_version"] == versions["trained"]
    assert s["seed"] == CFG.seed and s["validation_info"]["mode"] == "random"
    run = registry.client(store).get_run(s["run_id"])
    assert run.data.tags["warm_start_version"] == versions["trained"]
    card = (Path(s["card_dir"]) / "model_card.md").read_text()
    assert f"warm-started from version {versions['trained']}" in card


@pytest.mark.parametrize(
    ("which", "base", "message"),
    [
        ("champion", "bert", "takes a registry version number"),
        ("../1", "bert", "takes a registry version number"),
        ("99", "bert", r"version 99 does not exist .*registered: 1, 2, 3"),
        ("٣", "bert", "takes a registry version number"),
        ("1 ", "bert", "takes a registry version number"),
        ("trained", "roberta", "was trained from base .*pass --base"),
        ("other_labels", "tiny-bert", r"predicts labels .*Health.* the training data has"),
        ("no_weights", "bert", "logged no fine-tuned weights"),
    ],
)
def test_versions_it_cannot_continue_are_refused_before_training(
    store: Settings,
    versions: dict[str, str],
    bert_base: Path,
    roberta_base: Path,
    monkeypatch: pytest.MonkeyPatch,
    which: str,
    base: str,
    message: str,
) -> None:
    from retraining import flow
    from retraining.errors import InputError

    monkeypatch.setattr(flow, "fine_tune", lambda *a, **k: pytest.fail("training started"))
    bases = {"bert": str(bert_base), "roberta": str(roberta_base)}
    if base == "tiny-bert":  # version 2's own base name, so that its labels are what differs
        monkeypatch.setattr(flow, "resolve_base_model", lambda _b, _s: str(bert_base))
    with pytest.raises(InputError, match=message):
        flow.run_flow(
            store,
            Recipe(base=bases.get(base, base), training=CFG, warm_start=versions.get(which, which)),
            splits=_splits(),
            options=QUICK,
        )


def test_unreadable_weights_and_registry_are_refused_before_training(
    store: Settings, versions: dict[str, str], bert_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import torch

    from retraining import flow
    from retraining.errors import InputError

    monkeypatch.setattr(flow, "fine_tune", lambda *a, **k: pytest.fail("training started"))
    run_id = registry.client(store).get_model_version(store.registered_model_name, "1").run_id
    uri = registry.client(store).get_run(run_id).info.artifact_uri
    logged = Path(uri.removeprefix("file://")) / "torch" / "state.pt"
    assert logged.is_file()
    keep = logged.with_name("state.pt.keep")
    shutil.copy(logged, keep)
    recipe = Recipe(base=str(bert_base), training=CFG, warm_start="1")
    kwargs: dict[str, Any] = dict(splits=_splits(), options=QUICK)
    c, name = registry.client(store), store.registered_model_name
    digest = dict(c.get_model_version(name, "1").tags)[registry.STATE_TAG]
    try:
        # other weights that load: only the digest registered with the version tells
        other = torch.load(keep, map_location="cpu", weights_only=True)
        other["head.bias"] = other["head.bias"] + 1.0
        torch.save(other, logged)
        damages = (lambda b: b[: len(b) // 2], lambda b: b"", lambda b: b"not torch " * 9)
        for damage in (None, *damages):
            if damage is not None:
                logged.write_bytes(damage(keep.read_bytes()))
            with pytest.raises(InputError, match=r"differ from the ones registered"):
                flow.run_flow(store, recipe, **kwargs)
        # a version registered before the digest existed: the load itself refuses
        c.delete_model_version_tag(name, "1", registry.STATE_TAG)
        for damage in damages:
            logged.write_bytes(damage(keep.read_bytes()))
            with pytest.raises(InputError, match="unreadable weights"):
                flow.run_flow(store, recipe, **kwargs)
    finally:
        shutil.copy(keep, logged)
        c.set_model_version_tag(name, "1", registry.STATE_TAG, digest)
    gone = store.model_copy(update={"mlflow_tracking_uri": "sqlite:////proc/no/such/mlflow.db"})
    with pytest.raises(InputError, match="cannot reach the registry"):
        flow.run_flow(gone, recipe, **kwargs)


def test_non_finite_or_foreign_weights_are_refused(bert_base: Path, tmp_path: Path) -> None:
    import torch

    from retraining.flow import _load_state
    from retraining.modeling import load_base

    model, _tok = load_base(str(bert_base), len(LABELS))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first][0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(TrainingError, match="non-finite weights in 1 tensors"):
        _load_state(model, tmp_path / "nan.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(TrainingError, match="not a state dict of tensors"):
        _load_state(model, tmp_path / "list.pt")
    torch.save({"x": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(TrainingError, match="cannot warm-start"):
        _load_state(model, tmp_path / "other.pt")


@pytest.mark.timeout(60)  # MLflow's own client retries a down server for about 5 minutes
def test_a_registry_server_that_is_down_or_not_mlflow_is_refused_at_once(
    store: Settings, bert_base: Path
) -> None:
    import http.server
    import threading

    from retraining import flow
    from retraining.errors import InputError
    from tests.conftest import free_port

    recipe = Recipe(base=str(bert_base), training=CFG, warm_start="1")
    kwargs: dict[str, Any] = dict(splits=_splits(), options=QUICK)
    down = store.model_copy(update={"mlflow_tracking_uri": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(InputError, match=r"cannot reach the registry at http://127\.0\.0\.1"):
        flow.run_flow(down, recipe, **kwargs)
    # a registry kept apart from the tracking store is the one the versions come from
    apart = store.model_copy(update={"mlflow_registry_uri": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(InputError, match=r"cannot reach the registry at http://127\.0\.0\.1"):
        flow.run_flow(apart, recipe, **kwargs)

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>a web page, not MLflow</html>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = store.model_copy(
            update={"mlflow_tracking_uri": f"http://127.0.0.1:{server.server_address[1]}"}
        )
        with pytest.raises(InputError, match=r"cannot read version 1 from the registry"):
            flow.run_flow(page, recipe, **kwargs)
    finally:
        server.shutdown()
        server.server_close()


def test_registered_weights_are_those_bytes_or_an_error_never_none(
    store: Settings, versions: dict[str, str], tmp_path: Path
) -> None:
    """What drift retraining and topic onboarding read too: a version registered with its
    weights' digest never passes for "no weights" (they would train from the base)."""
    import shutil

    from pipeline.core import manifest
    from pipeline.core.errors import RegistryError

    c, name = registry.client(store), store.registered_model_name
    digest = dict(c.get_model_version(name, "1").tags)[registry.STATE_TAG]
    want = manifest.decode(digest)["state.pt"]
    # leftovers of an earlier download where the file goes: replaced, then checked
    for leftover in ("folder", "link"):
        dst = tmp_path / leftover
        (dst / "state.pt").parent.mkdir(parents=True)
        if leftover == "folder":
            (dst / "state.pt").mkdir()
        else:
            (dst / "state.pt").symlink_to(tmp_path / "nowhere")
        got = registry.torch_state(store, "1", dst)
        assert got is not None and manifest.file_digest(got) == want
    assert registry.torch_state(store, "3", tmp_path / "old") is None  # no weights logged

    run_id = c.get_model_version(name, "1").run_id
    uri = c.get_run(run_id).info.artifact_uri
    logged = Path(uri.removeprefix("file://")) / "torch" / "state.pt"
    keep = tmp_path / "keep.pt"
    shutil.move(logged, keep)
    try:
        with pytest.raises(RegistryError, match="registered but cannot be downloaded"):
            registry.torch_state(store, "1", tmp_path / "gone")
    finally:
        shutil.move(keep, logged)
    try:
        for bad in ("not json", "{}", '{"other.pt": [1, "' + "0" * 64 + '"]}', "[]"):
            c.set_model_version_tag(name, "1", registry.STATE_TAG, bad)
            with pytest.raises(RegistryError, match=r"newsflow\.torch_state is unreadable"):
                registry.torch_state(store, "1", tmp_path / "tag")
            assert not (tmp_path / "tag" / "state.pt").exists()
    finally:
        c.set_model_version_tag(name, "1", registry.STATE_TAG, digest)
