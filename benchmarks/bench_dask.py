"""The Dask path vs. the in-process extractor on the same 2,000 image files.

- in process: ``PretrainedFeatureExtractor("efficientnet_lite0").transform``
  with 2 torch threads (this machine's 2 cores);
- Dask: ``sktransfer.dask.embed`` on ``LocalCluster(n_workers=2,
  threads_per_worker=1, processes=True)``, each worker with 1 torch thread, the
  paths in a Dask Series of 10 partitions (200 images each); the workers are
  warmed up (backbone loaded) first, as a long-lived cluster would be.

Reported: both times, their ratio (target <= 1.2x), the scheduler's overhead
per partition (no-op tasks through the same cluster), and from those a
*projection* of throughput at N workers (each worker's measured rate times N,
less the per-partition overhead; not a measurement).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _common import QUICK, machine, make_image_files, write_result

N_IMAGES = 100 if QUICK else 2_000
PARTITIONS = 4 if QUICK else 10


def _one_thread():
    import torch

    torch.set_num_threads(1)


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

        with (
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
            t_dask = time.perf_counter() - start

            n_noop = 200
            start = time.perf_counter()
            client.gather(client.map(lambda i: i, range(n_noop), pure=False))
            overhead = (time.perf_counter() - start) / n_noop
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
            "seconds": {"in_process_2_threads": t_local, "dask_2_workers": t_dask},
            "images_per_second": {
                "in_process_2_threads": N_IMAGES / t_local,
                "dask_2_workers": N_IMAGES / t_dask,
            },
            "max_abs_difference": diff,
            "scheduler_overhead_seconds_per_partition": overhead,
            "ratios": {"dask_vs_in_process": t_dask / t_local},
            "target": "dask_vs_in_process <= 1.2",
            "projection_images_per_second_at_n_workers": projection,
            "projection_note": "projection, not a measurement: N x one worker's "
            "measured rate, less the measured per-partition overhead, with "
            f"partitions of {N_IMAGES // PARTITIONS} images; assumes storage and "
            "the network keep up",
        },
    )


if __name__ == "__main__":
    main()
