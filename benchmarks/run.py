"""Run the benchmarks (each in its own process), then write the docs table.

python benchmarks/run.py                 # all of them (~20 min on 2 CPU cores)
python benchmarks/run.py images text     # some of them
python benchmarks/run.py --report-only   # only rewrite docs/performance.md
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    "gridsearch",
    "images",
    "photos",
    "text",
    "streaming",
    "finetune",
    "ranking",
    "precision",
    "dask",
    "finite",
    "export",
    "disk_cache",
    "finetune_defaults",
    "training_step",
    "class_names",
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", choices=[[], *BENCHES], default=[])
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    if not args.report_only:
        for name in args.names or BENCHES:
            print(f"== {name}", flush=True)
            subprocess.run(
                [sys.executable, str(HERE / f"bench_{name}.py")], check=True, cwd=HERE
            )
    subprocess.run([sys.executable, str(HERE / "report.py")], check=True, cwd=HERE)


if __name__ == "__main__":
    main()
