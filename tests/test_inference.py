"""Tests for helpers.inference: blended scene prediction and the tile-classifier grid."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import SCENE_BANDS, UTM_CRS, synthetic_reflectance, write_geotiff
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import inference, tiling
from helpers.raster import RasterError

CARD = {
    "bands": list(SCENE_BANDS),
    "scaling": {"method": "linear", "scale": 1e-4, "offset": 0.0},
    "tile_size": 16,
    "classes": {0: "other", 1: "vegetation"},
    "decision_threshold": 0.3,
    "training_data": "synthetic",
}


def identity(x: np.ndarray) -> np.ndarray:
    return x


def read_all(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def float_scene(tmp_path: Path, height: int, width: int, bands: int = 2, seed: int = 0) -> Path:
    data = np.random.default_rng(seed).random((bands, height, width)).astype("float32")
    return write_geotiff(tmp_path / f"float_{height}x{width}.tif", data, nodata=None,
                         blocksize=16 if min(height, width) >= 16 else None)  # fmt: skip


FUNCTION_SCOPED = HealthCheck.function_scoped_fixture  # tmp_path is shared; names are unique


# --------------------------------------------------------------------------------------------
# Stitching rules that hold for every shape
# --------------------------------------------------------------------------------------------


@st.composite
def layouts(draw):
    """Scene shape, patch size, stride and blend mode (smooth needs stride < patch)."""
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    blend = draw(st.sampled_from(inference.BLEND_MODES))
    patch = draw(st.integers(2 if blend == "smooth" else 1, 12))
    stride = draw(st.integers(1, patch - 1 if blend == "smooth" else patch))
    return height, width, patch, stride, blend


@settings(max_examples=30, deadline=None, suppress_health_check=[FUNCTION_SCOPED])
@given(layouts(), st.booleans())
def test_identity_model_reproduces_the_scene(tmp_path, layout, tta):
    height, width, patch, stride, blend = layout
    scene = float_scene(tmp_path, height, width)
    out = inference.predict(identity, scene, tmp_path / "out.tif", bands=[1, 2],
                            patch_size=patch, stride=stride, blend=blend, tta=tta,
                            batch_size=3, overwrite=True, progress=False)  # fmt: skip
    np.testing.assert_allclose(read_all(out), read_all(scene), atol=1e-5)


@settings(max_examples=30, deadline=None, suppress_health_check=[FUNCTION_SCOPED])
@given(layouts())
def test_constant_model_gives_the_constant_everywhere(tmp_path, layout):
    height, width, patch, stride, blend = layout
    scene = float_scene(tmp_path, height, width)

    def constant(x):
        return np.broadcast_to(np.float32([0.25, 0.75]), (*x.shape[:3], 2))

    out = inference.predict(constant, scene, tmp_path / "out.tif", bands=[1],
                            patch_size=patch, stride=stride, blend=blend,
                            overwrite=True, progress=False)  # fmt: skip
    result = read_all(out)
    assert result.shape == (2, height, width)
    np.testing.assert_allclose(result[0], 0.25, atol=1e-6)
    np.testing.assert_allclose(result[1], 0.75, atol=1e-6)


def test_tall_scene_is_written_in_bands_of_rows(tmp_path, monkeypatch):
    # 700 rows: several flushes of 256-row output blocks, and a tiled output.
    scene = float_scene(tmp_path, 700, 300, bands=1)
    buffers = []

    class Recording(inference._RowAccumulator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            buffers.append(self.sums.shape)

    monkeypatch.setattr(inference, "_RowAccumulator", Recording)
    out = inference.predict(identity, scene, tmp_path / "out.tif", bands=[1], patch_size=48,
                            stride=30, batch_size=7, progress=False)  # fmt: skip
    assert buffers == [(1, 48 + 256, 300)]  # a band of rows, not the scene
    np.testing.assert_allclose(read_all(out), read_all(scene), atol=1e-5)
    with rasterio.open(out) as ds:
        assert ds.block_shapes[0] == (256, 256)
        assert ds.compression.name.lower() == "zstd"
        assert ds.dtypes[0] == "float32" and math.isnan(ds.nodata)


# --------------------------------------------------------------------------------------------
# Column chunks: memory bounded by the chunk, output independent of it
# --------------------------------------------------------------------------------------------


def position_dependent(x: np.ndarray) -> np.ndarray:
    """Not shift-invariant: each output depends on where the pixel sits in its patch, so a
    patch added at the wrong place, twice, or not at all changes the blend."""
    rows = np.linspace(0.5, 1.5, x.shape[1], dtype=np.float32)[:, None, None]
    cols = np.linspace(1.25, 0.75, x.shape[2], dtype=np.float32)[None, :, None]
    return np.concatenate([x * rows * cols, np.sin(7 * x[..., :1])], axis=-1)


def scene_with_nodata(tmp_path: Path, height: int, width: int, seed: int = 0) -> Path:
    data = np.random.default_rng(seed).random((2, height, width)).astype("float32")
    data[:, : height // 3, : width // 4] = -1.0  # a nodata corner
    return write_geotiff(tmp_path / f"nodata_{height}x{width}.tif", data, nodata=-1.0,
                         blocksize=16 if min(height, width) >= 16 else None)  # fmt: skip


def assert_identical_files(a: Path, b: Path) -> None:
    """Same pixels bit for bit (NaN nodata included), same grid, tags and descriptions."""
    with rasterio.open(a) as first, rasterio.open(b) as second:
        x, y = first.read(), second.read()
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x.view(np.uint8), y.view(np.uint8))
        assert first.transform == second.transform and first.crs == second.crs
        assert first.block_shapes == second.block_shapes
        assert first.tags() == second.tags() and first.descriptions == second.descriptions


@settings(max_examples=25, deadline=None, suppress_health_check=[FUNCTION_SCOPED])
@given(layouts(), st.integers(1, 24), st.booleans())
def test_chunked_prediction_is_identical_to_one_chunk(tmp_path, layout, chunk, tta):
    # Patches crossing a chunk border must add to both sides exactly as in one pass over the
    # scene: same terms, same order, so the same float32 sums, for any chunk size.
    height, width, patch, stride, blend = layout
    scene = scene_with_nodata(tmp_path, height, width)
    kwargs = {"bands": [1, 2], "patch_size": patch, "stride": stride, "blend": blend,
              "tta": tta, "batch_size": 4, "output": "both", "overwrite": True,
              "progress": False}  # fmt: skip
    whole = inference.predict(position_dependent, scene, tmp_path / "whole.tif",
                              chunk_size=width, **kwargs)  # fmt: skip
    chunked = inference.predict(position_dependent, scene, tmp_path / "chunked.tif",
                                chunk_size=chunk, **kwargs)  # fmt: skip
    for a, b in zip(whole, chunked, strict=True):
        assert_identical_files(a, b)


def test_wide_scene_is_predicted_in_column_chunks_of_whole_tiles(tmp_path, monkeypatch):
    # 600 x 700 px: a tiled output, so chunk_size=300 is rounded up to 512 (two output tiles)
    # and the scene splits into chunks of 512 and 188 columns.
    scene = scene_with_nodata(tmp_path, 600, 700)
    buffers, reads = [], []

    class Recording(inference._RowAccumulator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            buffers.append((self.col0, self.sums.shape))

    read_strip = tiling._read_strip

    def recording_read(dataset, indexes, window, out):
        reads.append(window)
        read_strip(dataset, indexes, window, out)

    kwargs = {"bands": [1, 2], "patch_size": 48, "stride": 30, "batch_size": 5,
              "output": "both", "progress": False}  # fmt: skip
    whole = inference.predict(position_dependent, scene, tmp_path / "whole.tif",
                              chunk_size=700, **kwargs)  # fmt: skip
    monkeypatch.setattr(inference, "_RowAccumulator", Recording)
    monkeypatch.setattr(tiling, "_read_strip", recording_read)
    chunked = inference.predict(position_dependent, scene, tmp_path / "chunked.tif",
                                chunk_size=300, **kwargs)  # fmt: skip
    assert buffers == [(0, (3, 48 + 256, 512)), (512, (3, 48 + 256, 188))]
    # Each chunk reads its own columns plus at most one patch reaching into the next chunk.
    assert reads and max(w.width for w in reads) <= 512 + 48
    assert {w.col_off for w in reads} == {0, 540}  # the first patch starting in each chunk
    for a, b in zip(whole, chunked, strict=True):
        assert_identical_files(a, b)
    with rasterio.open(chunked[0]) as ds:
        assert ds.block_shapes[0] == (256, 256)


def test_smooth_blending_hides_patch_edge_errors_better_than_averaging(tmp_path):
    # A model that is right in the middle of a patch and wrong near its edges, as a CNN that
    # lacks context there: the smooth window must down-weight those edges.
    scene = float_scene(tmp_path, 64, 64, bands=1)

    def edge_errors(x):
        n, rows, cols, _ = x.shape
        r = np.minimum(np.arange(rows), np.arange(rows)[::-1])[:, None]
        c = np.minimum(np.arange(cols), np.arange(cols)[::-1])[None, :]
        near_edge = (np.minimum(r, c) < 4).astype(np.float32)
        return x + near_edge[None, :, :, None]

    errors = {}
    for blend in inference.BLEND_MODES:
        out = inference.predict(edge_errors, scene, tmp_path / f"{blend}.tif", bands=[1],
                                patch_size=16, stride=8, blend=blend, progress=False)  # fmt: skip
        # Inside the scene (at its border no neighbouring patch can take over).
        errors[blend] = np.abs(read_all(out) - read_all(scene))[:, 4:-4, 4:-4].mean()
    assert errors["smooth"] < 0.5 * errors["average"]


def test_blend_weights_are_positive_and_full_at_scene_borders():
    w = inference.blend_weights(16)
    assert (w > 0).all() and w.max() <= 1
    np.testing.assert_allclose(w, w[::-1])
    assert w[0] < 0.05 < 0.9 < w[7]
    assert (inference.blend_weights(16, at_start=True)[:8] == 1).all()
    assert (inference.blend_weights(16, at_end=True)[8:] == 1).all()
    assert (inference.blend_weights(16, "average") == 1).all()


def test_tta_averages_the_four_flips_and_unflips_them(tmp_path):
    scene = float_scene(tmp_path, 32, 32, bands=1)
    seen = []

    def top_row_marker(x):  # not flip-equivariant: marks the first row of whatever it gets
        seen.append(x.copy())
        y = np.zeros_like(x)
        y[:, 0] = 1.0
        return y

    out = inference.predict(top_row_marker, scene, tmp_path / "out.tif", bands=[1],
                            patch_size=32, blend="average", stride=32, tta=True,
                            progress=False)  # fmt: skip
    # Un-flipped, the mark lands on row 0 (identity, column flip) and on row 31 (row flips).
    result = read_all(out)[0]
    np.testing.assert_allclose(result[0], 0.5)
    np.testing.assert_allclose(result[31], 0.5)
    np.testing.assert_allclose(result[1:31], 0.0)
    assert len(seen) == 4
    np.testing.assert_array_equal(seen[1], seen[0][:, :, ::-1])


def test_model_calls_respect_batch_size(tmp_path):
    scene = float_scene(tmp_path, 40, 40, bands=1)
    sizes = []

    def counting(x):
        sizes.append(len(x))
        return x

    inference.predict(counting, scene, tmp_path / "out.tif", bands=[1], patch_size=16,
                      stride=8, batch_size=5, progress=False)  # fmt: skip
    windows = inference._patch_windows(40, 40, 16, 8)
    assert sum(sizes) == len(windows) and max(sizes) == 5


def test_scene_smaller_than_patch_is_mirror_padded(tmp_path):
    scene = float_scene(tmp_path, 5, 9, bands=1)
    shapes = []

    def recording(x):
        shapes.append(x.shape)
        return x

    out = inference.predict(recording, scene, tmp_path / "out.tif", bands=[1], patch_size=16,
                            progress=False)  # fmt: skip
    assert shapes == [(1, 16, 16, 1)]  # the model sees a full patch
    np.testing.assert_allclose(read_all(out), read_all(scene), atol=1e-6)


# --------------------------------------------------------------------------------------------
# Model card: bands, scaling, threshold, classes
# --------------------------------------------------------------------------------------------


def test_card_picks_bands_by_name_and_applies_its_scaling(tmp_path):
    data = synthetic_reflectance(40, 40, seed=2)
    shuffled = ("nir", "red", "green", "blue")  # file order differs from the card's
    scene = write_geotiff(tmp_path / "scene.tif", data[::-1], band_names=shuffled)
    out = inference.predict(identity, scene, tmp_path / "out.tif", card=CARD, progress=False)
    np.testing.assert_allclose(read_all(out), data.astype("float32") * 1e-4, rtol=1e-6)
    with rasterio.open(out) as ds:
        assert ds.descriptions == tuple(f"probability_{i}" for i in range(4))


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int32", "float32", "float64"])
@pytest.mark.parametrize("offset", [0.0, -0.1])
def test_model_inputs_are_scaled_exactly_as_scale_inputs(tmp_path, dtype, offset):
    # predict reads 8/16-bit and float32 rasters straight into float32 (GDAL casts), other
    # types as they are, and scales in place: the model must see the same float32 values, bit
    # for bit, as models.scale_inputs gives on the raw values. Side-by-side patches with plain
    # averaging pass them through unchanged (the shifted last patch adds x twice, halved).
    from helpers.models import scale_inputs

    rng = np.random.default_rng(3)
    data = (rng.random((4, 45, 38)) * 3000 + 1).astype(dtype)
    scene = write_geotiff(tmp_path / f"{dtype}.tif", data, band_names=SCENE_BANDS, blocksize=16)
    card = dict(CARD, scaling={"method": "linear", "scale": 1.7e-4, "offset": offset})
    seen = []

    def recording(x: np.ndarray) -> np.ndarray:
        seen.append(x.copy())
        return x

    out = inference.predict(recording, scene, tmp_path / "out.tif", card=card, patch_size=16,
                            stride=16, blend="average", batch_size=5, progress=False)  # fmt: skip
    reference = scale_inputs(data.transpose(1, 2, 0), card)
    assert all(x.dtype == np.float32 and x.shape[1:] == (16, 16, 4) for x in seen)
    np.testing.assert_array_equal(read_all(out), reference.transpose(2, 0, 1))
    # And the first batch is exactly the first five windows' raw values, scaled.
    for x, window in zip(seen[0], inference._patch_windows(45, 38, 16, 16), strict=False):
        rows, cols = window.toslices()
        np.testing.assert_array_equal(x, reference[rows, cols])


def test_batch_arrays_are_reused_for_keras_models_only(tmp_path):
    # A Keras model is done with its input when it returns, so predict writes later batches
    # into the same few arrays (no fresh memory per batch); any other callable may keep what
    # it was given, so it must get arrays of its own, left as they were.
    scene = float_scene(tmp_path, 200, 150, bands=2)
    kwargs = {"bands": [1, 2], "patch_size": 32, "stride": 16, "batch_size": 3,
              "progress": False}  # fmt: skip
    kept = []

    def keeping(x: np.ndarray) -> np.ndarray:
        kept.append(x)
        return x[..., :1] * 2

    class KerasLike:
        def __init__(self) -> None:
            self.addresses: set[int] = set()

        def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
            self.addresses.add(x.__array_interface__["data"][0])
            return x[..., :1] * 2

    class KerasView(KerasLike):
        def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
            super().predict_on_batch(x)
            return x[..., 1:]  # a view of the batch: blended later, so never reused meanwhile

    model = KerasLike()
    fresh = inference.predict(keeping, scene, tmp_path / "fresh.tif", **kwargs)
    reused = inference.predict(model, scene, tmp_path / "reused.tif", **kwargs)
    assert_identical_files(fresh, reused)
    assert len(model.addresses) <= inference.PREFETCH_BATCHES + 2 < len(kept)
    viewing = KerasView()
    viewed = inference.predict(viewing, scene, tmp_path / "view.tif", **kwargs)
    reference = inference.predict(lambda x: x[..., 1:], scene, tmp_path / "ref.tif", **kwargs)
    assert_identical_files(viewed, reference)
    data = read_all(scene)
    windows = inference._patch_windows(200, 150, 32, 16)
    assert sum(len(x) for x in kept) == len(windows)
    for i, window in enumerate(windows):
        rows, cols = window.toslices()
        np.testing.assert_array_equal(kept[i // 3][i % 3], data[:, rows, cols].transpose(1, 2, 0))


def test_outputs_are_tiled_and_compressed_as_asked(tmp_path):
    scene = float_scene(tmp_path, 300, 280, bands=1)
    out = tmp_path / "out.tif"
    for compress in ("deflate", "none", "zstd"):
        inference.predict(identity, scene, out, bands=[1], patch_size=64, output="both",
                          compress=compress, overwrite=True, progress=False)  # fmt: skip
        for path in inference.output_paths(out, "both"):
            with rasterio.open(path) as ds:
                found = ds.compression.name.lower() if ds.compression else "none"
                assert found == compress, path
                # The floating-point predictor for DEFLATE probabilities (smallest files), none
                # for ZSTD (cheapest to write) and for the uint8 classes.
                predictor = ds.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR", "1")
                floats = ds.dtypes[0] == "float32"
                assert predictor == ("3" if floats and compress == "deflate" else "1"), path
        np.testing.assert_allclose(read_all(inference.output_paths(out, "both")[0]),
                                   read_all(scene), atol=1e-6)  # fmt: skip


def test_card_from_a_file(tmp_path):
    from helpers.models import write_model_card

    card_path = write_model_card(tmp_path / "model.keras", **CARD)
    scene = write_geotiff(tmp_path / "scene.tif", synthetic_reflectance(20, 20),
                          band_names=SCENE_BANDS)  # fmt: skip
    out = inference.predict(lambda x: x[..., 3:], scene, tmp_path / "out.tif", card=card_path,
                            patch_size=8, progress=False)  # fmt: skip
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("probability_vegetation",)


def test_dict_card_is_checked_before_predicting(tmp_path):
    scene = write_geotiff(tmp_path / "scene.tif", synthetic_reflectance(20, 20),
                          band_names=SCENE_BANDS)  # fmt: skip
    calls = []
    no_scaling = {k: v for k, v in CARD.items() if k != "scaling"}
    with pytest.raises(ValueError, match=r"given as a dict lacks.*'scaling'"):  # not KeyError
        inference.predict(calls.append, scene, tmp_path / "out.tif", card=no_scaling,
                          patch_size=8, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="'bands' must be a non-empty list"):
        inference.predict_tile_grid(calls.append, scene, tmp_path / "grid.tif",
                                    card=dict(CARD, bands="red"), progress=False)  # fmt: skip
    assert calls == [] and sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


@pytest.mark.parametrize("output", ["probabilities", "both"])
def test_folder_as_out_path_fails_before_predicting(tmp_path, output):
    scene = write_geotiff(tmp_path / "scene.tif", synthetic_reflectance(20, 20),
                          band_names=SCENE_BANDS)  # fmt: skip
    folder = tmp_path / "predictions"
    folder.mkdir()
    calls = []

    def model(x):
        calls.append(len(x))
        return x

    for overwrite in (False, True):
        with pytest.raises(IsADirectoryError, match=r"out_path=.*predictions.*is a folder.*\.tif"):
            inference.predict(model, scene, folder, card=CARD, patch_size=8, output=output,
                              overwrite=overwrite, progress=False)  # fmt: skip
        with pytest.raises(IsADirectoryError, match="is a folder"):
            inference.predict_tile_grid(model, scene, folder, card=CARD, overwrite=overwrite,
                                        progress=False)  # fmt: skip
    assert calls == []  # checked before the first batch, not after the whole scene
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions", "scene.tif"]


_FULL_DISK_CHILD = """
import resource, signal, sys
from pathlib import Path
import numpy as np
from conftest import SCENE_BANDS, synthetic_reflectance, write_geotiff
from helpers import inference
root = Path(sys.argv[1])
card = {"bands": list(SCENE_BANDS), "scaling": {"method": "linear", "scale": 1e-4}}
scenes = {n: write_geotiff(root / f"scene{n}.tif", synthetic_reflectance(n, n),
                           band_names=SCENE_BANDS) for n in (64, 128)}
