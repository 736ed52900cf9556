"""The embedding engine: samples in, a float32 matrix out, in input order.

It knows nothing about scikit-learn. Images are decoded and resized in a thread
pool (PIL releases the GIL) a few batches ahead of the forward pass, so memory
grows with the output, not with the number of images; they travel to the device as
uint8 and are normalised there. Texts are deduplicated, sorted by token length and
padded per batch.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from sktransfer._images import prepare_image
from sktransfer._inputs import Samples, check_texts
from sktransfer._runtime import AutoBatchSize, autocast
from sktransfer.backbones._loaded import LoadedBackbone
from sktransfer.backbones._modules import (
    ImageFeatureModel,
    TabularFeatureModel,
    TextFeatureModel,
)
from sktransfer.exceptions import InputError

__all__ = ["Embedder", "build_feature_model", "model_on_device"]

_DEVICE_COPIES: dict[tuple[int, str], nn.Module] = {}
_LOCK = threading.Lock()


def model_on_device(loaded: LoadedBackbone, device: torch.device) -> nn.Module:
    """The shared model on ``device``: the CPU original, or one cached copy."""
    if device.type == "cpu":
        return loaded.model
    key = (id(loaded.model), str(device))
    with _LOCK:
        if key not in _DEVICE_COPIES:
            _DEVICE_COPIES[key] = copy.deepcopy(loaded.model).to(device)
        return _DEVICE_COPIES[key]


def forget_models() -> None:
    """Drop the device copies and compiled models (with ``clear_loaded``)."""
    with _LOCK:
        _DEVICE_COPIES.clear()
        _COMPILED.clear()


def _is_convnet(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def build_feature_model(
    loaded: LoadedBackbone,
    model: nn.Module,
    layer=None,
    pooling: str = "auto",
    channels_last: bool = True,
) -> nn.Module:
    """Wrap ``model`` in the feature module of ``loaded``'s modality."""
    spec = loaded.spec
    if spec.modality == "image":
        pre = spec.preprocessing
        use_cl = channels_last and _is_convnet(model)
        if use_cl:
            model.to(memory_format=torch.channels_last)
        return ImageFeatureModel(model, pre.mean, pre.std, layer, pooling, use_cl)
    if spec.modality == "text":
        if pooling == "auto":
            pooling = spec.preprocessing.pooling
        return TextFeatureModel(model, pooling, layer)
    return TabularFeatureModel(model, layer, pooling)


_COMPILED: OrderedDict = OrderedDict()
MAX_COMPILED = 4


def compiled_feature_model(
    loaded: LoadedBackbone, device: torch.device, layer, pooling: str, options: dict
) -> nn.Module:
    """``torch.compile`` of the feature model, built once per process and settings.

    Up to ``MAX_COMPILED`` compiled models are kept (least recently used out), so
    the folds and grid points of a search compile once.
    """
    key = (
        id(loaded.model),
        str(device),
        repr(layer),
        pooling,
        repr(sorted(options.items())),
    )
    with _LOCK:
        if key in _COMPILED:
            _COMPILED.move_to_end(key)
            return _COMPILED[key]
    features = build_feature_model(
        loaded, model_on_device(loaded, device), layer, pooling
    ).to(device)
    compiled = torch.compile(features, **options)
    with _LOCK:
        _COMPILED[key] = compiled
        while len(_COMPILED) > MAX_COMPILED:
            _COMPILED.popitem(last=False)
    return compiled


def feature_width(
    features: nn.Module, loaded: LoadedBackbone, n_features_in: int | None = None
) -> int:
    """Output width of ``features``, from one tiny forward pass on the CPU.

    The module's train/eval mode and the global RNG are left as they were.
    """
    spec = loaded.spec
    if spec.modality == "image":
        size = spec.preprocessing.size
        inputs = (torch.zeros((1, 3, size, size), dtype=torch.uint8),)
        kwargs = {}
    elif spec.modality == "text":
        enc = loaded.tokenizer(["probe"], return_tensors="pt")
        inputs = ()
        kwargs = {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
        }
    else:
        inputs = (torch.zeros((1, int(n_features_in)), dtype=torch.float32),)
        kwargs = {}
    was_training = features.training
    features.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            out = features(*inputs, **kwargs)
    finally:
        features.train(was_training)
    return int(out.shape[-1])


