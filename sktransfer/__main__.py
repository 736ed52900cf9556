"""Command line: ``sktransfer demo``, ``sktransfer backbones``, ``sktransfer embed``."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sktransfer`` command."""
    parser = argparse.ArgumentParser(prog="sktransfer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="offline demo on packaged data and weights")
    demo.add_argument(
        "--no-finetune", action="store_true", help="skip the fine-tuning rows"
    )
    demo.add_argument("--json", help="also write the rows to this JSON file")
    lst = sub.add_parser("backbones", help="list backbones")
    lst.add_argument("pattern", nargs="?", default="*")
    emb = sub.add_parser("embed", help="embed image files or lines of text to .npy")
    emb.add_argument("backbone")
    emb.add_argument(
        "inputs", nargs="+", help="image files, or one text file with --text"
    )
    emb.add_argument(
        "--text", action="store_true", help="inputs is a file, one text a line"
    )
    emb.add_argument("-o", "--output", required=True, help="output .npy file")
    emb.add_argument("--batch-size", default="auto")
    emb.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    if args.command == "demo":
        import json
        import platform

        from sktransfer._demo import run_demo

        rows = run_demo(finetune=not args.no_finetune)
        if args.json:
            import torch

            with open(args.json, "w", encoding="utf-8") as f:
                machine = {
                    "cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(),
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                }
                json.dump({"machine": machine, "rows": rows}, f, indent=2)
    elif args.command == "backbones":
        from sktransfer.backbones import get_backbone_spec, list_backbones

        for name in list_backbones(args.pattern):
            spec = get_backbone_spec(name)
            print(f"{name:<34} {spec.modality:<8} {spec.description}")
    else:
        import numpy as np

        from sktransfer import PretrainedFeatureExtractor

        if os.path.exists(args.output):
            print(f"{args.output} exists; not overwriting it.", file=sys.stderr)
            return 1
        X = args.inputs
        if args.text:
            with open(args.inputs[0], encoding="utf-8") as f:
                X = f.read().splitlines()
        bs = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
        ext = PretrainedFeatureExtractor(
            args.backbone, batch_size=bs, device=args.device, verbose=True
        )
        np.save(args.output, ext.fit(X).transform(X))
        print(f"wrote {args.output}: {len(X)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