(root / "out").mkdir()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails like ENOSPC
resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
noise = lambda x: np.random.default_rng(0).random(x.shape[:3] + (2,)).astype("float32")
for n, output in ((64, "probabilities"), (128, "both")):  # fails on closing / while writing
    try:
        inference.predict(noise, scenes[n], root / "out" / f"pred{n}.tif", card=card,
                          patch_size=16, output=output, progress=False)
        print("no error")
    except OSError as exc:
        print(type(exc).__name__, exc)
"""


def test_failed_write_names_the_output_and_leaves_nothing(tmp_path):
    """A full disk shows only on GDAL's stderr; the error must name the output, and a write
    that failed while closing must not leave a truncated map under the output's name."""
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests)])}
    result = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_CHILD, str(tmp_path)], cwd=tests.parent, env=env,
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout + result.stderr
    for line, name in zip(lines, ("pred64.tif", "pred128"), strict=True):
        assert line.startswith("RasterioIOError") and name in line and "disk full" in line
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


def test_unnamed_bands_are_taken_by_position_with_a_warning(tmp_path):
    data = synthetic_reflectance(20, 20)
    scene = write_geotiff(tmp_path / "scene.tif", data, band_names=None)
    with pytest.warns(UserWarning, match="no band names"):
        out = inference.predict(identity, scene, tmp_path / "out.tif", card=CARD,
                                patch_size=8, progress=False)  # fmt: skip
    np.testing.assert_allclose(read_all(out), data * np.float32(1e-4), rtol=1e-6)


