"""Command line: ``sktransfer demo``, ``sktransfer backbones``, ``sktransfer embed``.

A mistake in the arguments or the inputs is one line on stderr and exit code 2
(``SKTRANSFER_DEBUG=1`` shows the traceback too). Output piped into a reader
that stops early (``| head``) ends the command quietly (exit code 141).
"""

from __future__ import annotations

import argparse
import os
import sys

from sktransfer._cli_embed import UserError, add_embed_parser, plain_text, run_embed

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sktransfer",
        description=plain_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="offline demo on packaged data and weights")
    demo.add_argument(
        "--no-finetune", action="store_true", help="skip the fine-tuning rows"
    )
    demo.add_argument(
        "--full",
        action="store_true",
        help="the full fine-tuning rows (the README's figures; about 18 minutes on "
        "2 CPU cores) instead of the quick ones (about 6 minutes)",
    )
    demo.add_argument("--json", help="also write the rows to this JSON file")
    lst = sub.add_parser("backbones", help="list backbones")
    lst.add_argument("pattern", nargs="?", default="*")
    add_embed_parser(sub)
    return parser


def _demo(args) -> int:
    import json
    import platform
    import time

    from sktransfer._demo import run_demo

    start = time.perf_counter()
    rows = run_demo(finetune=not args.no_finetune, full=args.full)
    seconds = time.perf_counter() - start
    print(f"demo finished in {seconds:.0f} s")
    if args.json:
        import torch

        with open(args.json, "w", encoding="utf-8") as f:
            machine = {
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            }
            run = {
                "full": args.full,
                "finetune": not args.no_finetune,
                "seconds": seconds,
            }
            json.dump({"machine": machine, "run": run, "rows": rows}, f, indent=2)
    return 0


def _backbones(args) -> int:
    from sktransfer.backbones import get_backbone_spec, list_backbones

    for name in list_backbones(args.pattern):
        spec = get_backbone_spec(name)
        print(f"{name:<34} {spec.modality:<8} {spec.description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sktransfer`` command."""
    args = _parser().parse_args(argv)
    run = {"demo": _demo, "backbones": _backbones, "embed": run_embed}[args.command]
    try:
        status = run(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return status
    except BrokenPipeError:
        # the reader went away (`sktransfer backbones | head`): stop quietly, as
        # Unix tools do; stdout goes to devnull so the exit's flush is silent too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what the shell reports for `yes | head`
    except KeyboardInterrupt:
        print("sktransfer: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("SKTRANSFER_DEBUG") or not _is_user_error(exc):
            raise
        message = " ".join(str(exc).split())  # one line
        print(f"sktransfer {args.command}: error: {message}", file=sys.stderr)
        return 2


def _is_user_error(exc: BaseException) -> bool:
    from sktransfer.exceptions import (
        BackboneNotFoundError,
        InputError,
        WeightsNotFoundError,
    )

    return isinstance(
        exc,
        UserError
        | InputError
        | BackboneNotFoundError
        | WeightsNotFoundError
        | MemoryError
        | FileNotFoundError
        | PermissionError
        | ImportError
        | ValueError,  # a bad parameter value (--layer 99, --device cuda, ...)
    )


if __name__ == "__main__":
    sys.exit(main())
