"""The saved file: one zip archive of JSON, safetensors and skops members.

``manifest.json`` holds the format version, the environment, the encoded
object and, for every other member, its SHA-256; ``tensors.safetensors`` every
tensor and numeric array; ``skops/<n>.skops`` the scikit-learn objects. Reading
checks, before anything is decoded, that the archive holds exactly the members
the manifest lists, each with its checksum, and that the tensors have the
dtypes and shapes it records. A member is stored uncompressed (weights do not
compress) and the file is written under a temporary name, then renamed, so a
crash never leaves a half-written model at ``path``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from sktransfer.exceptions import UnsafeFileError

__all__ = ["FORMAT", "FORMAT_VERSION", "read_archive", "write_archive"]

FORMAT = "sktransfer-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_archive(
    path,
    manifest: dict,
    tensors: dict[str, torch.Tensor],
    members: dict[str, bytes],
    *,
    overwrite: bool,
) -> Path:
    """Write the archive at ``path`` (atomically); return the path."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} exists; pass overwrite=True to replace it (nothing is "
            "overwritten unless you ask)."
        )
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file name.")
    members = dict(members)
    members[TENSORS] = save_tensors(tensors) if tensors else b""
    manifest = {
        **manifest,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tensors": {
            k: [str(t.dtype).removeprefix("torch."), list(t.shape)]
            for k, t in tensors.items()
        },
        "members": {name: _sha256(data) for name, data in members.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w") as zf:
            zf.writestr(MANIFEST, json.dumps(manifest, indent=1))
            for name, data in members.items():
                zf.writestr(name, data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_archive(path) -> tuple[dict, dict[str, torch.Tensor], dict[str, bytes]]:
    """The manifest, tensors and members of a saved model, all checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (or is not a file).")
    if not zipfile.is_zipfile(path):
        raise UnsafeFileError(
            f"{path} is not a model saved by sktransfer.save (not a zip archive; "
            "a pickle or joblib file is never loaded: it could run code)."
        )
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if MANIFEST not in names:
                raise UnsafeFileError(f"{path} has no {MANIFEST}: not a saved model.")
            manifest = json.loads(zf.read(MANIFEST))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise UnsafeFileError(f"{path} is not a model saved by sktransfer.")
            listed = manifest.get("members", {})
            extra = sorted(set(names) - set(listed) - {MANIFEST})
            missing = sorted(set(listed) - set(names))
            if extra or missing or len(names) != len(set(names)):
                raise UnsafeFileError(
                    f"{path} was changed after it was saved: members "
                    f"{extra or missing or 'repeated'} are "
                    f"{'not listed' if extra else 'missing'}."
                )
            members = {name: zf.read(name) for name in listed}
    except zipfile.BadZipFile as exc:
        raise UnsafeFileError(f"{path} is a damaged archive: {exc}.") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnsafeFileError(f"{path} has an unreadable manifest: {exc}.") from exc
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UnsafeFileError(
            f"{path} has format version {version!r}; this sktransfer reads up to "
            f"{FORMAT_VERSION}. Upgrade sktransfer to load it."
        )
    for name, data in members.items():
        if _sha256(data) != listed[name]:
            raise UnsafeFileError(
                f"{path}: member {name} does not match its checksum; the file was "
                "changed or damaged after it was saved."
            )
    data = members.pop(TENSORS)
    try:
        tensors = load_tensors(data) if data else {}
    except Exception as exc:  # safetensors' errors on bad headers are varied
        raise UnsafeFileError(f"{path}: unreadable tensors ({exc}).") from exc
    expected = manifest.get("tensors", {})
    found = {
        k: [str(t.dtype).removeprefix("torch."), list(t.shape)]
        for k, t in tensors.items()
    }
    if found != expected:
        bad = sorted(
            k for k in set(found) | set(expected) if found.get(k) != expected.get(k)
        )
        raise UnsafeFileError(
            f"{path}: tensors {bad[:5]} do not have the dtypes and shapes the "
            "manifest records; the file was changed after it was saved."
        )
    return manifest, tensors, members