def test_band_mismatch_names_both_lists(tmp_path):
    named = write_geotiff(tmp_path / "named.tif", synthetic_reflectance(20, 20)[:3],
                          band_names=("blue", "green", "red"))  # fmt: skip
    with pytest.raises(RasterError, match=r"missing: \['nir'\]") as info:
        inference.predict(identity, named, tmp_path / "a.tif", card=CARD, progress=False)
    assert "['blue', 'green', 'red', 'nir']" in str(info.value)
    assert "['blue', 'green', 'red']" in str(info.value)
    unnamed = write_geotiff(tmp_path / "unnamed.tif", synthetic_reflectance(20, 20)[:3])
    with pytest.raises(RasterError, match="3 unnamed band"):
        inference.predict(identity, unnamed, tmp_path / "b.tif", card=CARD, progress=False)
    assert not (tmp_path / "a.tif").exists() and not (tmp_path / "b.tif").exists()


def test_nodata_stays_nodata_and_classes_use_the_card_threshold(tmp_path):
    data = synthetic_reflectance(48, 48, seed=4)
    data[:, :10, :12] = 0  # nodata block
    scene = write_geotiff(tmp_path / "scene.tif", data, band_names=SCENE_BANDS)
    prob, classes = inference.predict(
        lambda x: x[..., 3:], scene, tmp_path / "pred.tif", card=CARD, output="both",
        patch_size=16, progress=False,
    )  # fmt: skip
    assert (prob.name, classes.name) == ("pred_prob.tif", "pred_class.tif")
    p, c = read_all(prob)[0], read_all(classes)[0]
    nir = data[3] * np.float32(1e-4)
    assert np.isnan(p[:10, :12]).all() and (c[:10, :12] == 255).all()
    valid = np.ones_like(c, dtype=bool)
    valid[:10, :12] = False
    np.testing.assert_allclose(p[valid], nir[valid], rtol=1e-6)
    np.testing.assert_array_equal(c[valid], (nir[valid] >= 0.3).astype("uint8"))
    assert {0, 1} <= set(np.unique(c[valid]).tolist())
    with rasterio.open(classes) as ds:
        assert ds.dtypes[0] == "uint8" and ds.nodata == 255
        assert ds.tags()["class_1"] == "vegetation"


