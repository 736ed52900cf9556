"""The embedding loop: samples in, a float32 matrix out, in input order.

It knows nothing about scikit-learn, caches or how the feature module was built.
Images are decoded and resized in a thread pool (PIL releases the GIL) a few
batches ahead of the forward pass, so memory grows with the output, not with the
number of images; they travel to the device as uint8 and are normalised there.
Texts are deduplicated, sorted by token length and padded per batch. After each
forward batch, ``on_batch(positions, rows)`` is called, so a caller can persist
finished work as it finishes.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from sktransfer._images import prepare_image
from sktransfer._inputs import Samples, check_texts
from sktransfer._progress import advance
from sktransfer._runtime import AutoBatchSize, autocast
from sktransfer._text import pad_tokens, token_ids
from sktransfer.backbones._loaded import LoadedBackbone
from sktransfer.exceptions import InputError

__all__ = ["Embedder"]

OnBatch = Callable[[list[int], np.ndarray], None]


def _ignore(positions: list[int], rows: np.ndarray) -> None:
    return None


class Embedder:
    """Run one feature module over samples, in batches.

    Parameters
    ----------
    loaded : LoadedBackbone
    feature_model : nn.Module
        From :meth:`LoadedBackbone.feature_model`, already on ``device``.
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
        self._pool: ThreadPoolExecutor | None = None  # see workers()

    # ------------------------------------------------------------ public
    def progress(self, total: int):
        """A tqdm bar for ``total`` samples, drawn only when ``verbose``; pass it
        to several :meth:`embed` calls (growing its ``total``) to show one bar."""
        return tqdm(
            total=total,
            disable=not self.verbose,
            unit="text" if self.loaded.spec.modality == "text" else "sample",
            desc=f"embedding with {self.loaded.spec.name}",
        )

    @contextlib.contextmanager
    def workers(self):
        """One pool of image-preparing threads for every :meth:`embed` call
        inside the ``with`` block (an input embedded chunk by chunk starts its
        threads once, not once a chunk)."""
        if self.num_workers <= 0 or self._pool is not None:
            yield
            return
        with ThreadPoolExecutor(self.num_workers) as pool:
            self._pool = pool
            try:
                yield
            finally:
                self._pool = None

    def embed(
        self,
        samples: Samples,
        positions: Sequence[int],
        on_error: str = "raise",
        on_batch: OnBatch = _ignore,
        bar=None,
    ) -> tuple[np.ndarray | None, dict[int, str]]:
        """Embed ``samples.values[p]`` for each ``p`` in ``positions``.

        Returns the ``(len(positions), n_features)`` float32 matrix (None if no
        row could be embedded) and ``{position: message}`` for failed rows (only
        when ``on_error != "raise"``). ``on_batch(sample_positions, rows)`` is
        called after every forward batch with the positions (into ``samples``)
        it finished. ``bar``: a tqdm bar that the caller sized and owns (several
        calls then share it); by default each call draws its own.
        """
        modality = self.loaded.spec.modality
        self._samples, self._on_error, self._nonfinite = samples, on_error, {}
        own = bar is None
        if own:
            bar = self.progress(len(positions))
        try:
            self._bar = bar
            if modality == "image":
                out, errors = self._embed_images(samples, positions, on_error, on_batch)
            elif modality == "text":
                out, errors = self._embed_texts(samples, positions, on_error, on_batch)
            else:
                out, errors = self._embed_rows(samples, positions, on_batch)
        finally:
            if own:
                bar.close()
        errors.update(self._nonfinite)
        return out, errors

    def _check_finite(self, rows: np.ndarray, lo: int, where) -> np.ndarray:
        """Which rows of a forward batch are finite. NaN or inf rows (weights
        with NaN, an overflow in low precision) are an error naming their rows
        under ``on_error="raise"``, else reported failures; they are never
        cached. ``where(i)`` maps the forward index ``lo + j`` to the sample
        positions it stands for."""
        finite = np.isfinite(rows).all(axis=1)
        if finite.all():
            return finite
        positions = [p for j in np.flatnonzero(~finite) for p in where(lo + int(j))]
        names = ", ".join(self._samples.row(p) for p in positions[:5])
        more = f" and {len(positions) - 5} more" if len(positions) > 5 else ""
        why = (
            "the network's output is NaN or inf (weights with NaN/inf, or an "
            f"overflow in {str(self.dtype or 'float32').replace('torch.', '')}: "
            "try precision='fp32')"
        )
        if self._on_error == "raise":
            raise InputError(f"{names}{more}: {why}.")
        for p in positions:
            self._nonfinite[p] = f"{self._samples.row(p)}: {why}"
        return finite

    # ------------------------------------------------------------ forward
    def _forward(
        self, make_batch, n: int, where, done: Callable | None = None
    ) -> np.ndarray:
        """Forward ``make_batch(lo, hi)`` over ``range(n)`` with OOM back-off;
        ``done(lo, hi, rows, finite)`` after each batch (see
        :meth:`_check_finite` for ``where``)."""

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
            rows = feats.cpu().numpy()
            finite = self._check_finite(rows, lo, where)
            advance(self._bar, hi - lo)
            if done is not None:
                done(lo, hi, rows, finite)
            return rows

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
        with contextlib.ExitStack() as stack:
            pool = self._pool or stack.enter_context(
                ThreadPoolExecutor(self.num_workers)
            )
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

    def _embed_images(self, samples, positions, on_error, on_batch):
        out = None
        errors: dict[int, str] = {}
        for batch, ok, errs in self._prepared_batches(samples, positions, on_error):
            errors.update(errs)
            advance(self._bar, len(errs))
            if batch is None:
                continue
            tensor = torch.from_numpy(batch).permute(0, 3, 1, 2)  # NCHW view of NHWC

            def done(lo, hi, rows, finite, ok=ok):
                keep = np.flatnonzero(finite)
                on_batch([positions[ok[lo + j]] for j in keep], rows[keep])

            feats = self._forward(
                lambda lo, hi, t=tensor: self._to_device(t[lo:hi]),
                len(ok),
                lambda i, ok=ok: [positions[ok[i]]],
                done,
            )
            if out is None:
                out = np.full((len(positions), feats.shape[1]), np.nan, np.float32)
            out[ok] = feats
        return out, errors

    # ------------------------------------------------------------ texts
    def _embed_texts(self, samples, positions, on_error, on_batch):
        sub = Samples([samples.values[p] for p in positions], None)
        bad = check_texts(sub)
        errors = {}
        for j, msg in bad.items():
            p = positions[j]
            msg = msg.replace(f"row {j}:", f"{samples.row(p)}:", 1)
            if on_error == "raise":
                raise InputError(msg)
            errors[p] = msg
        advance(self._bar, len(bad))
        valid = [j for j in range(len(positions)) if j not in bad]
        if not valid:
            return None, errors
        unique: dict[str, int] = {}
        inverse = np.array(
            [unique.setdefault(sub.values[j], len(unique)) for j in valid]
        )
        members: list[list[int]] = [[] for _ in unique]  # sample positions per text
        for j, u in zip(valid, inverse, strict=True):
            members[u].append(positions[j])
        texts = list(unique)
        tok = self.loaded.tokenizer
        ids = token_ids(tok, texts, self.max_length)
        lengths = np.array([len(x) for x in ids])
        order = np.argsort(-lengths, kind="stable")  # longest first: OOM shows early

        def make_batch(lo: int, hi: int) -> dict:
            batch = pad_tokens([ids[k] for k in order[lo:hi]], tok.pad_token_id)
            return {k: self._to_device(v) for k, v in batch.items()}

        def done(lo, hi, rows, finite):
            done_positions, done_rows = [], []
            for r, k in enumerate(order[lo:hi]):
                if finite[r]:
                    done_positions += members[k]
                    done_rows += [r] * len(members[k])
            on_batch(done_positions, rows[done_rows])

        self._bar.total += len(bad) + len(texts) - len(positions)
        feats_sorted = self._forward(
            make_batch, len(texts), lambda i: members[order[i]], done
        )
        feats = np.empty_like(feats_sorted)
        feats[order] = feats_sorted
        out = np.full((len(positions), feats.shape[1]), np.nan, np.float32)
        out[valid] = feats[inverse]
        return out, errors

    # ------------------------------------------------------------ tabular
    def _embed_rows(self, samples, positions, on_batch):
        positions = list(positions)
        X = np.asarray(samples.values, dtype=np.float32)[positions]
        tensor = torch.from_numpy(X)

        def done(lo, hi, rows, finite):
            keep = np.flatnonzero(finite)
            on_batch([positions[lo + j] for j in keep], rows[keep])

        out = self._forward(
            lambda lo, hi: self._to_device(tensor[lo:hi]),
            len(X),
            lambda i: [positions[i]],
            done,
        )
        return out, {}
