"""Saving and exporting the demo models: agreement, throughput and file sizes.

For each demo task (LFW faces and digits through EfficientNet-Lite0 + logistic
regression, Rotten Tomatoes through all-MiniLM-L6-v2 + logistic regression, and
a MiniLM ``FineTunedClassifier`` fine-tuned one epoch on Rotten Tomatoes):

- ``sktransfer.save`` / ``load`` in a new CPU-only process: are the predicted
  probabilities bitwise identical to the saved model's? File size.
- ``sktransfer.to_onnx(check=X_test)``: the largest absolute difference of
  the embeddings and probabilities between onnxruntime and the torch path in
  float32, and whether the labels are identical (also against the model at its
  default precision: bf16 on a CPU with native bf16).
- Throughput on the test samples, batch size 32, one run each on this machine:
  our torch path (``transform`` without cache, in fp32 and at the default
  precision) against onnxruntime (same preprocessing, then the session);
  ``onnx_session_only`` times the session on the prepared inputs.
- An int8 variant (onnxruntime's dynamic quantisation of the weights): its
  minimum cosine to the fp32 embeddings, label agreement, speed and size. It
  is recommended only where the minimum cosine is at least 0.99.

``python benchmarks/bench_export.py`` (about 6 minutes on 2 CPU cores).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import QUICK, machine, write_result
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

import sktransfer
from sktransfer import FineTunedClassifier, PretrainedFeatureExtractor
from sktransfer._demo import load_digits_images, load_lfw, load_rotten_tomatoes

BATCH = 32


def tasks():
    X, y = load_lfw()
    lfw = train_test_split(list(X), y, test_size=0.25, random_state=0, stratify=y)
    X, y = load_digits_images()
    n = 300 if QUICK else 1000
    digits = train_test_split(
        list(X[:n]), y[:n], test_size=0.3, random_state=0, stratify=y[:n]
    )
    texts, labels = load_rotten_tomatoes()
    n = 300 if QUICK else 1500
    rt = train_test_split(texts[:n], labels[:n], test_size=1 / 3, random_state=0)
    pipe = lambda name: make_pipeline(  # noqa: E731
        PretrainedFeatureExtractor(backbone=name, batch_size=BATCH, cache=None),
        LogisticRegression(max_iter=2000),
    )
    ft = FineTunedClassifier(
        backbone="all-MiniLM-L6-v2", max_epochs=1, batch_size=BATCH, random_state=0
    )
    return {
        "lfw_efficientnet_lite0_lr": (pipe("efficientnet_lite0"), lfw),
        "digits_efficientnet_lite0_lr": (pipe("efficientnet_lite0"), digits),
        "rotten_tomatoes_minilm_lr": (pipe("all-MiniLM-L6-v2"), rt),
        "rotten_tomatoes_minilm_finetuned": (
            ft,
            (rt[0][:400], rt[1], rt[2][:400], rt[3]),
        ),
    }


def new_process_proba(path: Path, X) -> np.ndarray:
    folder = Path(tempfile.mkdtemp())
    if isinstance(X[0], str):
        (folder / "X.json").write_text(json.dumps(list(X)))
        read = f"json.loads(open({str(folder / 'X.json')!r}).read())"
    else:
        np.save(folder / "X.npy", np.stack(X))
        read = f"list(np.load({str(folder / 'X.npy')!r}))"
    code = (
        "import json, numpy as np, sktransfer, warnings;"
        "warnings.simplefilter('ignore');"
        f"m = sktransfer.load({str(path)!r}); X = {read};"
        f"np.save({str(folder / 'p.npy')!r}, m.predict_proba(X))"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return np.load(folder / "p.npy")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_batches(session, feed: dict) -> list:
    n = len(next(iter(feed.values())))
    out = []
    for lo in range(0, n, BATCH):
        chunk = {k: v[lo : lo + BATCH] for k, v in feed.items()}
        if "attention_mask" in chunk:  # trim the padding of this batch
            width = int(chunk["attention_mask"].sum(1).max())
            chunk = {k: v[:, :width] for k, v in chunk.items()}
        out.append(session.run(["embeddings"], chunk)[0])
    return out


def sorted_feed(feed: dict) -> dict:
    """Texts sorted by length, as our torch path batches them."""
    if "attention_mask" not in feed:
        return feed
    order = np.argsort(feed["attention_mask"].sum(1), kind="stable")
    return {k: v[order] for k, v in feed.items()}


def int8_variant(export, session, feed, times) -> dict:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    q_path = export.path.with_name("model.int8.onnx")
    quantize_dynamic(str(export.path), str(q_path), weight_type=QuantType.QInt8)
    q_session = ort.InferenceSession(str(q_path), providers=["CPUExecutionProvider"])
    times["onnx_int8_session_only"] = timed(lambda: run_batches(q_session, feed))
    fp32 = np.concatenate(run_batches(session, feed))
    int8 = np.concatenate(run_batches(q_session, feed))
    cos = (fp32 * int8).sum(1) / (
        np.linalg.norm(fp32, axis=1) * np.linalg.norm(int8, axis=1)
    )
    labels32 = session.run(["label"], feed)[0]
    labels8 = q_session.run(["label"], feed)[0]
    return {
        "file_bytes": q_path.stat().st_size,
        "min_cosine_to_fp32": float(cos.min()),
        "mean_cosine_to_fp32": float(cos.mean()),
        "label_agreement_with_fp32": float((labels32 == labels8).mean()),
        "recommended": bool(cos.min() >= 0.99),
    }


def measure(model, X_train, X_test, y_train) -> dict:
    """One task: fit, save / load in a new process, export, time, int8."""
    fit_s = timed(lambda: model.fit(X_train, y_train))
    folder = Path(tempfile.mkdtemp())
    row = {"n_train": len(X_train), "n_test": len(X_test), "fit_seconds": fit_s}
    # save / load in a new process
    saved = sktransfer.save(model, folder / "model.skt")
    proba = model.predict_proba(X_test)
    row["save"] = {
        "file_bytes": saved.stat().st_size,
        "new_process_bitwise_equal": bool(
            np.array_equal(new_process_proba(saved, X_test), proba)
        ),
    }
    # ONNX
    start = time.perf_counter()
    export = sktransfer.to_onnx(model, folder / "onnx", check=X_test)
    row["onnx"] = {
        "export_seconds": time.perf_counter() - start,
        "file_bytes": export.path.stat().st_size,
        **export.check,
    }
    # throughput, batch 32
    session = export.session()
    feed = sorted_feed(export.feed(X_test))
    times = {}
    if hasattr(model, "steps"):
        ext = model.steps[0][1]
        ext32 = copy.copy(ext)
        vars(ext32)["precision"] = "fp32"
        times["torch_default_precision"] = timed(lambda: ext.transform(X_test))
        times["torch_fp32"] = timed(lambda: ext32.transform(X_test))
    else:  # a fine-tuner predicts in fp32 on the CPU
        times["torch_fp32"] = timed(lambda: model.predict_proba(X_test))
    times["onnx_with_preprocessing"] = timed(
        lambda: run_batches(session, sorted_feed(export.feed(X_test)))
    )
    times["onnx_session_only"] = timed(lambda: run_batches(session, feed))
    # int8: onnxruntime's dynamic quantisation of the weights
    try:
        row["int8"] = int8_variant(export, session, feed, times)
    except Exception as exc:  # the quantiser's own failures are reported
        row["int8"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    row["seconds"] = times
    row["samples_per_second"] = {k: len(X_test) / v for k, v in times.items()}
    base = times["torch_fp32"]
    row["speedup_vs_torch_fp32"] = {k: base / v for k, v in times.items()}
    return row


def main():
    warnings.filterwarnings("ignore")
    import onnxruntime as ort

    rows = {}
    for name, (model, (X_train, X_test, y_train, _)) in tasks().items():
        print(f"== {name}", flush=True)
        rows[name] = measure(model, X_train, X_test, y_train)
        print(rows[name], flush=True)
    write_result(
        "export",
        {
            "machine": machine(),
            "batch_size": BATCH,
            "onnxruntime": ort.__version__,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