def nan_where_input_is_nan_or_high(x: np.ndarray) -> np.ndarray:
    """A model whose output is NaN where its input is, and where band 1 is above 0.8."""
    y = x[..., :1].copy()
    y[y > 0.8] = np.nan
    return y


@pytest.mark.parametrize("output", ["both", "classes"])
def test_nan_probabilities_are_class_nodata_with_a_warning(tmp_path, output):
    data = np.random.default_rng(5).random((1, 24, 24)).astype("float32") * 0.7
    data[0, 2:5, 3:7] = np.nan  # NaN pixels, no nodata declared
    data[0, 10:12, 10:13] = 0.9  # the "model" diverges here
    scene = write_geotiff(tmp_path / "nan.tif", data, nodata=None)
    expected_nan = np.isnan(data[0]) | (data[0] > 0.8)
    with pytest.warns(UserWarning, match=f"{expected_nan.sum()} pixel.*NaN probabilities"):
        out = inference.predict(nan_where_input_is_nan_or_high, scene, tmp_path / "p.tif",
                                bands=[1], patch_size=8, output=output, threshold=0.5,
                                progress=False)  # fmt: skip
    classes = read_all(out[1] if output == "both" else out)[0]
    np.testing.assert_array_equal(classes == 255, expected_nan)
    np.testing.assert_array_equal(classes[~expected_nan], (data[0][~expected_nan] >= 0.5))


