"""Resuming a fine-tuning run from the last finished epoch (``checkpoint_dir=``).

After every epoch, one file in the user's checkpoint folder,
``resume-epoch<k>.pt``, holds everything the next epoch depends on: the
module's and the optimizer's state, the history, which parameters train (a
``gradual`` strategy or a ``Freezer`` changes that), LP-FT's start scores and
best epoch so far, and the random generators' states (dropout, augmentation,
shuffling). It is written under a temporary name and renamed, so a kill leaves
the previous epoch's file whole; the older file is removed after.

A new ``fit`` with the same folder loads the newest file and trains only the
epochs left to ``max_epochs``, with the same random streams, so a run killed
in epoch 4 of 6 and resumed ends where the uninterrupted run ends (up to float
rounding). The file is read with ``torch.load(weights_only=True)``.

skorch's ``LoadInitState`` is not used: it loads the best-``valid_loss``
checkpoint and then trains ``max_epochs`` more, which is neither where the run
stopped nor where it was going.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from skorch.callbacks import Callback
from skorch.history import History

__all__ = ["LoadResume", "SaveResume", "resume_epochs"]

_NAME = re.compile(r"^resume-epoch(\d+)\.pt$")


def _folder(net) -> Path | None:
    directory = net.checkpoint_dir
    if directory is None or directory == "auto":  # "auto": fresh, never resumed
        return None
    return Path(directory)


def _files(net) -> list[tuple[int, Path]]:
    folder = _folder(net)
    if folder is None or not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def resume_epochs(net) -> int:
    """Epochs already finished by a run saved in ``net.checkpoint_dir`` (0: none)."""
    files = _files(net)
    return files[-1][0] if files else 0


class SaveResume(Callback):
    """Write the resume file after every epoch (runs after LP-FT's callback,
    so the best epoch of this epoch is in it)."""

    def on_epoch_end(self, net, **kwargs):
        folder = _folder(net)
        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        epoch = len(net.history)
        probe = dict(net.callbacks_).get("probe_start")
        best = getattr(probe, "best_", None)
        module = net._plain_module()
        generator = getattr(net, "_shuffle_generator_", None)
        payload = {
            "epochs": epoch,
            "module": module.state_dict(),
            "optimizer": net.optimizer_.state_dict(),
            "history": json.dumps(net.history.to_list()),
            "trainable": [n for n, p in module.named_parameters() if p.requires_grad],
            "torch_rng": torch.get_rng_state(),
            "shuffle_rng": None if generator is None else generator.get_state(),
            "start_scores": json.dumps(getattr(net, "start_scores_", None)),
            "best": None
            if best is None
            else {"key": best[0], "epoch": best[1], "state": best[2]},
        }
        path = folder / f"resume-epoch{epoch}.pt"
        tmp = folder / f".{path.name}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        for k, old in _files(net):
            if k != epoch:
                old.unlink(missing_ok=True)


class LoadResume(Callback):
    """Restore the newest resume file at the start of a fresh ``fit`` (runs
    before LP-FT's callback, which then sees a history and starts no probe)."""

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        files = _files(net)
        if len(net.history) != 0 or not files:
            return
        path = files[-1][1]
        # on the CPU: the RNG states must be CPU tensors; load_state_dict copies
        # the weights and the optimizer's state to where the parameters are
        state = torch.load(path, map_location="cpu", weights_only=True)
        module = net._plain_module()
        module.load_state_dict(state["module"])
        trainable = set(state["trainable"])
        for name, p in module.named_parameters():
            p.requires_grad = name in trainable
        module.train(module.training)  # frozen BatchNorms back to eval mode
        net.optimizer_.load_state_dict(state["optimizer"])
        net.history = History(json.loads(state["history"]))
        torch.set_rng_state(state["torch_rng"])
        generator = getattr(net, "_shuffle_generator_", None)
        if generator is not None and state["shuffle_rng"] is not None:
            generator.set_state(state["shuffle_rng"])
        best = state["best"]
        net._resumed_probe_ = (
            json.loads(state["start_scores"]),
            None if best is None else (best["key"], best["epoch"], best["state"]),
        )
