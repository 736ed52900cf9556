"""``save`` and ``load``: a fitted model in one file, without pickle."""

from __future__ import annotations

import copy
import secrets
import sys
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

from sktransfer.exceptions import EnvironmentChangeWarning, UnsafeFileError
from sktransfer.persist._archive import read_archive, write_archive
from sktransfer.persist._codec import TAG, Decoder, Encoder, SaveError
from sktransfer.persist._estimators import decode_part, encode_part, is_part

__all__ = ["DEFAULT_TRUSTED", "load", "save"]

# types skops does not trust by default that hold arrays only (our numpy-only
# estimators, scikit-learn's tree structure)
DEFAULT_TRUSTED = (
    "sktransfer.adapt._transformers.CORAL",
    "sktransfer.adapt._transformers.DomainStandardScaler",
    "sktransfer.adapt._labeled.LabeledOnly",
    "sklearn.tree._tree.Tree",
)
# versions recorded in the file and compared at load (those that change outputs)
_PACKAGES = (
    "sktransfer",
    "torch",
    "scikit-learn",
    "skorch",
    "numpy",
    "transformers",
    "timm",
)


def _environment() -> dict[str, str]:
    env = {"python": ".".join(map(str, sys.version_info[:2]))}
    for name in _PACKAGES:
        try:
            env[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return env


# ------------------------------------------------------------------ save
class _Writer:
    """Encodes one object tree: parts (ours) and skops members (the rest)."""

    def __init__(self):
        self.token = f"<sktransfer-part {secrets.token_hex(8)}>"
        self.parts: list[dict | None] = []
        self.members: dict[str, bytes] = {}
        self._memo: dict[int, int] = {}
        self._keep: list[Any] = []  # memo ids stay valid while writing
        self.encoder = Encoder(self._part, self._sklearn)

    def _part(self, obj: Any, where: str) -> dict | None:
        if not is_part(obj):
            return None
        return {TAG: "part", "index": self._index(obj, where)}

    def _index(self, obj: Any, where: str) -> int:
        if id(obj) not in self._memo:
            self._memo[id(obj)] = len(self.parts)
            self._keep.append(obj)
            self.parts.append(None)
            self.parts[self._memo[id(obj)]] = encode_part(obj, self.encoder, where)
        return self._memo[id(obj)]

    def _sklearn(self, obj: Any, where: str) -> dict:
        import skops.io

        swapped = self._swap(obj, where, {})
        try:
            data = skops.io.dumps(swapped)
        except Exception as exc:  # skops refuses what it cannot represent
            raise SaveError(
                f"{where} ({type(obj).__name__}) cannot be saved without pickle: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        name = f"skops/{len(self.members)}.skops"
        self.members[name] = data
        return {TAG: "skops", "member": name}

    def _swap(self, obj: Any, where: str, seen: dict) -> Any:
        """``obj`` with our estimators replaced by placeholders (copies where
        something changed; the user's objects are never modified)."""
        from sklearn.base import BaseEstimator

        if is_part(obj):
            return f"{self.token}{self._index(obj, where)}"
        if id(obj) in seen:
            return seen[id(obj)]
        if type(obj) in (list, tuple):
            items = [self._swap(v, f"{where}[{i}]", seen) for i, v in enumerate(obj)]
            out = (
                obj
                if all(a is b for a, b in zip(items, obj, strict=True))
                else type(obj)(items)
            )
        elif isinstance(obj, dict):
            items = {k: self._swap(v, f"{where}[{k!r}]", seen) for k, v in obj.items()}
            out = obj
            if any(items[k] is not obj[k] for k in obj):
                out = copy.copy(obj)
                out.update(items)
        elif isinstance(obj, BaseEstimator):
            items = {
                k: self._swap(v, f"{where}.{k}", seen) for k, v in vars(obj).items()
            }
            out = obj
            if any(items[k] is not v for k, v in vars(obj).items()):
                out = copy.copy(obj)
                vars(out).update(items)
        else:
            out = obj
        seen[id(obj)] = out
        return out


def save(estimator: Any, path, *, overwrite: bool = False) -> Path:
    """Save a fitted model to one file that loads without running its code.

    Works for the extractor, the fine-tuners, the few- and zero-shot
    classifiers and any scikit-learn object that holds them (``Pipeline``,
    ``ColumnTransformer``, ``FeatureUnion``, a search's ``best_estimator_``...)
    with ordinary scikit-learn steps. Network weights go to safetensors,
    parameters and fitted attributes to JSON, the scikit-learn parts through
    ``skops.io``; the file is a zip archive that also records the package
    versions and, per backbone, its name, the SHA-256 of its pretrained
    weights and its preprocessing (see :func:`load`).

    Parameters
    ----------
    estimator : object
        A fitted (or unfitted) estimator.
    path : str or PathLike
        The file to write (by convention ``*.skt``).
    overwrite : bool, default=False
        Replace an existing file. Without it an existing ``path`` is an error.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    TypeError
        A value that cannot be written without pickle (a lambda callback, a
        torch module passed as ``backbone=``...); the message names it.

    Notes
    -----
    A backbone's pretrained weights are not copied into the file: they are
    loaded from the environment (its package, the framework's cache or the
    ``weights=`` path), and :func:`load` warns when they differ from those the
    model was saved with. A fine-tuner's trained weights are in the file.
    Optimizer state and callback state are not saved: ``fit`` after ``load``
    trains from the saved weights with a fresh optimizer.

    Examples
    --------
    >>> import numpy as np, tempfile, os, sktransfer
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    >>> model = make_pipeline(
    ...     sktransfer.PretrainedFeatureExtractor(backbone="test-cnn"),
    ...     LogisticRegression(),
    ... ).fit(X, [0, 1] * 4)
    >>> path = sktransfer.save(model, os.path.join(tempfile.mkdtemp(), "model.skt"))
    >>> (sktransfer.load(path).predict(X) == model.predict(X)).all()
    np.True_
    """
    writer = _Writer()
    root = writer.encoder.encode(estimator, type(estimator).__name__)
    manifest = {
        "environment": _environment(),
        "root": root,
        "parts": writer.parts,
        "placeholder": writer.token,
        "object": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
    }
    return write_archive(
        path, manifest, writer.encoder.tensors, writer.members, overwrite=overwrite
    )


# ------------------------------------------------------------------ load
class _Reader:
    def __init__(self, manifest, tensors, members, trusted):
        self.manifest = manifest
        self.members = members
        self.parts = manifest.get("parts", [])
        self.token = str(manifest.get("placeholder", ""))
        self._built: dict[int, Any] = {}
        names = set(trusted)
        self.skops_trusted = names | set(DEFAULT_TRUSTED)
        refs = {n.replace(":", ".") for n in names} | {
            n.rpartition(".")[0] + ":" + n.rpartition(".")[2] for n in names
        }
        self.decoder = Decoder(tensors, refs, self._part, self._sklearn)

    def _part(self, record: dict) -> Any:
        index = record.get("index")
        if not isinstance(index, int) or not 0 <= index < len(self.parts):
            raise UnsafeFileError(f"the file refers to a missing part {index!r}.")
        if index not in self._built:
            self._built[index] = None  # a part never contains itself
            self._built[index] = decode_part(self.parts[index], self.decoder)
        if self._built[index] is None:
            raise UnsafeFileError("the file holds a part that contains itself.")
        return self._built[index]

    def _sklearn(self, record: dict) -> Any:
        import skops.io

        name = record.get("member")
        data = self.members.get(name)
        if data is None:
            raise UnsafeFileError(f"the file refers to a missing member {name!r}.")
        try:
            untrusted = skops.io.get_untrusted_types(data=data)
        except Exception as exc:  # not a skops archive
            raise UnsafeFileError(
                f"member {name} is not a skops file ({type(exc).__name__}: {exc}); "
                "nothing was loaded from it."
            ) from exc
        refused = sorted(set(untrusted) - self.skops_trusted)
        if refused:
            raise UnsafeFileError(
                f"the file would create types that are not trusted: {refused}. "
                f"If you trust this file, pass trusted={refused} to load."
            )
        try:
            obj = skops.io.loads(data, trusted=list(untrusted))
        except Exception as exc:  # skops's errors on a changed schema are varied
            raise UnsafeFileError(f"member {name} could not be read: {exc}") from exc
        return self._fill(obj, set())

    def _fill(self, obj: Any, seen: set) -> Any:
        """Put our estimators back where placeholders stand."""
        from sklearn.base import BaseEstimator

        if isinstance(obj, str) and self.token and obj.startswith(self.token):
            try:
                index = int(obj[len(self.token) :])
            except ValueError:
                raise UnsafeFileError(f"malformed placeholder {obj!r}.") from None
            return self._part({"index": index})
        if id(obj) in seen:
            return obj
        seen.add(id(obj))
        if isinstance(obj, list):
            obj[:] = [self._fill(v, seen) for v in obj]
        elif type(obj) is tuple:
            return tuple(self._fill(v, seen) for v in obj)
        elif isinstance(obj, dict):
            for k in list(obj):
                obj[k] = self._fill(obj[k], seen)
        elif isinstance(obj, BaseEstimator):
            for k, v in list(vars(obj).items()):
                vars(obj)[k] = self._fill(v, seen)
        return obj


def _check_environment(saved: dict, path) -> None:
    here = _environment()
    changed = [
        f"{name} {saved[name]} (here {here.get(name, 'not installed')})"
        for name in _PACKAGES
        if name in saved and saved[name] != here.get(name)
    ]
    if changed:
        warnings.warn(
            f"{path} was saved with {', '.join(changed)}; its predictions may "
            "differ here. Install those versions, or refit and save again.",
            EnvironmentChangeWarning,
            stacklevel=3,
        )


def load(path, *, trusted=None) -> Any:
    """Load a model written by :func:`save`, running no code from the file.

    The archive is checked before anything is built: exactly the members its
    manifest lists, each with its SHA-256, tensors with the recorded dtypes and
    shapes. Classes and functions are named, never pickled, and only those of
    sktransfer, scikit-learn, skorch, torch, NumPy and SciPy are resolved (by
    import); the scikit-learn parts go through ``skops.io`` with its trusted
    types. Each network is rebuilt as ``fit`` builds it, then its weights are
    loaded strictly (every tensor, every shape).

    Parameters
    ----------
    path : str or PathLike
        A file written by :func:`save`.
    trusted : list of str, optional
        More types or functions to allow, by their full names (``"mypkg.mod.
        MyScaler"``): those the error of a refused file lists.

    Returns
    -------
    object
        The estimator, on this machine's device: a model saved on a GPU runs
        on the CPU (with a warning) where there is none.

    Raises
    ------
    sktransfer.exceptions.UnsafeFileError
        A file that is not a saved model (a pickle is never unpickled), was
        changed after it was saved, or names untrusted types.

    Warns
    -----
    sktransfer.exceptions.EnvironmentChangeWarning
        Other package versions than at save time, other backbone weights or
        preprocessing, or a device this machine lacks.

    Examples
    --------
    See :func:`save`.
    """
    if trusted is not None and (
        isinstance(trusted, str) or not all(isinstance(t, str) for t in trusted)
    ):
        raise TypeError("trusted must be a list of type names (str).")
    manifest, tensors, members = read_archive(path)
    env = manifest.get("environment")
    if isinstance(env, dict):
        _check_environment(env, path)
    reader = _Reader(manifest, tensors, members, trusted or ())
    return reader.decoder.decode(manifest.get("root"))
