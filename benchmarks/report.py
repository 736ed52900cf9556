"""Write the table of ``docs/performance.md`` from ``results/*.json``.

The text between the ``<!-- results -->`` and ``<!-- /results -->`` markers is
replaced; everything else in the page is kept.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

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
                "images/s from ~300 px JPEG files, extractor (default precision) / "
                "plain fp32 PyTorch loop (Lite0)",
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
        cos = t.get("min_cosine_vs_sentence_transformers_fp32", {})
        precision = t.get("default_precision", "fp32").replace("torch.", "")
        out += [
            (
                "texts/s, extractor (default, "
                f"{'bf16' if 'bfloat16' in precision else 'fp32'} here) / "
                "sentence-transformers fp32 `encode` (MiniLM)",
                f"{r['sktransfer_vs_sentence_transformers']:.2f}x ({tps['sktransfer']:.0f}"
                f" vs {tps['sentence_transformers_encode']:.0f} texts/s; min cosine "
                f"{cos.get('sktransfer', float('nan')):.4f})",
                ">= 1.5x, cosine >= 0.99"
                if "sktransfer_fp32_vs_sentence_transformers" in r
                else ">= 1.0x",
                m,
            ),
        ]
        onnx = "extractor (default) / sentence-transformers ONNX int8"
        if "sktransfer_vs_sentence_transformers_onnx_int8" in r:
            out += [
                (
                    onnx,
                    f"{r['sktransfer_vs_sentence_transformers_onnx_int8']:.2f}x "
                    f"({tps['sentence_transformers_onnx_int8']:.0f} texts/s; its min "
                    f"cosine {cos['sentence_transformers_onnx_int8']:.4f})",
                    ">= 1.0x",
                    m,
                )
            ]
        elif isinstance(t.get("sentence_transformers_onnx_int8"), str):
            out += [(onnx, t["sentence_transformers_onnx_int8"], ">= 1.0x", m)]
        if "sktransfer_fp32_vs_sentence_transformers" in r:
            out += [
                (
                    "extractor fp32 / sentence-transformers fp32",
                    f"{r['sktransfer_fp32_vs_sentence_transformers']:.2f}x "
                    f"({tps['sktransfer_fp32']:.0f} texts/s)",
                    "",
                    m,
                ),
            ]
        out += [
            (
                "extractor / skrub `TextEncoder(n_components=None)`",
                f"{r['sktransfer_vs_skrub']:.2f}x ({tps['skrub_TextEncoder']:.0f}"
                " texts/s)",
                "",
                m,
            ),
        ]
    p = _load("photos")
    if p:
        r, ips = p["ratios"], p["images_per_second"]
        close = p["reduced_vs_full_decode"]
        dec = p["decode_ms_per_file"]
        m = _machine(p["machine"])
        out += [
            (
                "12-MP JPEG photos/s, extractor (default) / plain PyTorch loop",
                f"{r['sktransfer_vs_plain_loop']:.2f}x ({ips['sktransfer_default']:.1f}"
                f" vs {ips['plain_pytorch_loop']:.1f} img/s)",
                ">= 3x",
                m,
            ),
            (
                "same, extractor in fp32 / plain loop",
                f"{r['sktransfer_fp32_vs_plain_loop']:.2f}x "
                f"({ips['sktransfer_fp32']:.1f} img/s)",
                "",
                m,
            ),
            (
                "same, extractor (default) / embetter `TimmEncoder`",
                f"{r['sktransfer_vs_embetter']:.2f}x "
                f"({ips['embetter_TimmEncoder']:.1f} img/s)",
                "",
                m,
            ),
            (
                "reduced vs. full-size decoding of 12-MP JPEGs (fp32)",
                f"{r['reduced_vs_full_decode_fp32']:.2f}x faster; decode "
                f"{dec['draft']:.0f} vs {dec['full_size']:.0f} ms/file; embeddings "
                f"min cosine {close['min_cosine']:.4f}",
                "close to full size",
                m,
            ),
        ]
    s = _load("streaming")
    if s:
        runs = [r for r in s["runs"] if r.get("mode", "transform") == "transform"]
        big, small = runs[-1], runs[0]
        out += [
            (
                f"peak memory growth, `transform` of {big['n']:,} files",
                f"{big['growth_MiB']:.0f} MiB (output {big['output_MiB']:.0f} MiB; "
                f"{small['n']:,} files: {small['growth_MiB']:.0f} MiB; all decoded "
                f"images would be {big['decoded_input_if_held_MiB']:.0f} MiB)",
                "not proportional to N",
                _machine(s["machine"]),
            ),
        ]
        files = [r for r in s["runs"] if r.get("mode") == "to_file"]
        if files:
            fb, fs = files[-1], files[0]
            out.append(
                (
                    f"peak memory growth, `transform_to_file` of {fb['n']:,} files",
                    f"{fb['growth_MiB']:.0f} MiB (writes {fb['output_MiB']:.0f} MiB; "
                    f"{fs['n']:,} files: {fs['growth_MiB']:.0f} MiB)",
                    "model + a few batches",
                    _machine(s["machine"]),
                )
            )
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
                "<= 1.10x",
                _machine(k["machine"]),
            )
        )
    c = _load("precision")
    if c:
        m = _machine(c["machine"])
        for row in c["rows"]:
            out.append(
                (
                    f"bf16 / fp32 on the CPU, frozen {row['backbone']}, {row['task']}",
                    f"{row['speedup_bf16']:.2f}x faster; accuracy "
                    f"{row['accuracy_bf16']:.3f} vs {row['accuracy_fp32']:.3f} "
                    f"(std {row['std_fp32']:.3f}); min cosine {row['min_cosine']:.4f}",
                    "accuracy within noise",
                    m,
                )
            )
    d = _load("dask")
    if d:
        sec = d["seconds"]
        out.append(
            (
                "Dask, 2 single-thread workers (MALLOC_TRIM_THRESHOLD_ unset) / in "
                "process with 2 threads",
                f"{d['ratios']['dask_vs_in_process']:.2f}x ({sec['dask_2_workers']:.1f}"
                f" s / {sec['in_process_2_threads']:.1f} s); scheduler "
                f"{d['scheduler_overhead_seconds_per_partition'] * 1e3:.1f} ms/partition",
                "<= 1.2x",
                _machine(d["machine"]),
            )
        )
        if "dask_default_malloc_trim_vs_in_process" in d["ratios"]:
            out.append(
                (
                    "Dask, same, with distributed's default MALLOC_TRIM_THRESHOLD_="
                    "65536 in the workers",
                    f"{d['ratios']['dask_default_malloc_trim_vs_in_process']:.2f}x",
                    "",
                    _machine(d["machine"]),
                )
            )
        if "dask_vs_two_processes" in d["ratios"]:
            r = d["ratios"]
            out.append(
                (
                    "Dask, 2 single-thread workers / 2 separate single-thread "
                    "processes (half the files each)",
                    f"{r['dask_vs_two_processes']:.2f}x (the two processes: "
                    f"{r['two_processes_vs_in_process']:.2f}x the one with 2 "
                    "threads)",
                    "<= 1.2x",
                    _machine(d["machine"]),
                )
            )
    n = _load("finite_check")
    if n:
        for name in ("efficientnet_lite0", "all-MiniLM-L6-v2"):
            r = n[name]
            out.append(
                (
                    f"NaN/inf check of every embedding batch, {name}",
                    f"{r['check_fraction'] * 100:.2f} % of a pass "
                    f"({r['check_seconds'] * 1e3:.1f} ms of {r['pass_seconds']:.1f} s); "
                    f"whole pass with / without {r['ratio_with_to_without']:.3f}x "
                    "(noise)",
                    "<= 2 %",
                    _machine(n["machine"]),
                )
            )
    ds = _load("domain_shift")
    if ds:
        m = _machine(ds["machine"])
        for pair, r in ds["pairs"].items():
            f = r["frozen"]
            choices = [k for k in f if k.startswith("chosen")]
            best = max(choices, key=lambda k: f[k]["mean"])
            out.append(
                (
                    f"Domain shift, {pair}: best label-free choice "
                    f"({best.removeprefix('chosen_by_').replace('_', ' ')}) / "
                    "source-only / in-domain (target accuracy)",
                    f"{f[best]['mean']:.3f} / {f['source_only']['mean']:.3f} / "
                    f"{f['in_domain']['mean']:.3f} (recovers "
                    f"{r['recovery'][best]:.0%} of the gap)",
                    ">= 50 % of the gap",
                    m,
                )
            )
        ft = ds["pairs"].get("wordnet", {}).get("finetune")
        if ft:
            per_epoch = ", ".join(
                f"{k} {v['epoch_cost_vs_source_only']:.2f}x"
                for k, v in ft.items()
                if k not in ("setup", "source_only")
            )
            per_row = ", ".join(
                f"{v['row_cost_vs_source_only']:.2f}x"
                for k, v in ft.items()
                if k not in ("setup", "source_only")
            )
            out.append(
                (
                    "Adapting while fine-tuning MiniLM, s/epoch vs. source-only",
                    f"{per_epoch} (per row {per_row})",
                    "<= 1.5x",
                    _machine(ft["setup"]["machine"]) if "machine" in ft["setup"] else m,
                )
            )
    fs = _load("fewshot")
    if fs:
        for task, result in fewshot_tasks(fs).items():
            for key, cell in result["rows"].items():
                if not key.startswith("n") or "setfit" not in cell:
                    continue
                a, b = cell["fewshot"], cell["setfit"]
                out.append(
                    (
                        f"FewShotClassifier vs. SetFit, {TASK_TITLES.get(task, task)}, "
                        f"{key[1:]} per class ({cell['seeds']} seed(s))",
                        f"accuracy {a['accuracy_mean']:.3f} vs. "
                        f"{b['accuracy_mean']:.3f}; train seconds "
                        f"{cell['fewshot_seconds_vs_setfit']:.2f}x",
                        ">= SetFit at <= 0.5x",
                        # each task keeps the machine it was measured on
                        _machine(
                            cell.get("machine", result.get("machine", fs["machine"]))
                        ),
                    )
                )
    out += class_name_rows(_load("class_names"))
    fd = _load("finetune_defaults")

    def _own_seeds(row: dict, result: dict) -> str:
        """'(5 seeds, +- 0.008; Intel Xeon, 2026-12-03)' for a row run apart
        from the others."""
        if (
            len(row.get("seeds", result.get("seeds", [0])))
            == len(result.get("seeds", [0]))
            and row.get("machine", result["machine"]) == result["machine"]
        ):
            return ""
        std = float(np.std(row["accuracies"]))
        where = row.get("machine", result["machine"])["cpu"]
        return f" ({len(row['seeds'])} seeds, +- {std:.3f}; {where}, {row.get('date', '')})"

    def _cv_run(row: dict, cv: dict) -> str:
        """' (3 seeds x 3 folds, +- 0.012)', and the machine where it differs."""
        seeds = row.get("seeds", [0])
        parts = []
        if len(seeds) > 1:
            parts.append(f"{len(seeds)} seeds x 3 folds, +- {row['std']:.3f}")
        where = row.get("machine", cv["machine"])
        if where != cv["machine"] or row.get("date", cv["date"]) != cv["date"]:
            parts.append(f"{where['cpu']}, {row.get('date', '')}")
        return f" ({'; '.join(parts)})" if parts else ""

    if fd:
        r = fd["rows"]
        seeds = len(fd.get("seeds", [0]))
        names = {
            "defaults": "defaults",
            "lp_ft": "LP-FT start (the earlier defaults)",
            "old_defaults": "old defaults",
            "old_defaults_on_90": "old defaults on the defaults' 90 % of the rows",
            "probe_no_valid": "LP-FT without validation",
            "random_valid": "random head + validation",
            "refit": "defaults + refit on every row (2 fits)",
            "plain_loop": "plain PyTorch loop",
        }
        out.append(
            (
                "Fine-tuning defaults, WordNet nouns 26-way (MiniLM, full, 3 "
                f"epochs): test accuracy, mean of {seeds} seed(s) unless said",
                "; ".join(
                    f"{label} {r[k]['accuracy']:.3f}{_own_seeds(r[k], fd)}"
                    for k, label in names.items()
                    if k in r
                ),
                ">= 0.80",
                _machine(fd["machine"]),
            )
        )
        cv = fd.get("cv")
        if cv:
            out.append(
                (
                    "Fine-tuning defaults, same cells, 3-fold CV on the 3,000 "
                    "training definitions (what the default was chosen on)",
                    "; ".join(
                        f"{label} {cv['rows'][k]['mean']:.3f}{_cv_run(cv['rows'][k], cv)}"
                        for k, label in names.items()
                        if k in cv["rows"]
                    ),
                    "",
                    f"{_machine(cv['machine'])}, {cv['date']}",
                )
            )
    dc = _load("disk_cache")
    if dc:
        m = _machine(dc["machine"])
        targets = {"test-cnn": "<= 1.15x", "efficientnet_lite0": "<= 1.05x"}
        for name, r in dc["rows"].items():
            q = r["ratio_to_uncached"]
            paired = r.get("median_paired_ratio")
            rounds = len(r["all_seconds"]["uncached"])
            also = (
                f"; median of {rounds} paired rounds {paired['cold_interval']:.2f}x"
                if paired
                else ""
            )
            ci = (r.get("median_paired_ratio_ci") or {}).get("cold_interval")
            if ci:
                also += f" (95 % CI {ci[0]:.2f}-{ci[1]:.2f})"
            out.append(
                (
                    f"Disk cache first pass / no cache, {name}, {r['n']} arrays, "
                    f"batch {r['batch_size']}",
                    f"{q['cold_interval']:.2f}x fastest/fastest{also} "
                    f"(durability='batch': {q['cold_batch']:.2f}x; "
                    f"warm {q['warm']:.2f}x)",
                    targets.get(name, ""),
                    m,
                )
            )
        share = dc["sigkill_kept_share"]
        out.append(
            (
                "Disk cache, SIGKILL at 35 % of the uncached run: rows kept / rows "
                "the uncached run had finished (3 kills)",
                f"median {share['median']:.2f}, min {share['min']:.2f}",
                ">= 0.25",
                m,
            )
        )
    ex = _load("export")
    if ex:
        m = _machine(ex["machine"])
        for task, r in ex["rows"].items():
            o, sp = r["onnx"], r["speedup_vs_torch_fp32"]
            out.append(
                (
                    f"ONNX export, {task}: onnxruntime vs. the fp32 torch path",
                    f"max abs diff {o['embeddings_max_abs_diff']:.1e}, labels "
                    f"{'identical' if o.get('labels_equal') else 'DIFFER'}; "
                    f"{sp['onnx_with_preprocessing']:.2f}x the torch fp32 "
                    "throughput (batch 32)",
                    "<= 1e-4, identical labels",
                    m,
                )
            )
    ts = _load("training_step")
    if ts:
        m = _machine(ts["machine"])
        for rows, g in ts["group_by_length"].items():
            out.append(
                (
                    "MiniLM forward + backward, random batch of "
                    f"{rows.removeprefix('rows')} Rotten Tomatoes snippets: one "
                    "padded batch / length groups",
                    f"{g['speedup_median']:.2f}x (95 % CI {g['speedup_ci95'][0]:.2f}-"
                    f"{g['speedup_ci95'][1]:.2f}; {g['whole_batch_ms_median']:.0f} "
                    f"vs. {g['grouped_ms_median']:.0f} ms; padded tokens "
                    f"{g['padded_over_real_tokens_mean']:.2f}x the real ones)",
                    "",
                    m,
                )
            )
        a = ts["fused_adamw"]
        out.append(
            (
                f"AdamW step over MiniLM's {a['parameters'] / 1e6:.1f}M parameters: "
                "foreach / fused",
                f"{a['speedup_median']:.2f}x (95 % CI {a['speedup_ci95'][0]:.2f}-"
                f"{a['speedup_ci95'][1]:.2f}; {a['foreach_ms_median']:.0f} vs. "
                f"{a['fused_ms_median']:.0f} ms)",
                "",
                m,
            )
        )
    return out


EXPORT_GUIDE = HERE.parent / "docs" / "guide" / "deploy.md"
EX_START, EX_END = "<!-- export -->", "<!-- /export -->"
_TASKS = {
    "lfw_efficientnet_lite0_lr": "LFW, EfficientNet-Lite0 + LR",
    "digits_efficientnet_lite0_lr": "digits, EfficientNet-Lite0 + LR",
    "rotten_tomatoes_minilm_lr": "Rotten Tomatoes, MiniLM + LR",
    "rotten_tomatoes_minilm_finetuned": "Rotten Tomatoes, fine-tuned MiniLM",
}


def export_tables(data) -> str:
    rows = data["rows"]
    mb = 1 / 2**20
    out = [
        "| task | test | `save` file | new process, bitwise | ONNX file | max abs "
        "diff embeddings / probabilities | labels identical (fp32 / default) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, r in rows.items():
        o = r["onnx"]
        out.append(
            f"| {_TASKS.get(key, key)} | {r['n_test']} | "
            f"{r['save']['file_bytes'] * mb:.2f} MB | "
            f"{'yes' if r['save']['new_process_bitwise_equal'] else 'NO'} | "
            f"{o['file_bytes'] * mb:.1f} MB | {o['embeddings_max_abs_diff']:.1e} / "
            f"{o.get('probabilities_max_abs_diff', float('nan')):.1e} | "
            f"{'yes' if o.get('labels_equal') else 'NO'} / "
            f"{'yes' if o.get('labels_equal_at_default_precision') else 'no'} |"
        )
    out += [
        "",
        "Throughput on the test samples (samples per second, batch size "
        f"{data['batch_size']}; onnxruntime {data['onnxruntime']}, CPU "
        "execution provider):",
        "",
        "| task | torch fp32 | torch, default precision | onnxruntime | onnxruntime, "
        "session only | int8 session only | int8: min / mean cosine to fp32, "
        "label agreement, file | int8 recommended (min cosine >= 0.99) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, r in rows.items():
        sps, q = r["samples_per_second"], r["int8"]
        default = sps.get("torch_default_precision")
        cells = [
            _TASKS.get(key, key),
            f"{sps['torch_fp32']:.0f}",
            "-" if default is None else f"{default:.0f}",
            f"{sps['onnx_with_preprocessing']:.0f}",
            f"{sps['onnx_session_only']:.0f}",
        ]
        if "error" in q:
            cells += ["-", f"quantisation failed: {q['error'][:90]}", "no"]
        else:
            cells += [
                f"{sps['onnx_int8_session_only']:.0f}",
                f"{q['min_cosine_to_fp32']:.3f} / {q['mean_cosine_to_fp32']:.3f}, "
                f"{q['label_agreement_with_fp32']:.2f}, {q['file_bytes'] * mb:.1f} MB",
                "yes" if q["recommended"] else "no",
            ]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", f"Measured on {_machine(data['machine'])}, {data['date']} "
            "(`python benchmarks/bench_export.py`)."]  # fmt: skip
    return "\n".join(out)


def throughput_chart(path: Path) -> Path | None:
    """Bars of images/s and texts/s by method, from the results (matplotlib)."""
    panels = []
    p, i, t = _load("photos"), _load("images"), _load("text")
    if p:
        ips = p["images_per_second"]
        panels.append(
            (
                "12-MP JPEG photos, EfficientNet-Lite0 (images/s)",
                {
                    "sktransfer": ips["sktransfer_default"],
                    "sktransfer fp32": ips["sktransfer_fp32"],
                    "sktransfer full decode": ips["sktransfer_full_size_decode_fp32"],
                    "plain PyTorch loop": ips["plain_pytorch_loop"],
                    "embetter": ips["embetter_TimmEncoder"],
                },
            )
        )
    if i:
        lite = i["images_per_second"]["efficientnet_lite0"]
        panels.append(
            (
                "~300 px JPEGs, EfficientNet-Lite0 (images/s)",
                {
                    "sktransfer": lite["sktransfer"],
                    "plain PyTorch loop": lite["plain_pytorch_loop"],
                    "embetter": lite["embetter_TimmEncoder"],
                },
            )
        )
    if t:
        tps = t["texts_per_second"]
        labels = {
            "sktransfer": "sktransfer",
            "sktransfer_fp32": "sktransfer fp32",
            "sentence_transformers_encode": "sentence-transformers",
            "sentence_transformers_onnx_int8": "s-t ONNX int8",
            "skrub_TextEncoder": "skrub",
        }
        panels.append(
            (
                "Rotten Tomatoes snippets, MiniLM (texts/s)",
                {labels[k]: v for k, v in tps.items() if k in labels},
            )
        )
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.2 * len(panels)))
    for ax, (title, bars) in zip(np.atleast_1d(axes), panels, strict=True):
        names = list(bars)[::-1]
        values = [bars[n] for n in names]
        colours = [
            "tab:blue" if n.startswith("sktransfer") else "tab:grey" for n in names
        ]
        ax.barh(names, values, color=colours)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.0f}" if v >= 10 else f" {v:.1f}", va="center")
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, max(values) * 1.18)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


GUIDE = HERE.parent / "docs" / "guide" / "domain_shift.md"
DS_START, DS_END = "<!-- domain-shift -->", "<!-- /domain-shift -->"
DS_LABELS = {
    "source_only": "source only",
    "standardise": "`DomainStandardScaler`",
    "coral": "`CORAL()`",
    "standardise+coral": "`DomainStandardScaler` + `CORAL()`",
    "self_training": "`SelfTrainingClassifier` (threshold 0.9)",
    "standardise+self_training": "`DomainStandardScaler` + self-training",
    "standardise+self_training_k_best": "`DomainStandardScaler` + self-training "
    "(200 most confident a round)",
    "standardise+label_spreading": "`DomainStandardScaler` + "
    "`EncodedLabels(LabelSpreading(kernel='knn'))`",
    "chosen": "**chosen without target labels** (grid, IW scorer, refit rule)",
    "chosen_by_importance_weighted": "**chosen without target labels**: "
    "importance-weighted accuracy",
    "chosen_by_deep_embedded_validation": "**chosen without target labels**: "
    "deep embedded validation",
    "chosen_by_circular": "**chosen without target labels**: circular validation",
    "in_domain": "in-domain reference (target labels)",
}


def domain_shift_tables(data) -> str:
    """The guide's tables: per pair, diagnosis then every method."""
    out = []
    for pair, r in data["pairs"].items():
        d, c = r["diagnosis"], r["control_random_halves_of_source"]
        out += [
            f"**{pair}** ({r['backbone']}, {r['n_source']} source / "
            f"{r['n_target']} target samples): `domain_shift` says "
            f"*{d['verdict']}*, AUC {d['auc']:.3f} "
            f"({d['auc_interval'][0]:.3f}-{d['auc_interval'][1]:.3f}), MMD p = "
            f"{d['mmd_pvalue']:.3g}, {d['far_fraction']:.0%} of the target far from "
            f"every source class; on two random halves of the source: "
            f"*{c['verdict']}*, AUC {c['auc']:.3f}.",
            "",
            "| method | target accuracy (mean ± std, "
            f"{data['folds']} folds) | share of the gap recovered | fit seconds |",
            "| --- | --- | --- | --- |",
        ]
        for name, row in r["frozen"].items():
            rec = r["recovery"].get(name)
            rec = "" if rec is None else f"{rec:+.2f}"
            out.append(
                f"| {DS_LABELS.get(name, name)} | {row['mean']:.3f} ± {row['std']:.3f} "
                f"| {rec} | {row['seconds']:.1f} |"
            )
        for name, row in r["frozen"].items():
            if row.get("picks"):
                how = name.removeprefix("chosen_by_").replace("_", " ")
                out += ["", f"Chosen per fold by {how}: {', '.join(row['picks'])}."]
        ft = r.get("finetune")
        if ft:
            setup = ft["setup"]
            out += [
                "",
                f'Fine-tuning {r["backbone"]} (`strategy="full"`, 2 epochs, one '
                f"split: {setup['n_source']} source rows, {setup['n_target_pool']} "
                f"unlabelled target rows, {setup['n_test']} target rows scored"
                + (
                    f"; measured on {_machine(setup['machine'])}, {setup['date']}"
                    if "machine" in setup
                    else ""
                )
                + "):",
                "",
                "| adaptation | target accuracy | best epoch | s / epoch | "
                "x source-only per epoch | x per row |",
                "| --- | --- | --- | --- | --- | --- |",
            ]
            for name, row in ft.items():
                if name == "setup":
                    continue
                out.append(
                    f"| {name} | {row['accuracy']:.3f} | {row['best_epoch']} | "
                    f"{row['seconds_per_epoch']:.0f} | "
                    f"{row['epoch_cost_vs_source_only']:.2f} | "
                    f"{row['row_cost_vs_source_only']:.2f} |"
                )
        out.append("")
    m = data["machine"]
    out.append(f"Measured on {_machine(m)}, {data['date']}.")
    return "\n".join(out)


