"""Fine-tuning through accelerate: one CPU process, and two over gloo (torchrun)."""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

accelerate = pytest.importorskip("accelerate")

from accelerate import Accelerator  # noqa: E402

from sktransfer.finetune import (  # noqa: E402
    AcceleratedFineTunedClassifier,
    AcceleratedFineTunedRegressor,
)
from sktransfer.finetune._accelerate import FrozenCriterion  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def data(rng):
    X = rng.integers(0, 255, (24, 32, 32, 3), np.uint8)
    y = np.arange(24) % 2
    X[y == 1] //= 3
    return X, y


def make(**kw):
    kw.setdefault("accelerator", Accelerator(cpu=True))
    return AcceleratedFineTunedClassifier(
        "test-cnn",
        strategy="full",
        max_epochs=2,
        batch_size=4,
        valid_size=None,
        random_state=0,
        callbacks__print_log__sink=print,
        **kw,
    )


def test_one_process_trains_predicts_and_pickles(data):
    X, y = data
    clf = make().fit(X, y)
    assert clf.grad_scaler_ is None  # the accelerator owns loss scaling
    assert isinstance(clf.criterion_, FrozenCriterion)
    assert (clf.predict(X) == y).mean() > 0.6
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X))


# accelerate keeps one state per process (AcceleratorState / GradientState are
# shared by every Accelerator made in it), as one Accelerator per process is
# its design; settings other than the first Accelerator's are therefore
# checked in a fresh interpreter.
FRESH = r"""
import json, sys
import numpy as np, torch
from accelerate import Accelerator
from sktransfer.finetune import AcceleratedFineTunedClassifier
rng = np.random.default_rng(0)
X = rng.integers(0, 255, (24, 32, 32, 3), np.uint8); y = np.arange(24) % 2
acc = Accelerator(cpu=True, **json.loads(sys.argv[1]))
clf = AcceleratedFineTunedClassifier("test-cnn", strategy="full", max_epochs=2,
    batch_size=4, valid_size=None, random_state=0, accelerator=acc,
    callbacks__print_log__sink=print)
seen = []
def hook(module, args, out):  # every convolution's output dtype
    if isinstance(module, torch.nn.Conv2d):
        seen.append(str(out.dtype))
torch.nn.modules.module.register_module_forward_hook(hook)
clf.fit(X, y)
steps = max(int(s["step"]) for s in clf.optimizer_.state.values())
print(json.dumps({"steps": steps, "dtypes": sorted(set(seen))}))
"""


def _fresh(**settings) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", FRESH, json.dumps(settings)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_gradient_accumulation_steps_the_optimizer_half_as_often():
    # 24 samples / 4 per batch = 6 batches per epoch, 2 epochs
    assert _fresh()["steps"] == 12
    assert _fresh(gradient_accumulation_steps=2)["steps"] == 6


def test_bf16_mixed_precision_through_the_accelerator():
    assert _fresh()["dtypes"] == ["torch.float32"]
    # the accelerator's autocast ran the backbone in bf16
    assert "torch.bfloat16" in _fresh(mixed_precision="bf16")["dtypes"]


def test_regressor(data):
    X, y = data
    reg = AcceleratedFineTunedRegressor(
        "test-cnn",
        max_epochs=1,
        valid_size=None,
        random_state=0,
        accelerator=Accelerator(cpu=True),
        callbacks__print_log__sink=print,
    ).fit(X, y.astype(float))
    assert reg.predict(X).shape == (24,)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("extra", [[], ["--patience", "1", "--epochs", "5"]])
def test_two_processes_end_identical(tmp_path, extra):
    """torchrun, 2 CPU processes (gloo): same weights, same history, same stop."""
    args = extra or ["--epochs", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # One retry: torchrun on loopback failed once in CI for a reason its hidden
    # stderr did not show (a taken port is the usual one). A real bug fails
    # twice; a first failure is reported as a warning with its stderr.
    failures = []
    for _attempt in range(2):
        run = subprocess.run(
            _torchrun(_free_port(), tmp_path, args),
            capture_output=True,
            env=env,
            text=True,
            timeout=300,
        )
        if run.returncode == 0:
            break
        failures.append(f"exit {run.returncode}:\n{run.stderr[-3000:]}")
    assert run.returncode == 0, "torchrun failed twice:\n" + "\n---\n".join(failures)
    if failures:
        warnings.warn(f"torchrun failed once, then passed: {failures[0]}", stacklevel=1)
    _check_identical(tmp_path, extra)


def _torchrun(port: int, out, args) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(port),
        str(ROOT / "examples" / "finetune_accelerate.py"),
        "--cpu",
        "--synthetic",
        "48",
        "--backbone",
        "test-cnn",
        "--strategy",
        "full",
        "--batch-size",
        "8",
        "--out",
        str(out),
        *args,
    ]


def _check_identical(tmp_path, extra):
    w0, w1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert w0.keys() == w1.keys()
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world_size"] == 2
    assert r0["history"] == r1["history"]  # DistributedHistory + gathered scores
    assert r0["best_epoch"] == r1["best_epoch"]
    assert r0["start_scores"] == r1["start_scores"]
    # 36 training samples in 5 batches of 8, 3 per process (accelerate evens
    # them out), and 12 validation samples, 1 batch each: DistributedHistory
    # holds every process's batches, so both see all 8
    assert r0["batches_per_epoch"] == r1["batches_per_epoch"]
    assert r0["batches_per_epoch"][0] == 2 * 3 + 2 * 1
    if extra:  # early stopping stopped both processes at the same epoch
        assert len(r0["history"]) == len(r1["history"]) <= 5
