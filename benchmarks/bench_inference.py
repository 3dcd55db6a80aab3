"""Benchmark scene prediction (helpers.inference.predict): overhead over the model, memory, speed.

    python benchmarks/bench_inference.py --out benchmarks/results/inference.json
    python benchmarks/bench_inference.py --out inference.json --sizes 2048 8192
    python benchmarks/bench_inference.py --out inference.json --chunk-size 1024

Scenes: the 4-band uint16, 256 x 256-tiled, DEFLATE scenes of ``bench_tiling.py`` (built once into
``benchmarks/results/cache/`` and reused). Every measurement runs in a fresh child process, so
its peak RSS (``ru_maxrss``) is its own. ``predict`` works in column chunks (``--chunk-size``,
default :data:`helpers.inference.CHUNK_SIZE`). Every timing comes with its CPU seconds (all
threads of the child) and the load average around it, as the machine may be shared. Two parts,
so that the whole run stays within minutes on a CPU:

* **Overhead** (on the ``--overhead-size`` scene, 2048 x 2048 by default): a small U-Net
  (:func:`helpers.segmentation.build_unet`, depth 3, 8 filters at the first level, one sigmoid
  channel) on 256-px patches (``--patch``) at stride 128 (half the patch). ``forward`` times the
  model alone (``predict_on_batch``) on exactly the patches ``predict`` feeds it (read and
  scaled in memory beforehand, as many batches of the same sizes; the same batches when one
  chunk spans the scene); ``predict`` times the whole thing (read, scale, predict, blend,
  write a ZSTD GeoTIFF). The ratio ``predict / forward`` is the overhead (target <= 1.10).
  Both are timed ``--repeats`` times (5), alternating, after one warm-up batch; the fastest run
  is kept (the machine is shared). The first ``predict`` in a process is the slowest: its
  buffers are fresh memory, which the kernel faults in page by page. The model's own time
  inside ``predict`` is recorded too, and ``pipeline_only`` times ``predict`` with a model that
  costs nothing (zeros): what reading, scaling, blending and writing cost by themselves.
* **Memory and throughput** against scene size (``--sizes``): ``predict`` with a cheap per-pixel
  model (a logistic function of the four scaled bands, in numpy) so that even 16384 x 16384
  (268 MPix) runs in a couple of minutes; the peak RSS should stay flat (target <= 1.5 GB,
  the interpreter with Keras and TensorFlow imported included, and the largest scene within
  10 % of the smallest) while the scene grows 64-fold. The cheap model's own seconds are
  recorded, so the rest is the pipeline's.

Throughput is in MPix/s of scene pixels (height x width / seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / "results" / "cache"
PATCH = 256  # default --patch; the stride is half the patch
BATCH = 16
CARD = {
    "bands": ["blue", "green", "red", "nir"],
    "scaling": {"method": "linear", "scale": 1e-4, "offset": 0.0},
    "tile_size": PATCH,
    "classes": {0: "other", 1: "target"},
    "decision_threshold": 0.5,
    "training_data": "synthetic benchmark scene",
}

sys.path.insert(0, str(HERE))
from bench_tiling import build_scene  # noqa: E402  (the same cached scenes)

# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def cheap_model(x):
    """A per-pixel logistic model over the four bands: almost free, so I/O and blending show."""
    import numpy as np

    weights = np.float32([-2.0, 1.0, -3.0, 4.0])
    return 1.0 / (1.0 + np.exp(-(x @ weights - 0.5)))[..., None]


def small_unet():
    """The U-Net of helpers.segmentation, small enough for a CPU benchmark."""
    import keras

    from helpers.segmentation import build_unet

    keras.utils.set_random_seed(0)
    return build_unet((None, None, 4), 1, depth=3, filters=8)


def null_model(x):
    """A model that costs nothing: what is left of ``predict`` is its pipeline."""
    import numpy as np

    return np.zeros((*x.shape[:3], 1), dtype=np.float32)


class TimedModel:
    """Wraps a Keras model and adds up the seconds spent in ``predict_on_batch``."""

    def __init__(self, model):
        self.model, self.seconds, self.calls = model, 0.0, 0

    def predict_on_batch(self, x):
        start = time.perf_counter()
        y = self.model.predict_on_batch(x)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return y


class TimedCallable:
    """Wraps a plain callable model and adds up the seconds spent in it."""

    def __init__(self, model):
        self.model, self.seconds, self.calls = model, 0.0, 0

    def __call__(self, x):
        start = time.perf_counter()
        y = self.model(x)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return y


# --------------------------------------------------------------------------------------------
# One measurement (runs in a child process)
# --------------------------------------------------------------------------------------------


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def measure(case: str, scene: str, out_dir: str, repeats: int, chunk_size: int | None,
            patch: int) -> dict:  # fmt: skip
    import numpy as np
    import rasterio

    from helpers import inference, tiling
    from helpers.models import scale_inputs

    out = Path(out_dir) / "prediction.tif"
    with rasterio.open(scene) as ds:
        height, width = ds.height, ds.width
    stride = patch // 2
    windows = inference._patch_windows(height, width, patch, stride)
    rss_before = _rss_mib()
    load_start = _load()

    def run_predict(model) -> tuple[float, float]:
        """Wall and CPU seconds (all threads) of one ``predict``."""
        start, cpu = time.perf_counter(), time.process_time()
        inference.predict(model, scene, out, card=CARD, patch_size=patch, stride=stride,
                          batch_size=BATCH, overwrite=True, progress=False,
                          chunk_size=chunk_size)  # fmt: skip
        return time.perf_counter() - start, time.process_time() - cpu

    if case == "cheap":
        timed = TimedCallable(cheap_model)
        seconds, cpu = run_predict(timed)
        return {"seconds": seconds, "cpu_seconds": round(cpu, 2),
                "model_seconds": round(timed.seconds, 2), "peak_rss_mib": round(_rss_mib(), 1),
                "rss_before_work_mib": round(rss_before, 1), "patches": len(windows),
                "output_mib": round(out.stat().st_size / 2**20, 1),
                "load_avg_1min": [load_start, _load()]}  # fmt: skip

    if case != "unet":
        raise ValueError(f"unknown case {case!r}")
    model = small_unet()
    # The exact batches predict feeds the model: read and scaled beforehand, kept in memory.
    patches = [p.copy() for _, p in tiling.iter_patches(scene, windows, bands=[1, 2, 3, 4])]
    batches = [
        scale_inputs(np.stack(patches[i : i + BATCH]).transpose(0, 2, 3, 1), CARD)
        for i in range(0, len(patches), BATCH)
    ]
    del patches
    model.predict_on_batch(batches[0])  # warm-up: trace and compile the predict step
    if len(batches[-1]) != BATCH:
        model.predict_on_batch(batches[-1])  # the smaller last batch traces once more
    forward, forward_cpu, whole, whole_cpu, inside = [], [], [], [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            model.predict_on_batch(batch)
        forward.append(time.perf_counter() - start)
        forward_cpu.append(time.process_time() - cpu)
        timed = TimedModel(model)
        seconds, cpu = run_predict(timed)
        whole.append(seconds)
        whole_cpu.append(cpu)
        inside.append(timed.seconds)
    pipeline, pipeline_cpu = min(run_predict(null_model) for _ in range(repeats))
    best, fastest = int(np.argmin(whole)), int(np.argmin(forward))
    return {
        "forward_seconds": round(forward[fastest], 3),
        "forward_cpu_seconds": round(forward_cpu[fastest], 3),
        "predict_seconds": round(whole[best], 3),
        "predict_cpu_seconds": round(whole_cpu[best], 3),
        "model_seconds_inside_predict": round(inside[best], 3),
        "pipeline_only_seconds": round(pipeline, 3),
        "pipeline_only_cpu_seconds": round(pipeline_cpu, 3),
        "all_forward_seconds": [round(s, 3) for s in forward],
        "all_predict_seconds": [round(s, 3) for s in whole],
        "overhead_ratio": round(whole[best] / forward[fastest], 3),
        "overhead_ratio_same_run": round(whole[best] / inside[best], 3),
        "peak_rss_mib": round(_rss_mib(), 1),
        "patches": len(windows),
        "parameters": int(model.count_params()),
        "load_avg_1min": [load_start, _load()],
    }


def run_child(case: str, scene: Path, repeats: int = 1, chunk_size: int | None = None,
              patch: int = PATCH) -> dict:  # fmt: skip
    out_dir = CACHE / "tmp_inference"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    command = [sys.executable, __file__, "--child", case, str(scene), str(out_dir), str(repeats),
               str(chunk_size or 0), str(patch)]  # fmt: skip
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    shutil.rmtree(out_dir, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"{case} on {scene.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from helpers.files import atomic_write_text
    from helpers.inference import CHUNK_SIZE

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192, 16384],
                        help="scene sizes for memory and throughput (cheap model)")  # fmt: skip
    parser.add_argument("--overhead-size", type=int, default=2048,
                        help="scene size for the U-Net overhead measurement")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (fastest kept)")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help=f"predict's chunk_size (default {CHUNK_SIZE})")  # fmt: skip
    parser.add_argument("--patch", type=int, default=PATCH,
                        help="patch size in pixels; the stride is half of it")  # fmt: skip
    args = parser.parse_args(argv)

    started = time.perf_counter()
    results: dict = {
        "patch": args.patch, "stride": args.patch // 2, "batch_size": BATCH, "blend": "smooth",
        "tta": False,
        "chunk_size": args.chunk_size or CHUNK_SIZE,
        "output": "probabilities (float32, ZSTD level 1, 256 x 256 tiles)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_1_5_15min_at_start": [round(x, 2) for x in os.getloadavg()]},
        "method": (
            "overhead: small U-Net (helpers.segmentation.build_unet, depth 3, 8 filters) on "
            "the overhead_size scene, forward = predict_on_batch alone on the same batches held "
            "in memory, pipeline_only = predict with a model returning zeros; "
            "memory/throughput: a cheap numpy per-pixel model on every size, so the "
            "largest scene stays feasible on a CPU; every measurement in its own process"
        ),
    }  # fmt: skip

    scene = build_scene(args.overhead_size)
    mpix = args.overhead_size**2 / 1e6
    print(f"U-Net overhead on {args.overhead_size}^2", flush=True)
    unet = run_child("unet", scene, args.repeats, args.chunk_size, args.patch)
    unet.update(scene_size=args.overhead_size,
                mpix_per_s_predict=round(mpix / unet["predict_seconds"], 3),
                mpix_per_s_forward=round(mpix / unet["forward_seconds"], 3))  # fmt: skip
    results["unet_overhead"] = unet
    print(f"  forward {unet['forward_seconds']} s, predict {unet['predict_seconds']} s, "
          f"ratio {unet['overhead_ratio']} (same run {unet['overhead_ratio_same_run']}), "
          f"pipeline alone {unet['pipeline_only_seconds']} s, "
          f"load {unet['load_avg_1min']}", flush=True)  # fmt: skip

    memory = {}
    for size in sorted(set(args.sizes)):
        path = build_scene(size)
        entry = run_child("cheap", path, chunk_size=args.chunk_size, patch=args.patch)
        entry["seconds"] = round(entry["seconds"], 2)
        entry["mpix_per_s"] = round(size * size / 1e6 / entry["seconds"], 2)
        memory[str(size)] = entry
        print(f"  cheap model {size}^2: {entry['seconds']} s ({entry['cpu_seconds']} s CPU, "
              f"model {entry['model_seconds']} s), {entry['mpix_per_s']} MPix/s, "
              f"peak RSS {entry['peak_rss_mib']:.0f} MiB, load {entry['load_avg_1min']}",
              flush=True)  # fmt: skip
    results["cheap_model_by_scene_size"] = memory

    peaks = [m["peak_rss_mib"] for m in memory.values()]
    results["targets"] = {
        "predict_over_forward_unet (<= 1.10)": unet["overhead_ratio"],
        "max_peak_rss_mib (<= 1536)": max(peaks),
        "peak_rss_growth_smallest_to_largest_mib (flat)": round(peaks[-1] - peaks[0], 1),
        "peak_rss_largest_over_smallest (<= 1.10)": round(peaks[-1] / peaks[0], 3),
    }
    results["machine"]["load_avg_1_5_15min_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["targets"], indent=2))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        case, scene, out_dir, repeats, chunk, patch = sys.argv[2:8]
        print(json.dumps(measure(case, scene, out_dir, int(repeats), int(chunk) or None,
                                 int(patch))))  # fmt: skip
        sys.exit(0)
    sys.exit(main())