def write_domain_shift_tables() -> None:
    data = _load("domain_shift")
    if not data or not GUIDE.exists():
        return
    text = GUIDE.read_text(encoding="utf-8")
    head, rest = text.split(DS_START, 1)
    tail = rest.split(DS_END, 1)[1]
    GUIDE.write_text(
        head + DS_START + "\n" + domain_shift_tables(data) + "\n" + DS_END + tail,
        encoding="utf-8",
    )
    print(f"wrote {GUIDE}")


FEWSHOT_GUIDE = HERE.parent / "docs" / "guide" / "zeroshot.md"
FS_START, FS_END = "<!-- fewshot -->", "<!-- /fewshot -->"


TASK_TITLES = {
    "rotten_tomatoes": "Rotten Tomatoes",
    "wordnet_topics": "WordNet topics",
    "lfw_faces": "LFW faces vs. not",
    "digits": "8x8 digits",
}


def fewshot_tasks(data) -> dict:
    """``{task: {"rows": ..., "date": ...}}`` of ``fewshot.json`` (also of the
    one-task layout of earlier runs)."""
    if "tasks" in data:
        return data["tasks"]
    return {data["task"]: {"rows": data["rows"], "date": data["date"]}}


def fewshot_table(data) -> str:
    names = {"frozen_lr": "frozen MiniLM + LR", "fewshot": "`FewShotClassifier`",
             "setfit": "SetFit 1.2"}  # fmt: skip
    out = []
    for task, result in fewshot_tasks(data).items():
        rows = result["rows"]
        classes = result.get("class_names")
        zero = " / ".join(f'"{c}"' for c in classes) if classes else "class names"
        if classes and len(classes) > 3:
            zero = f"{len(classes)} class names"
        backbone = result.get("backbone", "all-MiniLM-L6-v2")
        out += [
            f"**{TASK_TITLES.get(task, task)}** ({backbone}, "
            f"{result.get('n_test', 1000):,} held out, measured "
            f"{result.get('date', data['date'])} on "
            f"{_machine(result.get('machine', data['machine']))}):",
            "",
            "| labelled per class | model | accuracy (mean ± std) | seeds | train s |",
            "| --- | --- | --- | --- | --- |",
        ]
        if "zero_shot" in rows:
            out.append(
                f"| 0 | `ZeroShotClassifier` ({zero}) | "
                f"{rows['zero_shot']['accuracy']:.3f} | - | 0 |"
            )
        for key in sorted(
            (k for k in rows if k.startswith("n")), key=lambda k: int(k[1:])
        ):
            cell = rows[key]
            for model, label in names.items():
                if model not in cell:
                    continue
                r = cell[model]
                if model == "frozen_lr" and backbone != "all-MiniLM-L6-v2":
                    label = f"frozen {backbone} + LR"
                seeds = str(cell["seeds"])
                if cell.get("date"):  # a row kept from an earlier run
                    seeds += f" (run {cell['date']}"
                    if cell.get("machine") and cell["machine"] != result.get(
                        "machine", data["machine"]
                    ):
                        seeds += f" on {cell['machine']['cpu']}"
                    seeds += ")"
                out.append(
                    f"| {key[1:]} | {label} | {r['accuracy_mean']:.3f} ± "
                    f"{r['accuracy_std']:.3f} | {seeds} | "
                    f"{r['train_seconds_mean']:.1f} |"
                )
            if "fewshot_seconds_vs_setfit" in cell:
                out.append(
                    f"| {key[1:]} | *`FewShotClassifier` seconds / SetFit's* | "
                    f"{cell['fewshot_seconds_vs_setfit']:.2f}x | | |"
                )
        out.append("")
    return "\n".join(out)