def test_nan_in_one_channel_is_class_nodata_not_the_argmax(tmp_path):
    scene = float_scene(tmp_path, 16, 16, bands=3)

    def half_nan(x: np.ndarray) -> np.ndarray:
        y = x.copy()
        y[:, :4, :, 1] = np.nan  # channel 1 diverges in the first rows of every patch
        return y

    with pytest.warns(UserWarning, match="NaN probabilities"):
        out = inference.predict(half_nan, scene, tmp_path / "c.tif", bands=[1, 2, 3],
                                patch_size=8, stride=8, blend="average", output="classes",
                                progress=False)  # fmt: skip
    classes = read_all(out)[0]
    rows = np.arange(16) % 8 < 4
    assert (classes[rows] == 255).all()
    expected = np.argmax(read_all(scene), axis=0)
    np.testing.assert_array_equal(classes[~rows], expected[~rows])


def test_multichannel_classes_are_the_argmax_mapped_to_card_class_ids(tmp_path):
    scene = float_scene(tmp_path, 24, 24, bands=3)
    card = {**CARD, "bands": ["band_1", "band_2", "band_3"],
            "scaling": {"method": "linear", "scale": 1.0},
            "classes": {1: "water", 2: "trees", 5: "road"}}  # fmt: skip
    out = inference.predict(identity, scene, tmp_path / "c.tif", card=card, bands=[1, 2, 3],
                            output="classes", patch_size=8, progress=False)  # fmt: skip
    expected = np.array([1, 2, 5])[np.argmax(read_all(scene), axis=0)]
    np.testing.assert_array_equal(read_all(out)[0], expected)
    with pytest.raises(ValueError, match="argmax"):
        inference.predict(identity, scene, tmp_path / "t.tif", card=card, bands=[1, 2, 3],
                          output="classes", threshold=0.5, progress=False)  # fmt: skip


