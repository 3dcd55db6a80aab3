"""Benchmark the tile-classification input pipeline against the model it feeds.

    python benchmarks/bench_datasets.py --out benchmarks/results/datasets.json

The question a user has: does the ``tf.data`` pipeline (shards -> cache -> shuffle -> batch ->
augmentation -> prefetch, :func:`helpers.datasets.from_shards`) keep the model busy, or does
training wait for data? Target: the pipeline with augmentation delivers at least 3x the images
per second that the model trains at, on CPU.

Data: the tiles of notebook 03 -- 64 px tiles at stride 32 from the sample region's first date
(``data/generated/sample``, made by ``make data``), written once into
``benchmarks/results/cache/tiles64`` with :func:`helpers.tiling.extract_patches`.

Measured in this process, one after the other:

* ``pipeline_*``: images/s when iterating the training split for two epochs after a warm-up
  epoch (which fills the cache), with the notebook's augmentation: deterministic (the notebook's
  default, one batch at a time) and parallel (``deterministic=False``);
* ``model_train``: images/s of ``model.fit`` on in-memory batches for the notebook's model
  (ResNet50 from scratch, 64 x 64 x 4, batch 32), after a warm-up epoch (graph building).

Both use all cores; during training they share them, so the ratio is an upper bound on the
slack, and the reason it needs to be large.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / "results" / "cache"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TILE, STRIDE, BATCH = 64, 32, 32
AUGMENT = {"rotation": 0.05, "zoom": 0.1, "translation": 0.05, "brightness": 0.05, "contrast": 0.1}


def build_tiles(data_dir: Path) -> Path:
    from helpers import labels, raster, splits, tiling
    from helpers.sample_data import ensure_sample_region

    region = ensure_sample_region(data_dir, size=2048, seed=42)
    date = region.dates[0]
    scene = region.scenes[date]
    info = raster.describe(scene)
    windows = tiling.tile_windows(info.height, info.width, TILE, stride=STRIDE)
    outlines = labels.read_vectors(region.settlements[date], crs=info.crs)
    tile_label = labels.tile_labels(windows, info.transform, outlines, positive=0.5, negative=0.05)
    assignment = splits.spatial_block_split(windows, block_size=512, seed=42)
    out = CACHE / "tiles64"
    tiling.extract_patches(scene, out, windows, writer="npz", labels=tile_label,
                           splits=assignment, progress=False)  # fmt: skip
    return out


def pipeline_rate(tiles: Path, deterministic: bool) -> dict:
    from helpers import datasets

    train = datasets.from_shards(tiles, split="train", batch_size=BATCH, seed=0,
                                 augment=datasets.augmentation(seed=1, **AUGMENT),
                                 deterministic=deterministic)  # fmt: skip
    for _ in train:  # warm-up epoch: fills the cache, traces the augmentation
        pass
    images, start = 0, time.perf_counter()
    for _ in range(2):
        for batch, _labels in train:
            images += int(batch.shape[0])
    seconds = time.perf_counter() - start
    rate = round(images / seconds, 1)
    return {"images": images, "seconds": round(seconds, 3), "images_per_s": rate}


def model_rate(n: int) -> dict:
    import keras
    import numpy as np

    from helpers import models

    keras.utils.set_random_seed(0)
    model = models.build_resnet50_classifier((TILE, TILE, 4), weights=None, freeze_layers=0,
                                             bn_momentum=0.9)  # fmt: skip
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "binary_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((n, TILE, TILE, 4), dtype=np.float32)
    y = (rng.random((n, 1)) > 0.8).astype("float32")
    model.fit(x[: BATCH * 4], y[: BATCH * 4], batch_size=BATCH, epochs=1, verbose=0)  # warm-up
    start = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    return {"images": n, "seconds": round(seconds, 3), "images_per_s": round(n / seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "generated" / "sample")
    parser.add_argument("--model-images", type=int, default=640, help="images for the model rate")
    args = parser.parse_args(argv)

    tiles = build_tiles(args.data)
    results = {
        "pipeline_deterministic": pipeline_rate(tiles, deterministic=True),
        "pipeline_parallel": pipeline_rate(tiles, deterministic=False),
        "model_train": model_rate(args.model_images),
    }
    model = results["model_train"]["images_per_s"]
    ratios = {
        name: round(results[name]["images_per_s"] / model, 2)
        for name in ("pipeline_deterministic", "pipeline_parallel")
    }
    report = {
        "benchmark": "datasets",
        "what": "tf.data pipeline with augmentation vs ResNet50 training, images/s on this CPU",
        "tile": TILE, "batch": BATCH, "augmentation": {"flips": True, "rotate90": True, **AUGMENT},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": results,
        "ratio_pipeline_to_model": ratios,
        "target": "pipeline >= 3x model (deterministic pipeline, the notebook default)",
        "target_met": ratios["pipeline_deterministic"] >= 3.0,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.partial")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(json.dumps({"ratio_pipeline_to_model": ratios, **{k: v["images_per_s"]
                      for k, v in results.items()}}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