def write_between(page: Path, start: str, end: str, body: str) -> None:
    text = page.read_text(encoding="utf-8")
    head, rest = text.split(start, 1)
    page.write_text(
        head + start + "\n" + body + "\n" + end + rest.split(end, 1)[1],
        encoding="utf-8",
    )
    print(f"wrote {page}")


def fewshot_figure(data, path: Path) -> None:
    """Accuracy against labelled samples per class, one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = fewshot_tasks(data)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.0 * len(tasks), 3.6),
                             layout="constrained", squeeze=False)  # fmt: skip
    for ax, (task, result) in zip(axes[0], tasks.items(), strict=True):
        rows = result["rows"]
        ns = sorted(int(k[1:]) for k in rows if k.startswith("n"))
        for model, label in (("frozen_lr", "frozen + LR"),
                             ("fewshot", "FewShotClassifier"), ("setfit", "SetFit")):  # fmt: skip
            if model not in rows[f"n{ns[0]}"]:
                continue
            mean = [rows[f"n{n}"][model]["accuracy_mean"] for n in ns]
            std = [rows[f"n{n}"][model]["accuracy_std"] for n in ns]
            ax.errorbar(ns, mean, yerr=std, marker="o", capsize=3, label=label)
        if "zero_shot" in rows:
            ax.axhline(rows["zero_shot"]["accuracy"], color="k", ls="--", lw=1,
                       label="zero-shot (no label)")  # fmt: skip
        ax.set_xscale("log")
        ax.minorticks_off()
        backbone = result.get("backbone", "all-MiniLM-L6-v2")
        ax.set(xticks=ns, xticklabels=[str(n) for n in ns],
               xlabel="labelled samples per class", ylabel="accuracy (held out)",
               title=f"{TASK_TITLES.get(task, task)}, {backbone}")  # fmt: skip
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def class_name_rows(cn: dict | None) -> list:
    """Rows of ``bench_class_names.py``: each class-name prior beside the
    same estimator's defaults, per task (accuracy mean +- std, seconds)."""
    if not cn:
        return []
    pairs = (
        ("FewShotClassifier", "fewshot", "fewshot_class_texts", "class_texts=True"),
        ("FineTunedClassifier", "finetuned", "finetuned_class_names",
         'head_init="class_names"'),
    )  # fmt: skip
    out = []
    for task, result in cn["tasks"].items():
        cells = result["cells"]
        for est, base, prior, option in pairs:
            a, b = cells[base], cells[prior]
            out.append(
                (
                    f"{est} `{option}` vs. its defaults, {TASK_TITLES.get(task, task)}, "
                    f"{result['n_per_class']} per class ({b['seeds']} seed(s))",
                    f"accuracy {b['accuracy_mean']:.3f} +- {b['accuracy_std']:.3f} vs. "
                    f"{a['accuracy_mean']:.3f} +- {a['accuracy_std']:.3f}; train "
                    f"seconds {b['train_seconds_mean'] / a['train_seconds_mean']:.2f}x",
                    "",
                    _machine(cn["machine"]),
                )
            )
    return out


def main():
    fs = _load("fewshot")
    if fs:
        write_between(FEWSHOT_GUIDE, FS_START, FS_END, fewshot_table(fs))
        fewshot_figure(fs, DOC.parent / "img" / "fewshot.png")
    write_domain_shift_tables()
    ex = _load("export")
    if ex:
        write_between(EXPORT_GUIDE, EX_START, EX_END, export_tables(ex))
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
    chart = throughput_chart(DOC.parent / "img" / "throughput.png")
    if chart is not None:
        print(f"wrote {chart}")


if __name__ == "__main__":
    main()
