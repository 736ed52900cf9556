"""Write the table of ``docs/performance.md`` from ``results/*.json``.

The text between the ``<!-- results -->`` and ``<!-- /results -->`` markers is
replaced; everything else in the page is kept.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "performance.md"
START, END = "<!-- results -->", "<!-- /results -->"


def _load(name):
    path = HERE / "results" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _machine(m):
    where = m.get("gpu") or f"{m['cpu']}, {m['cores']} cores"
    return f"{where}, torch {m['torch']}, {m['torch_threads']} threads"


def rows():
    out = []
    g = _load("gridsearch")
    if g:
        r, s = g["ratio_to_one_pass"], g["seconds"]
        m = _machine(g["machine"])
        out += [
            (
                "GridSearchCV 5 folds x 4 C, default cache / one uncached pass",
                f"{r['sktransfer_default_cache']:.2f}x "
                f"({s['sktransfer_default_cache']:.1f} s / {s['one_uncached_pass']:.1f} s)",
                "<= 1.3x",
                m,
            ),
            (
                "same, no cache (what peers pay) / one pass",
                f"{r['no_cache']:.1f}x",
                "",
                m,
            ),
            (
                "same, `Pipeline(memory=...)` / one pass",
                f"{r['pipeline_memory']:.1f}x",
                "",
                m,
            ),
        ]
    i = _load("images")
    if i:
        r, ips = i["ratios"], i["images_per_second"]
        m = _machine(i["machine"])
        lite = ips["efficientnet_lite0"]
        out += [
            (
                "images/s from JPEG files, extractor / plain PyTorch loop (Lite0)",
                f"{r['sktransfer_vs_plain_loop']:.2f}x ({lite['sktransfer']:.1f} vs "
                f"{lite['plain_pytorch_loop']:.1f} img/s)",
                ">= 0.95x",
                m,
            ),
            (
                "extractor / embetter `TimmEncoder` (Lite0)",
                f"{r['sktransfer_vs_embetter']:.2f}x ({lite['embetter_TimmEncoder']:.1f}"
                " img/s)",
                "",
                m,
            ),
            (
                "extractor / img2vec (ResNet-18)",
                f"{r['sktransfer_vs_img2vec']:.2f}x ({ips['resnet18']['sktransfer']:.1f}"
                f" vs {ips['resnet18']['img2vec']:.1f} img/s)",
                "",
                m,
            ),
            (
                "channels_last / NCHW, Lite0 forward on a batch of 32",
                f"{r['channels_last_speedup_lite0_forward']:.2f}x",
                "2x claimed",
                m,
            ),
        ]
    t = _load("text")
    if t:
        r, tps = t["ratios"], t["texts_per_second"]
        m = _machine(t["machine"])
        out += [
            (
                "texts/s, extractor / sentence-transformers `encode` (MiniLM)",
                f"{r['sktransfer_vs_sentence_transformers']:.2f}x ({tps['sktransfer']:.0f}"
                f" vs {tps['sentence_transformers_encode']:.0f} texts/s)",
                ">= 1.0x",
                m,
            ),
            (
                "extractor / skrub `TextEncoder(n_components=None)`",
                f"{r['sktransfer_vs_skrub']:.2f}x ({tps['skrub_TextEncoder']:.0f}"
                " texts/s)",
                "",
                m,
            ),
        ]
    s = _load("streaming")
    if s:
        big = s["runs"][-1]
        small = s["runs"][0]
        out += [
            (
                f"peak memory growth embedding {big['n']:,} files",
                f"{big['growth_MiB']:.0f} MiB (output {big['output_MiB']:.0f} MiB; "
                f"{small['n']:,} files: {small['growth_MiB']:.0f} MiB; all decoded "
                f"images would be {big['decoded_input_if_held_MiB']:.0f} MiB)",
                "not proportional to N",
                _machine(s["machine"]),
            ),
        ]
    f = _load("finetune_overhead")
    if f:
        sec = f["seconds_per_epoch"]
        out += [
            (
                "fine-tuning s/epoch, FineTunedClassifier / plain PyTorch loop",
                f"{f['ratio_median']:.3f}x (median {sorted(sec['FineTunedClassifier'])[1]:.1f}"
                f" vs {sorted(sec['plain_pytorch_loop'])[1]:.1f} s)",
                "<= 1.10x",
                _machine(f["machine"]),
            ),
        ]
    k = _load("ranking")
    if k:
        s = k["seconds"]
        out.append(
            (
                "rank_backbones, 4 candidates / their 4 uncached passes",
                f"{k['ratio']:.3f}x ({s['rank_backbones']:.1f} s / "
                f"{sum(s['uncached_passes']):.1f} s)",
                "<= 1.15x",
                _machine(k["machine"]),
            )
        )
    return out


def main():
    lines = [
        START,
        "",
        "| measure | result | target | machine |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows()]
    lines += ["", END]
    text = DOC.read_text(encoding="utf-8")
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        text = head + "\n".join(lines) + tail
    else:
        text = text.rstrip() + "\n\n" + "\n".join(lines) + "\n"
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
