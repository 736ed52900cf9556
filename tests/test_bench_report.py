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


def test_throughput_chart_draws_one_panel_per_result(tmp_path, monkeypatch):
    mod = _report(tmp_path, monkeypatch)
    machine = {"cpu": "Some CPU", "cores": 2, "torch": "2.14.1", "torch_threads": 2}
    tps = {
        "sktransfer": 600.0,
        "sktransfer_fp32": 450.0,
        "sentence_transformers_encode": 330.0,
        "sentence_transformers_onnx_int8": 620.0,
        "skrub_TextEncoder": 300.0,
    }
    (tmp_path / "results" / "text.json").write_text(
        json.dumps({"machine": machine, "texts_per_second": tps})
    )
    out = mod.throughput_chart(tmp_path / "img" / "chart.png")
    assert out.exists() and out.stat().st_size > 1000
    assert mod.throughput_chart.__doc__
    (tmp_path / "results" / "text.json").unlink()
    assert mod.throughput_chart(tmp_path / "img" / "none.png") is None
