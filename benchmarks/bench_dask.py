"""The Dask path vs. the in-process extractor on the same 2,000 image files.

- in process: ``PretrainedFeatureExtractor("efficientnet_lite0").transform``
  with 2 torch threads (this machine's 2 cores);
- Dask: ``sktransfer.dask.embed`` on ``LocalCluster(n_workers=2,
  threads_per_worker=1, processes=True)``, each worker with 1 torch thread, the
  paths in a Dask Series of 10 partitions (200 images each); the workers are
  warmed up (backbone loaded) first, as a long-lived cluster would be.

- two separate processes, 1 torch thread each, each embedding half of the
  files with the same extractor (started together once both have loaded the
  backbone): what 2 single-thread workers can at best do without Dask.

The Dask run is made twice: with ``MALLOC_TRIM_THRESHOLD_`` unset in the
workers (``dask.config.set({"distributed.nanny.pre-spawn-environ.
MALLOC_TRIM_THRESHOLD_": None})``, as the scaling guide advises) and with
distributed's default (65536, which makes glibc hand freed memory back to the
system at once, so every batch's buffers are faulted in again).

Reported: the times, the ratios (target <= 1.2x), the scheduler's overhead
per partition (no-op tasks through the same cluster), and from those a
*projection* of throughput at N workers (each worker's measured rate times N,
less the per-partition overhead; not a measurement).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import QUICK, machine, make_image_files, write_result

N_IMAGES = 100 if QUICK else 2_000
PARTITIONS = 4 if QUICK else 10


def _one_thread():
    import torch

    torch.set_num_threads(1)


_HALF = """
import sys, time, torch
torch.set_num_threads(1)
from sktransfer import PretrainedFeatureExtractor
paths = open(sys.argv[1]).read().split("\\n")
ext = PretrainedFeatureExtractor("efficientnet_lite0", cache=None).fit(paths[:1])
ext.transform(paths[:8])
print("ready", flush=True)
sys.stdin.readline()
ext.transform(paths)
print("done", flush=True)
"""


def two_processes(paths, folder: Path) -> float:
    """Wall time of two single-thread processes embedding half each."""
    children = []
    for i, half in enumerate((paths[0::2], paths[1::2])):
        listing = folder / f"half{i}.txt"
        listing.write_text("\n".join(half))
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", _HALF, str(listing)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for child in children:
        assert child.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    for child in children:
        assert child.stdout.readline().strip() == "done"
        child.wait()
    return time.perf_counter() - start


def main():
    import dask.dataframe as dd
    import pandas as pd
    import torch
    from distributed import Client, LocalCluster

    from sktransfer import PretrainedFeatureExtractor
    from sktransfer.dask import embed

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_image_files(Path(tmp), N_IMAGES, size=256)
        ext = PretrainedFeatureExtractor("efficientnet_lite0", cache=None).fit(
            paths[:1]
        )
        torch.set_num_threads(2)
        ext.transform(paths[:32])  # warm-up
        start = time.perf_counter()
        local = ext.transform(paths)
        t_local = time.perf_counter() - start
        t_two = two_processes(paths, Path(tmp))

        import dask

        runs = {}
        # distributed's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in the workers
        # (and, while spawning them, in this process): the run without it first
        for label, trim in (("trim_unset", None), ("distributed_default", 65536)):
            key = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
            with (
                dask.config.set({key: trim}),
                LocalCluster(
                    n_workers=2,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                ) as cluster,
                Client(cluster) as client,
            ):
                client.run(_one_thread)
                series = dd.from_pandas(pd.Series(paths), npartitions=PARTITIONS)
                warm = dd.from_pandas(pd.Series(paths[:8]), npartitions=2)
                embed(ext, warm).compute()  # each worker loads the backbone once
                start = time.perf_counter()
                remote = embed(ext, series).compute()
                runs[label] = time.perf_counter() - start

                n_noop = 200
                start = time.perf_counter()
                client.gather(client.map(lambda i: i, range(n_noop), pure=False))
                overhead = (time.perf_counter() - start) / n_noop
        t_dask = runs["trim_unset"]
    diff = float(abs(remote - local).max())
    per_worker = N_IMAGES / t_dask / 2  # images/s of one single-thread worker
    per_partition = (N_IMAGES / PARTITIONS) / per_worker  # seconds of work
    projection = {
        str(n): n * per_worker * per_partition / (per_partition + overhead)
        for n in (1, 2, 4, 8, 16, 64)
    }
    write_result(
        "dask",
        {
            "machine": machine(),
            "data": f"{N_IMAGES} JPEG files ~192-320 px, efficientnet_lite0, "
            f"{PARTITIONS} partitions",
            "seconds": {
                "in_process_2_threads": t_local,
                "two_processes_1_thread": t_two,
                "dask_2_workers": t_dask,
                "dask_2_workers_distributed_default_malloc_trim": runs[
                    "distributed_default"
                ],
            },
            "images_per_second": {
                "in_process_2_threads": N_IMAGES / t_local,
                "two_processes_1_thread": N_IMAGES / t_two,
                "dask_2_workers": N_IMAGES / t_dask,
            },
            "max_abs_difference": diff,
            "scheduler_overhead_seconds_per_partition": overhead,
            "ratios": {
                "dask_default_malloc_trim_vs_in_process": runs["distributed_default"]
                / t_local,
                "dask_vs_in_process": t_dask / t_local,
                "dask_vs_two_processes": t_dask / t_two,
                "two_processes_vs_in_process": t_two / t_local,
            },
            "target": "dask_vs_in_process <= 1.2 (or, where that cannot be, "
            "dask_vs_two_processes <= 1.2)",
            "projection_images_per_second_at_n_workers": projection,
            "projection_note": "projection, not a measurement: N x one worker's "
            "measured rate, less the measured per-partition overhead, with "
            f"partitions of {N_IMAGES // PARTITIONS} images; assumes storage and "
            "the network keep up",
        },
    )


if __name__ == "__main__":
    main()
