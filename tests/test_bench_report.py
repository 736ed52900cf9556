"""benchmarks/report.py renders the results JSON into docs/performance.md."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _report(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "bench_report", ROOT / "benchmarks" / "report.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    (tmp_path / "results").mkdir()
    monkeypatch.setattr(mod, "HERE", tmp_path)
    monkeypatch.setattr(mod, "DOC", tmp_path / "performance.md")
    return mod


def test_table_between_markers_from_json(tmp_path, monkeypatch):
    mod = _report(tmp_path, monkeypatch)
    machine = {"cpu": "Some CPU", "cores": 2, "torch": "2.14.1", "torch_threads": 2}
    (tmp_path / "results" / "gridsearch.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "seconds": {"sktransfer_default_cache": 6.0, "one_uncached_pass": 5.0},
                "ratio_to_one_pass": {
                    "sktransfer_default_cache": 1.2,
                    "no_cache": 21.3,
                    "pipeline_memory": 9.1,
                },
            }
        )
    )
    doc = tmp_path / "performance.md"
    doc.write_text(f"intro\n\n{mod.START}\nold table\n{mod.END}\n\nafter\n")
    mod.main()
    text = doc.read_text()
    assert text.startswith("intro") and text.rstrip().endswith("after")
    assert "old table" not in text
    assert "| 1.20x (6.0 s / 5.0 s) | <= 1.3x | Some CPU, 2 cores" in text
    assert "21.3x" in text and "9.1x" in text
    mod.main()  # idempotent: the markers are kept
    assert doc.read_text() == text


def test_committed_results_all_name_their_machine():
    for path in (ROOT / "benchmarks" / "results").glob("*.json"):
        data = json.loads(path.read_text())
        assert {"cpu", "cores", "torch"} <= set(data["machine"]), path.name


TEXTS_PER_SECOND = {
    "sktransfer": 600.0,
    "sktransfer_fp32": 450.0,
    "sentence_transformers_encode": 330.0,
    "sentence_transformers_onnx_int8": 620.0,
    "skrub_TextEncoder": 300.0,
}


def test_throughput_chart_draws_one_panel_per_result(tmp_path, monkeypatch):
    mod = _report(tmp_path, monkeypatch)
    machine = {"cpu": "Some CPU", "cores": 2, "torch": "2.14.1", "torch_threads": 2}
    tps = TEXTS_PER_SECOND
    (tmp_path / "results" / "text.json").write_text(
        json.dumps({"machine": machine, "texts_per_second": tps})
    )
    out = mod.throughput_chart(tmp_path / "img" / "chart.png")
    assert out.exists() and out.stat().st_size > 1000
    assert mod.throughput_chart.__doc__
    (tmp_path / "results" / "text.json").unlink()
    assert mod.throughput_chart(tmp_path / "img" / "none.png") is None


def _cell(models, seeds=5, ratio=0.4):
    cell = {
        m: {"accuracy_mean": a, "accuracy_std": 0.01, "train_seconds_mean": s}
        for m, (a, s) in models.items()
    }
    cell["seeds"] = seeds
    if ratio is not None:
        cell["fewshot_seconds_vs_setfit"] = ratio
    return cell


def test_fewshot_tables_per_task_old_and_new_layouts(tmp_path, monkeypatch):
    mod = _report(tmp_path, monkeypatch)
    machine = {"cpu": "Some CPU", "cores": 2, "torch": "2.14.1", "torch_threads": 2}
    text_models = {
        "frozen_lr": (0.6, 0.1),
        "fewshot": (0.7, 3.0),
        "setfit": (0.65, 7.0),
    }
    new = {
        "machine": machine,
        "date": "2026-12-02",
        "tasks": {
            "wordnet_topics": {
                "backbone": "all-MiniLM-L6-v2",
                "class_names": ["animal", "food", "plant", "time"],
                "n_test": 1000,
                "date": "2026-12-02",
                "rows": {"zero_shot": {"accuracy": 0.55}, "n8": _cell(text_models)},
            },
            "lfw_faces": {
                "backbone": "efficientnet_lite0",
                "class_names": None,
                "n_test": 100,
                "machine": {**machine, "cpu": "Other CPU"},
                "rows": {
                    "n8": _cell(
                        {"frozen_lr": (0.8, 0.1), "fewshot": (0.9, 9.0)}, ratio=None
                    )
                },
            },
        },
    }
    table = mod.fewshot_table(new)
    assert "**WordNet topics** (all-MiniLM-L6-v2, 1,000 held out" in table
    assert "| 0 | `ZeroShotClassifier` (4 class names) | 0.550 |" in table
    assert "| 8 | SetFit 1.2 | 0.650 ± 0.010 | 5 | 7.0 |" in table
    assert "| 8 | frozen efficientnet_lite0 + LR | 0.800 ± 0.010 | 5 | 0.1 |" in table
    lfw = table.split("**LFW faces vs. not**")[1]
    # each task names the machine it was measured on (tasks are run separately)
    assert lfw.split("\n")[0].count("Other CPU") == 1
    assert "Other CPU" not in table.split("**LFW faces vs. not**")[0]
    assert "SetFit" not in lfw and "ZeroShot" not in lfw  # text-only models left out
    mod.fewshot_figure(new, tmp_path / "fs.png")
    assert (tmp_path / "fs.png").stat().st_size > 0
    old = {
        "machine": machine,
        "date": "2026-12-01",
        "task": "rotten_tomatoes",
        "rows": {"zero_shot": {"accuracy": 0.6}, "n8": _cell(text_models, 3)},
    }
    heading = (
        "**Rotten Tomatoes** (all-MiniLM-L6-v2, 1,000 held out, measured 2026-12-01 "
        "on Some CPU"
    )
    assert heading in mod.fewshot_table(old)
    (tmp_path / "results" / "fewshot.json").write_text(json.dumps(new))
    perf = {r[0]: r[1] for r in mod.rows() if "SetFit" in r[0]}
    assert perf == {
        "FewShotClassifier vs. SetFit, WordNet topics, 8 per class (5 seed(s))": (
            "accuracy 0.700 vs. 0.650; train seconds 0.40x"
        )
    }


def test_text_row_without_the_onnx_peer_says_it_was_not_run(tmp_path, monkeypatch):
    mod = _report(tmp_path, monkeypatch)
    machine = {"cpu": "Some CPU", "cores": 2, "torch": "2.14.1", "torch_threads": 2}
    tps = dict(TEXTS_PER_SECOND)
    del tps["sentence_transformers_onnx_int8"]
    ratios = {
        "sktransfer_vs_sentence_transformers": 1.82,
        "sktransfer_fp32_vs_sentence_transformers": 1.36,
        "sktransfer_vs_skrub": 2.0,
    }
    why = "not run: No module named 'optimum' (needs the onnx-peer extra)"
    (tmp_path / "results" / "text.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "texts_per_second": tps,
                "ratios": ratios,
                "default_precision": "torch.bfloat16",
                "min_cosine_vs_sentence_transformers_fp32": {"sktransfer": 0.9999},
                "sentence_transformers_onnx_int8": why,
            }
        )
    )
    rows = {r[0]: r for r in mod.rows()}
    onnx = rows["extractor (default) / sentence-transformers ONNX int8"]
    assert onnx[1] == why and onnx[2] == ">= 1.0x"
    first = next(r for r in rows.values() if r[0].startswith("texts/s, extractor"))
    assert first[1].startswith("1.82x") and first[2] == ">= 1.5x, cosine >= 0.99"
    assert rows["extractor fp32 / sentence-transformers fp32"][1].startswith("1.36x")
    mod.throughput_chart(tmp_path / "img" / "chart.png")  # no ONNX bar, no error


def test_class_name_priors_are_reported_beside_the_defaults(tmp_path, monkeypatch):
    mod = _report(tmp_path, monkeypatch)

    def cell(accs, secs):
        return {
            "accuracy_mean": sum(accs) / len(accs),
            "accuracy_std": 0.01,
            "train_seconds_mean": secs,
            "seeds": len(accs),
        }

    cells = {
        "fewshot": cell([0.80, 0.82], 40.0),
        "fewshot_class_texts": cell([0.84, 0.86], 50.0),
        "finetuned": cell([0.70, 0.72], 20.0),
        "finetuned_class_names": cell([0.60, 0.62], 10.0),
    }
    task = {"n_test": 1000, "n_per_class": 8, "cells": cells}
    machine = {"cpu": "Some CPU", "cores": 2, "torch": "2.14.1", "torch_threads": 2}
    rows = mod.class_name_rows({"machine": machine, "tasks": {"wordnet_topics": task}})
    assert [r[0] for r in rows] == [
        "FewShotClassifier `class_texts=True` vs. its defaults, WordNet topics, "
        "8 per class (2 seed(s))",
        'FineTunedClassifier `head_init="class_names"` vs. its defaults, WordNet '
        "topics, 8 per class (2 seed(s))",
    ]
    assert (
        rows[0][1] == "accuracy 0.850 +- 0.010 vs. 0.810 +- 0.010; train seconds 1.25x"
    )
    assert rows[1][1].startswith("accuracy 0.610") and rows[1][1].endswith("0.50x")
    assert mod.class_name_rows(None) == []