class Embedder:
    """Run one feature module over samples, in batches.

    Parameters
    ----------
    loaded : LoadedBackbone
    feature_model : nn.Module
        From :func:`build_feature_model`, already on ``device``.
    device : torch.device
    dtype : torch.dtype or None
        Autocast dtype (None for fp32).
    batch_size : AutoBatchSize
    num_workers : int
        Threads decoding images (0: decode in the calling thread).
    max_length : int
        Token limit for texts.
    normalize : bool
        L2-normalise each output row.
    verbose : bool
        Show a tqdm progress bar.
    """

    def __init__(
        self,
        loaded: LoadedBackbone,
        feature_model: nn.Module,
        device: torch.device,
        dtype,
        batch_size: AutoBatchSize,
        num_workers: int = 0,
        max_length: int = 512,
        normalize: bool = False,
        verbose: bool = False,
    ):
        self.loaded = loaded
        self.model = feature_model
        self.device = device
        self.dtype = dtype
        self.sizer = batch_size
        self.num_workers = num_workers
        self.max_length = max_length
        self.normalize = normalize
        self.verbose = verbose

    # ------------------------------------------------------------ public
    def embed(
        self, samples: Samples, positions: Sequence[int], on_error: str = "raise"
    ) -> tuple[np.ndarray | None, dict[int, str]]:
        """Embed ``samples.values[p]`` for each ``p`` in ``positions``.

        Returns the ``(len(positions), n_features)`` float32 matrix (None if no
        row could be embedded) and ``{position: message}`` for failed rows
        (only when ``on_error != "raise"``).
        """
        modality = self.loaded.spec.modality
        with tqdm(
            total=len(positions),
            disable=not self.verbose,
            unit="text" if modality == "text" else "sample",
            desc=f"embedding with {self.loaded.spec.name}",
        ) as bar:
            self._bar = bar
            if modality == "image":
                return self._embed_images(samples, positions, on_error)
            if modality == "text":
                return self._embed_texts(samples, positions, on_error)
            return self._embed_rows(samples, positions)

    # ------------------------------------------------------------ forward
    def _forward(self, make_batch, n: int) -> np.ndarray:
        """Forward ``make_batch(lo, hi)`` over ``range(n)`` with OOM back-off."""

        def run(lo: int, hi: int) -> np.ndarray:
            batch = make_batch(lo, hi)
            with torch.inference_mode(), autocast(self.device, self.dtype):
                if isinstance(batch, dict):
                    feats = self.model(**batch)
                else:
                    feats = self.model(batch)
            feats = feats.float()
            if self.normalize:
                feats = torch.nn.functional.normalize(feats, dim=1)
            self._bar.update(hi - lo)
            return feats.cpu().numpy()

        return np.concatenate(self.sizer.map(run, n), axis=0)

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    # ------------------------------------------------------------ images
    def _prepared_batches(
        self, samples: Samples, positions: Sequence[int], on_error: str
    ) -> Iterator[tuple[np.ndarray | None, list[int], dict[int, str]]]:
        pre = self.loaded.spec.preprocessing
        size = max(1, self.sizer.size)
        chunks = [
            list(range(lo, min(lo + size, len(positions))))
            for lo in range(0, len(positions), size)
        ]

        def prepare(chunk: list[int]):
            arrays, ok, errors = [], [], {}
            for j in chunk:
                p = positions[j]
                try:
                    arrays.append(prepare_image(samples.values[p], samples.row(p), pre))
                    ok.append(j)
                except InputError as exc:
                    if on_error == "raise":
                        raise
                    errors[p] = str(exc)
            return (np.stack(arrays) if arrays else None), ok, errors

        if self.num_workers <= 0:
            yield from map(prepare, chunks)
            return
        with ThreadPoolExecutor(self.num_workers) as pool:
            pending: deque = deque()
            ahead = 2 * self.num_workers
            it = iter(chunks)
            for chunk in it:
                pending.append(pool.submit(prepare, chunk))
                if len(pending) >= ahead:
                    break
            while pending:
                result = pending.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(prepare, nxt))
                yield result

    def _embed_images(self, samples, positions, on_error):
        out = None
        errors: dict[int, str] = {}
        for batch, ok, errs in self._prepared_batches(samples, positions, on_error):
            errors.update(errs)
            self._bar.update(len(errs))
            if batch is None:
                continue
            tensor = torch.from_numpy(batch).permute(0, 3, 1, 2)  # NCHW view of NHWC
            feats = self._forward(
                lambda lo, hi, t=tensor: self._to_device(t[lo:hi]), len(ok)
            )
            if out is None:
                out = np.full((len(positions), feats.shape[1]), np.nan, np.float32)
            out[ok] = feats
        return out, errors

    # ------------------------------------------------------------ texts
    def _embed_texts(self, samples, positions, on_error):
        sub = Samples([samples.values[p] for p in positions], None)
        bad = check_texts(sub)
        errors = {}
        for j, msg in bad.items():
            p = positions[j]
            msg = msg.replace(f"row {j}:", f"{samples.row(p)}:", 1)
            if on_error == "raise":
                raise InputError(msg)
            errors[p] = msg
        self._bar.update(len(bad))
        valid = [j for j in range(len(positions)) if j not in bad]
        if not valid:
            return None, errors
        unique: dict[str, int] = {}
        inverse = np.array(
            [unique.setdefault(sub.values[j], len(unique)) for j in valid]
        )
        texts = list(unique)
        tok = self.loaded.tokenizer
        ids = tok(texts, truncation=True, max_length=self.max_length)["input_ids"]
        lengths = np.array([len(x) for x in ids])
        order = np.argsort(-lengths, kind="stable")  # longest first: OOM shows early
        pad_id = tok.pad_token_id or 0

        def make_batch(lo: int, hi: int) -> dict:
            idx = order[lo:hi]
            width = int(lengths[idx].max())
            input_ids = np.full((len(idx), width), pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for r, k in enumerate(idx):
                input_ids[r, : lengths[k]] = ids[k]
                mask[r, : lengths[k]] = 1
            return {
                "input_ids": self._to_device(torch.from_numpy(input_ids)),
                "attention_mask": self._to_device(torch.from_numpy(mask)),
            }

        self._bar.total = len(bad) + len(texts)
        feats_sorted = self._forward(make_batch, len(texts))
        feats = np.empty_like(feats_sorted)
        feats[order] = feats_sorted
        out = np.full((len(positions), feats.shape[1]), np.nan, np.float32)
        out[valid] = feats[inverse]
        return out, errors

    # ------------------------------------------------------------ tabular
    def _embed_rows(self, samples, positions):
        X = np.asarray(samples.values, dtype=np.float32)[list(positions)]
        tensor = torch.from_numpy(X)
        return self._forward(lambda lo, hi: self._to_device(tensor[lo:hi]), len(X)), {}
