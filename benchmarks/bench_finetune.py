"""Seconds per epoch: FineTunedClassifier vs. a plain hand-written PyTorch loop.

Both do the same work: the same module (EfficientNet-Lite0, packaged weights,
last 2 blocks trainable, the default training augmentation, dropout + new head),
the same data (uint8 224x224 images decoded per item by the same function), the
same batch size, shuffling, AdamW parameter groups (backbone lr/10, fused
kernel) and loss, no
validation. The plain loop is what one writes without skorch: a DataLoader, a
loop over batches, zero_grad / forward / loss / backward / step. Epochs
alternate between the two so that the machine's noise hits both. Target: the
estimator's time per epoch <= 1.10x the plain loop's.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from _common import QUICK, machine, write_result
from torch import nn
from torch.utils.data import DataLoader

from sktransfer import FineTunedClassifier
from sktransfer._inputs import as_samples
from sktransfer.finetune._data import SampleDataset

N, BATCH, EPOCHS = (32, 16, 1) if QUICK else (128, 32, 3)


def main():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (N, 224, 224, 3), np.uint8)
    y = np.arange(N) % 4
    net = FineTunedClassifier(
        "efficientnet_lite0",
        strategy="last_n",
        max_epochs=1,
        batch_size=BATCH,
        valid_size=None,
        random_state=0,
    )
    net.fit(X[:BATCH], y[:BATCH])  # build + warm up; the next fits continue it
    net.set_params(warm_start=True)

    # the plain loop trains its own copy of the same initialised module
    module = copy.deepcopy(net.module_)
    opt = torch.optim.AdamW(
        [
            {
                "params": [
                    p for n, p in module.named_parameters() if n.startswith("backbone.")
                ],
                "lr": 1e-4,
            },
            {
                "params": [
                    p
                    for n, p in module.named_parameters()
                    if not n.startswith("backbone.")
                ],
                "lr": 1e-3,
            },
        ],
        weight_decay=0.01,
        fused=True,  # as the estimator's AdamW runs
    )
    loss_fn = nn.CrossEntropyLoss()
    data = SampleDataset(as_samples(X, "image"), y, net._load_backbone(), 512)
    loader = DataLoader(data, batch_size=BATCH, shuffle=True)

    def plain_epoch():
        module.train()
        for xb, yb in loader:
            opt.zero_grad()
            loss = loss_fn(module(xb), yb)
            loss.backward()
            opt.step()

    def skorch_epoch():
        net.fit(X, y)  # warm_start: one more epoch of the same net

    plain, ours = [], []
    for _ in range(EPOCHS):
        for fn, times in ((plain_epoch, plain), (skorch_epoch, ours)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    write_result(
        "finetune_overhead",
        {
            "machine": machine(),
            "work": f"{N} uint8 images 224x224, batch {BATCH}, efficientnet_lite0 "
            "last 2 blocks + head, augmentation on, AdamW, no validation",
            "seconds_per_epoch": {
                "FineTunedClassifier": ours,
                "plain_pytorch_loop": plain,
            },
            "ratio_median": float(np.median(ours) / np.median(plain)),
            "ratio_best": min(ours) / min(plain),
            "target": "ratio <= 1.10",
        },
    )


if __name__ == "__main__":
    main()
