"""Fetching registered model folders over HTTP against a hostile or broken tracking server
(a tiny in-process HTTP server plays the registry)."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeline.core import manifest, model_fetch
from pipeline.core.errors import ModelError, RegistryError
from pipeline.core.model_fetch import FetchCancelled, RegistryUnreachable
from pipeline.core.runtime import Classifier
from pipeline.core.settings import Settings

FILES = {
    "metadata.json": b'{"version": "m1"}',
    "model.onnx": bytes(range(256)) * 40,  # 10 KiB
    "tokenizer.json": b"{}",
}


def _manifest(files: dict[str, bytes]) -> str:
    return json.dumps(
        {k: [len(v), hashlib.sha256(v).hexdigest()] for k, v in sorted(files.items())},
        separators=(",", ":"),
    )


class Registry:
    """Behaviour per request from ``cfg``; every request is recorded with its headers."""

    def __init__(self) -> None:
        self.cfg: dict[str, Any] = {}
        self.files = dict(FILES)
        self.requests: list[tuple[str, str | None]] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                registry.requests.append((self.path, self.headers.get("Authorization")))

            def _send(self, code: int, body: bytes, extra: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                registry.handle(self)

        self.Handler = Handler
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, h: Any) -> Any:
        cfg = self.cfg
        path = urllib.parse.urlsplit(h.path).path
        if cfg.get("redirect"):
            return h._send(302, b"", {"Location": cfg["redirect"] + h.path})
        if path.endswith(("/registered-models/alias", "/model-versions/get")):
            mv = {
                "version": cfg.get("version", "1"),
                "source": cfg.get("source", "mlflow-artifacts:/1/r/artifacts/model"),
                "run_id": "r",
                "tags": [
                    {"key": "model_version", "value": cfg.get("model_version", "m1")},
                    {"key": manifest.TAG, "value": cfg.get("files") or _manifest(self.files)},
                ],
            }
            return h._send(200, json.dumps({"model_version": mv}).encode())
        if "/mlflow-artifacts/artifacts/" in path:
            name = urllib.parse.unquote(path).rsplit("/model/", 1)[-1]
            data = self.files.get(name, b"")
            mode = cfg.get("mode", "ok")
            if mode == "status":
                return h._send(cfg["status"], b"no")
            if mode == "cut" and name == "model.onnx":
                h.send_response(200)
                h.send_header("Content-Length", str(len(data)))
                h.end_headers()
                h.wfile.write(data[: len(data) // 2])
                h.wfile.flush()
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)
                return None
            if mode == "drip" and name == "model.onnx":
                h.send_response(200)
                h.send_header("Content-Length", str(len(data)))
                h.end_headers()
                step = cfg.get("chunk", 100)
                for i in range(0, len(data), step):
                    try:
                        h.wfile.write(data[i : i + step])
                        h.wfile.flush()
                    except OSError:
                        return None
                    time.sleep(cfg.get("drip_s", 0.2))
                return None
            return h._send(200, data)
        return h._send(404, b'{"error_code":"RESOURCE_DOES_NOT_EXIST"}')

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def registry() -> Iterator[Registry]:
    reg = Registry()
    yield reg
    reg.close()


def _settings(home: Path, url: str, **kw: Any) -> Settings:
    return Settings().model_copy(
        update={
            "home": home,
            "mlflow_tracking_uri": url,
            "registry_timeout_s": 3.0,
            "model_poll_s": 1.0,
            **kw,
        }
    )


def _fetch(s: Settings, **kw: Any) -> Path:
    info = model_fetch.by_alias(s, "champion")
    assert info is not None
    return model_fetch.fetch_version(s, info.version, info, **kw)


def _leftovers(s: Settings) -> list[str]:
    root = s.home / "models"
    return sorted(p.name for p in root.rglob("*") if p.name.startswith(".v") and "tmp" in p.name)


# 1 ---------------------------------------------------------------------------------------
def test_a_version_number_with_a_path_never_leaves_the_cache(
    registry: Registry, tmp_path: Path
) -> None:
    from pipeline.core.registry import local_copy_path

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("precious")
    s = _settings(tmp_path / "home" / "a" / "b", registry.url)
    registry.cfg = {"version": "/../../../../victim"}
    with pytest.raises(RegistryError, match="invalid version"):
        model_fetch.by_alias(s, "champion")
    for bad in ("../x", "1/../../x", "", "1a", "1" * 10):
        with pytest.raises(RegistryError):
            local_copy_path(s, bad)
    assert (victim / "keep").read_text() == "precious"
    assert not (tmp_path / "champion.json").exists()

    # a pointer file naming such a version is ignored, not followed
    registry.cfg = {}
    model_fetch.remember_champion(s, model_fetch.by_alias(s, "champion"))  # type: ignore[arg-type]
    pointer = local_copy_path(s, "1").parent / model_fetch.CHAMPION_POINTER
    data = json.loads(pointer.read_text())
    pointer.write_text(json.dumps({**data, "version": "/../../../../victim"}))
    assert model_fetch.remembered_champion(s) is None


# 2 ---------------------------------------------------------------------------------------
def test_redirects_are_refused_and_the_token_stays_home(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Registry()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-secret-123")
        registry.cfg = {"redirect": other.url}
        s = _settings(tmp_path, registry.url)
        with pytest.raises(RegistryError, match="redirected to") as info:
            model_fetch.by_alias(s, "champion")
        assert other.url in str(info.value) and "tok-secret" not in str(info.value)
        time.sleep(0.2)
        assert other.requests == []  # nothing (and no token) reached the other host
    finally:
        other.close()


# 3 ---------------------------------------------------------------------------------------
def test_a_password_in_the_tracking_uri_is_refused_and_never_shown(tmp_path: Path) -> None:
    from pipeline.core.errors import SettingsError
    from pipeline.core.settings import load_settings

    with pytest.raises(SettingsError) as info:
        load_settings(mlflow_tracking_uri="http://alice:pw-s3cret@mlflow.example:5000")
    text = str(info.value)
    assert "pw-s3cret" not in text and "MLFLOW_TRACKING_PASSWORD" in text
    assert "MLFLOW_TRACKING_TOKEN" in text

    shown = Settings(mlflow_tracking_uri="postgresql://u:db-s3cret@h/mlflow").masked()
    assert "db-s3cret" not in json.dumps(shown)


def test_a_password_that_slipped_into_the_uri_is_a_registry_error_without_it(
    registry: Registry, tmp_path: Path
) -> None:
    port = registry.url.rsplit(":", 1)[1]
    for uri in (
        f"http://alice:pw-s3cret@127.0.0.1:{port}",
        f"http://pw-s3cret@127.0.0.1:{port}",
        "http://alice:pw-s3cret@[::1",
    ):
        s = _settings(tmp_path, uri)  # model_copy skips validation, as a bug elsewhere might
        with pytest.raises(RegistryError) as info:
            model_fetch.by_alias(s, "champion")
        assert "pw-s3cret" not in str(info.value)


# 4 ---------------------------------------------------------------------------------------
def test_a_download_cut_off_midway_is_retried_not_refused(
    registry: Registry, tmp_path: Path
) -> None:
    s = _settings(tmp_path, registry.url)
    registry.cfg = {"mode": "cut"}
    with pytest.raises(RegistryUnreachable, match="cut off"):
        _fetch(s)
    assert _leftovers(s) == []
    registry.cfg = {}
    assert not manifest.problems(_fetch(s), manifest.decode(_manifest(FILES)))


def test_a_file_the_server_says_is_shorter_is_refused(registry: Registry, tmp_path: Path) -> None:
    s = _settings(tmp_path, registry.url)
    registry.cfg = {"files": _manifest(FILES)}
    registry.files["model.onnx"] = FILES["model.onnx"][:100]
    with pytest.raises(ModelError, match=r"model\.onnx"):
        _fetch(s)


# 5 ---------------------------------------------------------------------------------------
def test_two_fetches_of_one_version_sharing_a_home_both_succeed(
    registry: Registry, tmp_path: Path
) -> None:
    registry.cfg = {"mode": "drip", "chunk": 2048, "drip_s": 0.1}
    s = _settings(tmp_path, registry.url)
    results: list[object] = []

    def fetch() -> None:
        try:
            results.append(_fetch(s))
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    threads[0].start()
    time.sleep(0.25)
    threads[1].start()
    for t in threads:
        t.join(30)
    assert all(isinstance(r, Path) for r in results) and len(results) == 2, results
    assert not manifest.problems(results[0], manifest.decode(_manifest(FILES)))  # type: ignore[arg-type]
    assert _leftovers(s) == []


# 6 and 9 ---------------------------------------------------------------------------------
class _FakeClassifier:
    def __init__(self, version: str) -> None:
        self.version, self.labels = version, ["a", "b"]


def test_a_refused_champion_never_becomes_the_restart_fallback(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline import hotswap

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ModelError("the graph does not load")

    monkeypatch.setattr(Classifier, "load", broken)
    s = _settings(tmp_path, registry.url)
    with pytest.raises(ModelError):
        hotswap.load_champion(s)
    assert model_fetch.remembered_champion(s) is None

    monkeypatch.setattr(Classifier, "load", lambda *a, **k: _FakeClassifier("m1"))
    assert hotswap.load_champion(s)[0] == "1"
    remembered = model_fetch.remembered_champion(s)
    assert remembered is not None and remembered.version == "1"


def test_a_tag_that_differs_from_the_metadata_is_refused_once(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline import hotswap

    loads: list[str] = []

    def load(folder: Path, **kwargs: Any) -> _FakeClassifier:
        loads.append(folder.name)
        return _FakeClassifier(json.loads((folder / "metadata.json").read_text())["version"])

    monkeypatch.setattr(Classifier, "load", load)
    s = _settings(tmp_path, registry.url)
    registry.cfg = {"model_version": "tag-says-other"}
    with pytest.raises(ModelError, match="tag-says-other"):
        hotswap.load_champion(s)
    assert model_fetch.remembered_champion(s) is None

    holder = hotswap.ModelHolder(_FakeClassifier("m0"))  # type: ignore[arg-type]
    refusals: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(
        target=hotswap.watch_champion,
        args=(s, holder, stop),
        kwargs={"on_refused": lambda v, why: refusals.append(v)},
    )
    loads.clear()
    watcher.start()
    time.sleep(3.5)
    stop.set()
    watcher.join(5)
    assert refusals == ["1"] and len(loads) == 1 and holder.pending_version is None


# 7 ---------------------------------------------------------------------------------------
def test_a_trickling_download_stops_when_asked(registry: Registry, tmp_path: Path) -> None:
    registry.cfg = {"mode": "drip", "chunk": 100, "drip_s": 0.3}
    s = _settings(tmp_path, registry.url)
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(FetchCancelled):
        _fetch(s, stop=stop)
    assert time.monotonic() - t0 < 3
    assert _leftovers(s) == [] and not list((s.home / "models").glob("*/v1"))


def test_a_trickling_download_gives_up_at_its_deadline(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_fetch, "_MIN_DEADLINE_S", 1.0)
    registry.cfg = {"mode": "drip", "chunk": 100, "drip_s": 0.3}
    s = _settings(tmp_path, registry.url)
    t0 = time.monotonic()
    with pytest.raises(RegistryUnreachable, match="too slow"):
        _fetch(s)
    assert time.monotonic() - t0 < 3


def test_a_worker_waiting_for_its_first_model_stops_mid_download(
    registry: Registry, tmp_path: Path
) -> None:
    from pipeline.hotswap import load_champion_patiently

    registry.cfg = {"mode": "drip", "chunk": 100, "drip_s": 0.3}
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    t0 = time.monotonic()
    assert load_champion_patiently(_settings(tmp_path, registry.url), stop) is None
    assert time.monotonic() - t0 < 3


# 8 ---------------------------------------------------------------------------------------
def test_names_that_read_alike_keep_apart(registry: Registry, tmp_path: Path) -> None:
    from pipeline.core.registry import local_copy_path

    a = _settings(tmp_path, registry.url, registered_model_name="news flow")
    b = a.model_copy(update={"registered_model_name": "news_flow"})
    assert local_copy_path(a, "1").parent != local_copy_path(b, "1").parent
    info = model_fetch.by_alias(a, "champion")
    assert info is not None
    model_fetch.remember_champion(a, info)
    assert model_fetch.remembered_champion(a) == info
    assert model_fetch.remembered_champion(b) is None
    # a pointer written for another name (a copied folder) is not trusted either
    pointer = local_copy_path(a, "1").parent / model_fetch.CHAMPION_POINTER
    local_copy_path(b, "1").parent.mkdir(parents=True)
    (local_copy_path(b, "1").parent / pointer.name).write_bytes(pointer.read_bytes())
    assert model_fetch.remembered_champion(b) is None


# 10 --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "error"),
    [(429, RegistryUnreachable), (408, RegistryUnreachable), (503, RegistryUnreachable)],
)
def test_busy_answers_are_retried_not_refusals(
    registry: Registry, tmp_path: Path, status: int, error: type[Exception]
) -> None:
    registry.cfg = {"mode": "status", "status": status}
    with pytest.raises(error):
        _fetch(_settings(tmp_path, registry.url))


@pytest.mark.parametrize("status", [401, 403])
def test_refused_access_is_an_auth_error_not_a_model_refusal(
    registry: Registry, tmp_path: Path, status: int
) -> None:
    registry.cfg = {"mode": "status", "status": status}
    with pytest.raises(RegistryError, match="MLFLOW_TRACKING_TOKEN") as info:
        _fetch(_settings(tmp_path, registry.url))
    assert not isinstance(info.value, ModelError | RegistryUnreachable)


def test_a_missing_artefact_is_a_refusal(registry: Registry, tmp_path: Path) -> None:
    registry.cfg = {"mode": "status", "status": 404}
    with pytest.raises(ModelError, match="404"):
        _fetch(_settings(tmp_path, registry.url))


def test_sources_workers_cannot_fetch(registry: Registry, tmp_path: Path) -> None:
    from pipeline.core.registry import _served

    assert _served("mlflow-artifacts:/1")
    for location in ("s3://b/x", "gs://b/x", "https://h/x", "/srv/mlflow"):
        assert not _served(location)
    registry.cfg = {"source": "models:/m/1"}
    with pytest.raises(ModelError, match="artefact proxy"):  # a refusal, recorded once
        _fetch(_settings(tmp_path, registry.url))


# 12 --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["", ".", "a/./b", "a//b", "a/", "..", "a\x00b", "x" * 256])
def test_manifest_names_that_are_no_file_inside_the_folder(name: str) -> None:
    with pytest.raises(ModelError):
        manifest.decode(json.dumps({name: [1, "0" * 64]}))


def test_a_stray_file_in_the_cache_does_not_block_fetching(
    registry: Registry, tmp_path: Path
) -> None:
    from pipeline.core.registry import local_copy_path

    s = _settings(tmp_path, registry.url)
    for stray in ("v1", "v1.partial"):
        path = local_copy_path(s, "1").with_name(stray)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("stray")
    assert (_fetch(s) / "model.onnx").read_bytes() == FILES["model.onnx"]


def test_a_file_list_the_disk_cannot_hold_is_a_refusal(registry: Registry, tmp_path: Path) -> None:
    files = {"a": b"x", "a/b": b"y"}  # "a" both a file and a folder
    registry.files = files
    registry.cfg = {"files": _manifest(files)}
    s = _settings(tmp_path, registry.url)
    with pytest.raises(ModelError):
        _fetch(s)
    assert _leftovers(s) == []


# 13 --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["it's", 'a"b', "", "x" * 129, "a\nb", "m/1"])
def test_registered_model_names_are_plain(name: str) -> None:
    from pipeline.core.errors import SettingsError
    from pipeline.core.settings import load_settings

    with pytest.raises(SettingsError, match="REGISTERED_MODEL_NAME"):
        load_settings(registered_model_name=name)
    assert load_settings(registered_model_name="news flow_2.x-y").registered_model_name
