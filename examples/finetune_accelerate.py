"""Fine-tune a backbone on N GPUs (or N CPU processes) with accelerate.

One process per GPU; accelerate prepares the model, optimizer and data loaders,
so each process trains on its share of every batch and the gradients are
averaged (DistributedDataParallel). skorch's ``DistributedHistory`` keeps the
histories of all processes in step, so early stopping stops them together.

On 4 GPUs, on a folder of images sorted into one sub-folder per class::

    accelerate launch --num_processes 4 examples/finetune_accelerate.py \\
        --images photos/ --backbone efficientnet_lite0 --epochs 10 \\
        --mixed-precision bf16 --out run/

On 2 CPU processes (gloo), on scikit-image's LFW faces (no download)::

    torchrun --nproc_per_node 2 examples/finetune_accelerate.py --cpu --out run/

Each process writes ``run/rank<k>.pt`` (its final weights) and
``run/rank<k>.json`` (its history), so the runs can be compared; the test
suite does exactly that (``tests/test_accelerate.py``).
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch


def load_images(folder: str | None):
    """(paths or arrays, labels): a class-per-sub-folder tree, or LFW faces."""
    if folder is None:
        from sktransfer._demo import load_lfw

        return load_lfw()
    root = Path(folder)
    paths, labels = [], []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(sub.iterdir()):
            if f.suffix.lower() in (".jpg", ".jpeg", ".png"):
                paths.append(str(f))
                labels.append(sub.name)
    return paths, np.array(labels)


def synthetic(n: int):
    """``n`` small images of three visibly different kinds (for quick tests)."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 255, (n, 32, 32, 3), np.uint8)
    y = np.arange(n) % 3
    X[y == 1] //= 3
    X[y == 2] = 255 - X[y == 2] // 4
    return X, y


def main(argv=None):
    from accelerate import Accelerator
    from skorch.history import DistributedHistory
    from torch.distributed import TCPStore

    from sktransfer.finetune import AcceleratedFineTunedClassifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", help="folder with one sub-folder per class")
    parser.add_argument("--synthetic", type=int, help="n synthetic images instead")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--strategy", default="last_n")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--mixed-precision", default="no", help="no, bf16 or fp16")
    parser.add_argument("--accumulate", type=int, default=1, help="gradient steps")
    parser.add_argument("--cpu", action="store_true", help="CPU processes (gloo)")
    parser.add_argument("--out", required=True, help="folder for weights/histories")
    args = parser.parse_args(argv)

    accelerator = Accelerator(
        cpu=args.cpu,
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.accumulate,
    )
    rank, world = accelerator.process_index, accelerator.num_processes
    # the histories' key-value store, beside the launcher's own rendezvous port
    store = TCPStore(
        os.environ.get("MASTER_ADDR", "127.0.0.1"),
        int(os.environ.get("MASTER_PORT", "29500")) + 1,
        world_size=world,
        is_master=rank == 0,
        timeout=timedelta(seconds=120),
    )
    history = DistributedHistory(store=store, rank=rank, world_size=world)
    X, y = synthetic(args.synthetic) if args.synthetic else load_images(args.images)

    clf = AcceleratedFineTunedClassifier(
        args.backbone,
        strategy=args.strategy,
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        patience=args.patience,
        valid_size=0.25,
        random_state=0,  # the same initialisation and split on every process
        accelerator=accelerator,
        history=history,
        iterator_train__shuffle=True,
    ).fit(X, y)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(clf.module_.state_dict(), out / f"rank{rank}.pt")
    rows = [
        {k: v for k, v in row.items() if k not in ("batches", "dur")}
        for row in clf.history
    ]
    record = {
        "rank": rank,
        "world_size": world,
        "history": rows,
        "batches_per_epoch": [len(row["batches"]) for row in clf.history],
        "best_epoch": clf.best_epoch_,
        "start_scores": clf.start_scores_,
        "optimizer_steps": _optimizer_steps(clf),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record, default=float))
    accelerator.print(f"trained on {world} process(es); results in {out}")


def _optimizer_steps(clf) -> int:
    """How many times the optimizer stepped (AdamW keeps a per-parameter count)."""
    states = [s for s in clf.optimizer_.state.values() if "step" in s]
    return int(max(float(s["step"]) for s in states)) if states else 0


if __name__ == "__main__":
    main()