def test_keras_model(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 4))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    scene = write_geotiff(tmp_path / "scene.tif", synthetic_reflectance(40, 40),
                          band_names=SCENE_BANDS)  # fmt: skip
    out = inference.predict(model, scene, tmp_path / "out.tif", card=CARD, batch_size=4,
                            progress=False)  # fmt: skip
    x = synthetic_reflectance(40, 40).transpose(1, 2, 0)[None].astype("float32") * 1e-4
    expected = np.asarray(model.predict_on_batch(x))[0, :, :, 0]
    np.testing.assert_allclose(read_all(out)[0], expected, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Outputs: georeferencing, overwrite, atomicity; bad input
# --------------------------------------------------------------------------------------------


def test_output_is_on_the_scene_grid(tmp_path):
    transform = Affine(10.0, 0.0, 300_000.0, 0.0, -10.0, 5_000_000.0)
    scene = write_geotiff(tmp_path / "scene.tif", np.ones((1, 30, 20), "float32"),
                          transform=transform, nodata=None)  # fmt: skip
    out = inference.predict(identity, scene, tmp_path / "out.tif", bands=[1], patch_size=8,
                            progress=False)  # fmt: skip
    with rasterio.open(out) as ds:
        assert ds.crs == rasterio.crs.CRS.from_string(UTM_CRS)
        assert ds.transform == transform and ds.shape == (30, 20)


def test_refuses_to_overwrite_unless_asked(tmp_path):
    scene = float_scene(tmp_path, 16, 16, bands=1)
    out = tmp_path / "out.tif"
    out.write_text("keep me")
    kwargs = {"bands": [1], "patch_size": 8, "progress": False}
    with pytest.raises(FileExistsError, match="overwrite=True"):
        inference.predict(identity, scene, out, **kwargs)
    assert out.read_text() == "keep me"
    inference.predict(identity, scene, out, overwrite=True, **kwargs)
    np.testing.assert_allclose(read_all(out), read_all(scene), atol=1e-6)
    both = tmp_path / "pred.tif"
    (tmp_path / "pred_class.tif").write_text("keep me")
    with pytest.raises(FileExistsError, match="pred_class.tif"):
        inference.predict(identity, scene, both, output="both", **kwargs)


def test_a_failing_model_leaves_no_output(tmp_path):
    scene = float_scene(tmp_path, 64, 64, bands=1)
    calls = []

    def fails_later(x):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("out of memory")
        return x

    with pytest.raises(RuntimeError, match="out of memory"):
        inference.predict(fails_later, scene, tmp_path / "out.tif", bands=[1], patch_size=16,
                          batch_size=2, progress=False)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == [scene.name]


def test_a_rerun_removes_the_temporary_files_of_a_killed_run(tmp_path):
    scene = float_scene(tmp_path, 16, 16, bands=1)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a run killed while writing: its process is gone
    out = tmp_path / "pred.tif"
    stale = [tmp_path / f".{p.name}.{child.pid}.0123456789ab.partial"
             for p in inference.output_paths(out, "both")]  # fmt: skip
    for path in stale:
        path.write_bytes(b"half a GeoTIFF")
    inference.predict(identity, scene, out, bands=[1], patch_size=8, output="both",
                      progress=False)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [scene.name, "pred_prob.tif", "pred_class.tif"]
    )


