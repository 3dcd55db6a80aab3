"""Benchmark the sample-region generator: time, throughput and peak memory per scene size.

Each size runs in its own child process so the peak resident memory is per size. Render workers
(forked by the generator on Linux) are children of that process; their peak is reported apart.

Usage:
    python benchmarks/bench_sample_data.py --sizes 2048 8192 \
        --out benchmarks/results/sample_data.json
    python benchmarks/bench_sample_data.py --previews img   # re-render the README figures
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path


def _run_one(size: int, seed: int, footprints: bool, queue) -> None:
    from helpers.sample_data import generate_sample_region

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        region = generate_sample_region(
            tmp, size=size, seed=seed, footprints=footprints, progress=False
        )
        seconds = time.perf_counter() - t0
        disk = sum(p.stat().st_size for p in Path(tmp).iterdir())
        baselines = region.manifest["baselines"]
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    queue.put(
        {
            "size": size,
            "pixels": size * size,
            "seconds": round(seconds, 2),
            "mpix_per_s": round(size * size / 1e6 / seconds, 3),
            "peak_rss_mb": round(self_kb / 1024, 1),
            "peak_rss_worker_mb": round(child_kb / 1024, 1),
            "disk_mb": round(disk / 1e6, 1),
            "footprints": footprints,
            "baselines": {
                "building_threshold_iou": baselines["building_threshold_iou"]["best"],
                "settlement_tiles_f1": baselines["settlement_tiles_f1"]["best"],
                "cloud_brightness_iou": baselines["cloud_brightness_iou"]["best"],
            },
        }
    )


def _machine() -> dict:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    import numpy
    import rasterio
    import shapely

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus_available": cpus,
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "shapely": shapely.__version__,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--no-footprints", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/sample_data.json")
    ap.add_argument("--previews", default=None, help="render the README figures (default region)")
    args = ap.parse_args(argv)
    if args.previews:
        from helpers.sample_data import ensure_sample_region, render_previews

        with tempfile.TemporaryDirectory() as tmp:
            region = ensure_sample_region(tmp, seed=args.seed, progress=True)
            for p in render_previews(region, args.previews):
                print(p, f"{p.stat().st_size / 1e3:.0f} kB")
        return 0
    ctx = multiprocessing.get_context("spawn")
    results = []
    for size in args.sizes:
        queue = ctx.Queue()
        proc = ctx.Process(target=_run_one, args=(size, args.seed, not args.no_footprints, queue))
        proc.start()
        res = queue.get()
        proc.join()
        print(json.dumps(res))
        results.append(res)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": _machine(), "results": results}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
