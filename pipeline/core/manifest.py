"""File hashes of a model folder, recorded at registration and checked after every download.

The manifest travels as a model-version tag in the registry (``newsflow.files``), apart from
the artefacts it describes, so a truncated, partial or altered download cannot vouch for
itself.

Example:
    >>> m = folder_manifest(Path("model"))  # doctest: +SKIP
    >>> problems(Path("copy"), m)  # doctest: +SKIP
    []
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from pipeline.core.errors import ModelError

TAG = "newsflow.files"
MAX_FILES = 64
_CHUNK = 1 << 20


class FileDigest(BaseModel):
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


def file_digest(path: Path) -> FileDigest:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return FileDigest(size=size, sha256=h.hexdigest())


def folder_manifest(folder: Path) -> dict[str, FileDigest]:
    """Relative path (POSIX) → size and SHA-256 of every file under ``folder``."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if len(files) > MAX_FILES:
        raise ModelError(f"{folder} holds {len(files)} files; a model folder holds at most 64")
    return {p.relative_to(folder).as_posix(): file_digest(p) for p in files}


def encode(manifest: dict[str, FileDigest]) -> str:
    return json.dumps(
        {k: [v.size, v.sha256] for k, v in sorted(manifest.items())}, separators=(",", ":")
    )


MAX_NAME = 255


def _check_name(name: str) -> None:
    """A file name must be a plain relative POSIX path inside the folder: no empty, ``.``
    or ``..`` part, no leading slash or backslash, no control character, at most 255
    characters (else a download could land on the folder itself or outside it)."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise ValueError(f"{str(name)[:60]!r}: empty or longer than {MAX_NAME} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in name) or "\\" in name:
        raise ValueError(f"{name[:60]!r}: control character or backslash in a file name")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise ValueError(f"{name[:60]!r}: not a relative path inside the folder")


def decode(raw: str) -> dict[str, FileDigest]:
    """Parse a tag value; raise ModelError when it is not a manifest."""
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or not data:
            raise ValueError("not a non-empty object")
        if len(data) > MAX_FILES:
            raise ValueError(f"{len(data)} files; a model folder holds at most {MAX_FILES}")
        out = {}
        for name, pair in data.items():
            if not isinstance(pair, list) or len(pair) != 2:
                raise ValueError(f"{name!r}: expected [size, sha256]")
            _check_name(name)
            out[name] = FileDigest(size=pair[0], sha256=pair[1])
        return out
    except (ValueError, ValidationError) as exc:
        raise ModelError(f"the registry's file list ({TAG}) is unreadable: {exc}") from None


def problems(folder: Path, manifest: dict[str, FileDigest]) -> list[str]:
    """What differs between ``folder`` and ``manifest`` (empty when they match)."""
    found = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    out = [f"missing {name}" for name in sorted(set(manifest) - found)]
    out += [f"unexpected {name}" for name in sorted(found - set(manifest))]
    for name in sorted(set(manifest) & found):
        want = manifest[name]
        path = folder / name
        if path.stat().st_size != want.size:
            out.append(f"{name}: {path.stat().st_size} bytes, registered {want.size}")
        elif file_digest(path).sha256 != want.sha256:
            out.append(f"{name}: SHA-256 differs from the registered one")
    return out
