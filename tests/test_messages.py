"""Messages and output a user reads: devices, pipes, --help, progress bars,
unknown backbones (issue 17, item 6)."""

from __future__ import annotations

import functools
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from tqdm import tqdm

from sktransfer import FineTunedClassifier, PretrainedFeatureExtractor
from sktransfer.exceptions import BackboneNotFoundError


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize(
    "make",
    [
        lambda: PretrainedFeatureExtractor("test-cnn", device="cuda"),
        lambda: FineTunedClassifier("test-cnn", device="cuda", valid_size=None),
    ],
)
def test_cuda_without_a_gpu_says_the_same_for_every_estimator(make):
    X = np.zeros((4, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match=r"device='cuda', but CUDA is not available"):
        make().fit(X, [0, 1, 0, 1])


def test_unknown_backbone_names_the_shell_command_too():
    with pytest.raises(
        BackboneNotFoundError, match="`sktransfer backbones` in a shell"
    ):
        PretrainedFeatureExtractor("efficientnet_lit0").fit(["a"])


def test_output_into_a_closed_pipe_ends_quietly():
    """`sktransfer backbones | head`: the reader is gone before we write."""
    read, write = os.pipe()
    os.close(read)  # every write now fails with EPIPE
    proc = subprocess.run(
        [sys.executable, "-m", "sktransfer", "backbones"],
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    os.close(write)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
    assert proc.returncode == 141


@pytest.mark.parametrize("argv", [["--help"], ["embed", "--help"], ["demo", "--help"]])
def test_help_is_plain_text(argv):
    out = subprocess.run(
        [sys.executable, "-m", "sktransfer", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "``" not in out and ":func:" not in out
    assert "usage: sktransfer" in out


def test_progress_bar_draws_its_last_line_once(monkeypatch):
    """A bar that draws every step would draw the completing step and then
    close()'s final state: two lines in a log that shows carriage returns."""
    import sktransfer._embedder as embedder

    out = io.StringIO()
    eager = functools.partial(tqdm, file=out, mininterval=0, miniters=1)
    monkeypatch.setattr(embedder, "tqdm", eager)
    texts = [f"text {i}" for i in range(40)]
    PretrainedFeatureExtractor("test-text", verbose=True, batch_size=8).fit(
        texts
    ).transform(texts)
    lines = [line for line in out.getvalue().split("\r") if line.strip()]
    assert sum("100%" in line for line in lines) == 1
    assert len(lines) >= 5  # the bar did draw the steps before