def test_a_pair_cut_between_its_renames_is_redone_without_overwrite(tmp_path, monkeypatch):
    scene = float_scene(tmp_path, 16, 16, bands=1)
    kwargs = {"bands": [1], "patch_size": 8, "output": "both", "progress": False}
    clean = inference.predict(identity, scene, tmp_path / "clean" / "pred.tif", **kwargs)
    out = tmp_path / "pred.tif"
    prob, classes = inference.output_paths(out, "both")
    real_replace, renamed = os.replace, []

    def dies_after_one_output(src, dst):
        if Path(dst) in (prob, classes) and renamed:
            raise KeyboardInterrupt  # the process stops between the two renames
        renamed.append(dst)
        real_replace(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", dies_after_one_output)
        with pytest.raises(KeyboardInterrupt):
            inference.predict(identity, scene, out, **kwargs)
    assert not classes.exists()  # never a class map without its probabilities
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([scene.name, "clean", prob.name])
    with pytest.warns(UserWarning, match="pred_prob.tif has no pred_class.tif"):
        inference.predict(identity, scene, out, **kwargs)
    for written, reference in zip((prob, classes), clean, strict=True):
        np.testing.assert_array_equal(read_all(written), read_all(reference))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        inference.predict(identity, scene, out, **kwargs)  # a complete pair is kept


def test_scene_without_crs_is_predicted_with_a_warning(tmp_path):
    scene = write_geotiff(tmp_path / "scene.tif", np.ones((1, 16, 16), "float32"), crs=None,
                          nodata=None)  # fmt: skip
    with pytest.warns(UserWarning, match="no coordinate reference system"):
        out = inference.predict(identity, scene, tmp_path / "out.tif", bands=[1],
                                patch_size=8, progress=False)  # fmt: skip
    with rasterio.open(out) as ds:
        assert ds.crs is None
    np.testing.assert_allclose(read_all(out), 1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stride": 20}, "larger than patch_size"),
        ({"stride": 16}, 'blend="average"'),
        ({"stride": 0}, "positive"),
        ({"blend": "gaussian"}, "blend="),
        ({"output": "mask"}, "output="),
        ({"threshold": 1.5}, "threshold"),
        ({"bands": None}, "bands is required"),
        ({"patch_size": None}, "patch_size is required"),
        ({"chunk_size": 0}, "chunk_size must be a positive"),
        ({"compress": "jpeg"}, "compress="),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    scene = float_scene(tmp_path, 32, 32, bands=1)
    arguments = {"bands": [1], "patch_size": 16, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=message):
        inference.predict(identity, scene, tmp_path / "out.tif", **arguments)


def test_stride_equal_to_patch_works_with_average(tmp_path):
    scene = float_scene(tmp_path, 40, 40, bands=1)
    out = inference.predict(identity, scene, tmp_path / "out.tif", bands=[1], patch_size=16,
                            stride=16, blend="average", progress=False)  # fmt: skip
    np.testing.assert_allclose(read_all(out), read_all(scene))


def test_model_with_wrong_output_shape(tmp_path):
    scene = float_scene(tmp_path, 16, 16, bands=1)
    with pytest.raises(ValueError, match="predict_tile_grid"):
        inference.predict(lambda x: x.mean(axis=(1, 2)), scene, tmp_path / "out.tif",
                          bands=[1], patch_size=8, progress=False)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Tile classifier grid
# --------------------------------------------------------------------------------------------


def band1_mean(x: np.ndarray) -> np.ndarray:
    """A fake sigmoid classifier: the tile's mean of (scaled) band 1."""
    return x[..., 0].mean(axis=(1, 2))[:, None]


def expected_grid(data, tile, stride, nodata, max_fraction, scale=1e-4):
    """The grid computed directly: every tile, its nodata fraction, its band-1 mean."""
    _, height, width = data.shape
    rows, cols = math.ceil(height / stride), math.ceil(width / stride)
    padded = np.full((data.shape[0], rows * stride + tile, cols * stride + tile), nodata)
    padded[:, :height, :width] = data
    sums, counts = np.zeros((rows, cols)), np.zeros((rows, cols))
    r = 0
    while True:
        c = 0
        while True:
            block = padded[:, r : r + tile, c : c + tile]
            fraction = (block == nodata).all(axis=0).mean()
            if fraction <= max_fraction:
                span = tile // stride
                sums[r // stride : r // stride + span, c // stride : c // stride + span] += (
                    block[0].astype("float64").mean() * scale
                )
                counts[r // stride : r // stride + span, c // stride : c // stride + span] += 1
            if c + tile >= width:
                break
            c += stride
        if r + tile >= height:
            break
        r += stride
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


@pytest.mark.parametrize("stride", [4, 8, 16])
def test_tile_grid_holds_the_mean_of_covering_tiles(tmp_path, stride):
    data = synthetic_reflectance(50, 70, seed=5)
    data[:, :30, :30] = 0  # enough nodata to skip some tiles
    scene = write_geotiff(tmp_path / "scene.tif", data, band_names=SCENE_BANDS)
    grid_path, tiles = inference.predict_tile_grid(
        band1_mean, scene, tmp_path / "grid.tif", card=CARD, stride=stride, batch_size=5,
        return_tiles=True, progress=False,
    )  # fmt: skip
    expected = expected_grid(data, 16, stride, 0, 0.5)
    with rasterio.open(grid_path) as ds, rasterio.open(scene) as src:
        grid = ds.read(1)
        t = src.transform
        assert ds.transform == Affine(t.a * stride, 0, t.c, 0, t.e * stride, t.f)
        assert ds.crs == src.crs and ds.descriptions == ("probability_vegetation",)
    assert grid.shape == (math.ceil(50 / stride), math.ceil(70 / stride))
    np.testing.assert_array_equal(np.isnan(grid), np.isnan(expected))
    assert np.isnan(grid).any()  # cells under the nodata corner only
    np.testing.assert_allclose(grid, expected, rtol=1e-5)
    # The per-tile table: one row per tile, skipped tiles have no probability.
    assert list(tiles.columns[:4]) == ["id", "row_off", "col_off", "height"]
    skipped = tiles.status == "skipped_nodata"
    assert skipped.any() and tiles.loc[skipped, "probability"].isna().all()
    assert (tiles.loc[skipped, "nodata_fraction"] > 0.5).all()
    row = tiles[(tiles.row_off == 32) & (tiles.col_off == 48)].iloc[0]
    tile = data[0, 32:48, 48:64]
    assert row.id == "r000032_c000048" and row.status == "predicted"
    assert row.probability == pytest.approx(tile.mean() * 1e-4, rel=1e-5)
    assert (tiles.maxx - tiles.minx == 16).all()


def test_tile_grid_softmax_outputs_and_bad_stride(tmp_path):
    scene = write_geotiff(tmp_path / "scene.tif", synthetic_reflectance(32, 32),
                          band_names=SCENE_BANDS)  # fmt: skip
    card = {**CARD, "classes": ["water", "land", "built"]}

    def softmax3(x):
        return np.tile(np.float32([0.2, 0.5, 0.3]), (len(x), 1))

    path = inference.predict_tile_grid(softmax3, scene, tmp_path / "g.tif", card=card,
                                       progress=False)  # fmt: skip
    with rasterio.open(path) as ds:
        assert ds.count == 3 and ds.shape == (4, 4)
        assert ds.descriptions == ("probability_water", "probability_land", "probability_built")
        np.testing.assert_allclose(ds.read(2), 0.5)
    with pytest.raises(ValueError, match="must divide"):
        inference.predict_tile_grid(softmax3, scene, tmp_path / "h.tif", card=card, stride=6)
    with pytest.raises(FileExistsError):
        inference.predict_tile_grid(softmax3, scene, path, card=card, progress=False)


def test_tile_grid_rejects_a_per_pixel_model(tmp_path):
    scene = write_geotiff(tmp_path / "scene.tif", synthetic_reflectance(32, 32),
                          band_names=SCENE_BANDS)  # fmt: skip
    with pytest.raises(ValueError, match="use predict"):
        inference.predict_tile_grid(identity, scene, tmp_path / "g.tif", card=CARD,
                                    progress=False)  # fmt: skip
    assert not (tmp_path / "g.tif").exists()
