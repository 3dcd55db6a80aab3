"""Tests for helpers.tiling: the patch grid, streaming reads, writers, the index, resuming."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import SCENE_BANDS, synthetic_reflectance, write_geotiff
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from PIL import Image
from rasterio.windows import Window

from helpers import tiling

HEIGHT, WIDTH, BLOCK = 100, 90, 16


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    """4-band uint16 100 x 90 scene, 16 x 16 tiles, nodata 0 in the top-left 24 x 24 corner,
    a row of uint16 maximum values so 8-bit scaling must clip, overviews for the percentiles."""
    data = synthetic_reflectance(HEIGHT, WIDTH, seed=3)
    data[:, :24, :24] = 0
    data[:, 60, :] = 65535
    return write_geotiff(
        tmp_path / "scene.tif", data, band_names=SCENE_BANDS, blocksize=BLOCK, overviews=(2, 4)
    )


def direct_read(path: Path, window: Window, bands=None) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(bands, window=window, boundless=True, fill_value=ds.nodata)


def tree_sha256(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------


@st.composite
def grids(draw, edge: str):
    """A raster shape, a size and a stride <= size, with at most ~40 windows per axis."""
    height, width = draw(st.integers(1, 600)), draw(st.integers(1, 600))
    limit = (None, None) if edge == "pad" else (height, width)
    size, stride = [], []
    for dim, top in zip((height, width), limit, strict=True):
        s = draw(st.integers(1, top if top is not None else 700))
        size.append(s)
        stride.append(draw(st.integers(max(1, min(s, dim // 40)), s)))
    return height, width, tuple(size), tuple(stride)


def assert_grid_basics(windows, size):
    assert all((w.height, w.width) == size for w in windows)  # full size always
    keys = [(w.row_off, w.col_off) for w in windows]
    assert len(set(keys)) == len(keys)  # no duplicates
    assert keys == sorted(keys)  # row-major


@settings(max_examples=150, deadline=None)
@given(grids("shift"))
def test_shift_grid_covers_every_pixel_inside_the_raster(grid):
    height, width, size, stride = grid
    windows = tiling.tile_windows(height, width, size, stride)
    assert_grid_basics(windows, size)
    covered = np.zeros((height, width), dtype=bool)
    for w in windows:
        assert w.row_off >= 0 and w.col_off >= 0
        assert w.row_off + w.height <= height and w.col_off + w.width <= width
        covered[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] = True
    assert covered.all()


@settings(max_examples=150, deadline=None)
@given(grids("pad"))
def test_pad_grid_covers_every_pixel_on_the_regular_stride(grid):
    height, width, size, stride = grid
    windows = tiling.tile_windows(height, width, size, stride, edge="pad")
    assert_grid_basics(windows, size)
    covered = np.zeros((height, width), dtype=bool)
    for w in windows:
        assert w.row_off % stride[0] == 0 and w.col_off % stride[1] == 0
        assert w.row_off < height and w.col_off < width  # every window holds real pixels
        covered[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] = True
    assert covered.all()


@settings(max_examples=150, deadline=None)
@given(grids("drop"))
def test_drop_grid_never_exceeds_the_raster(grid):
    height, width, size, stride = grid
    windows = tiling.tile_windows(height, width, size, stride, edge="drop")
    assert_grid_basics(windows, size)
    assert windows  # size fits, so at least one window
    for w in windows:
        assert w.row_off % stride[0] == 0 and w.col_off % stride[1] == 0
        assert w.row_off + w.height <= height and w.col_off + w.width <= width
    # Complete: no further window on the regular stride would still fit.
    last = windows[-1]
    assert last.row_off + stride[0] + size[0] > height
    assert last.col_off + stride[1] + size[1] > width


def test_edge_modes_on_a_small_example():
    offsets = {
        edge: [(w.row_off, w.col_off) for w in tiling.tile_windows(10, 7, 4, edge=edge)]
        for edge in tiling.EDGE_MODES
    }
    assert offsets["shift"] == [(r, c) for r in (0, 4, 6) for c in (0, 3)]
    assert offsets["pad"] == [(r, c) for r in (0, 4, 8) for c in (0, 4)]
    assert offsets["drop"] == [(r, c) for r in (0, 4) for c in (0,)]
    rect = tiling.tile_windows(10, 7, (5, 3), (5, 2))
    assert [(w.height, w.width) for w in rect] == [(5, 3)] * 6


def test_overlap_to_stride():
    assert tiling.overlap_to_stride(256, 64) == 192
    assert tiling.overlap_to_stride((256, 128), (128, 0)) == (128, 128)
    with pytest.raises(ValueError, match="overlap"):
        tiling.overlap_to_stride(256, 256)
    with pytest.raises(ValueError, match="overlap"):
        tiling.overlap_to_stride(256, -1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 120}, 'edge="pad"'),
        ({"size": 120, "edge": "drop"}, 'edge="pad"'),
        ({"size": 16, "stride": 0}, "stride must be positive"),
        ({"size": 16, "stride": -4}, "stride must be positive"),
        ({"size": 16, "stride": 20}, "allow_gaps"),
        ({"size": 0}, "size must be positive"),
        ({"size": 16, "edge": "reflect"}, "edge"),
    ],
)
def test_bad_grid_arguments_raise_with_a_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiling.tile_windows(HEIGHT, WIDTH, **kwargs)


def test_gaps_only_on_request_and_pad_accepts_a_patch_larger_than_the_raster():
    gappy = tiling.tile_windows(HEIGHT, WIDTH, 16, 20, allow_gaps=True)
    assert (gappy[1].col_off, gappy[-1].row_off) == (20, HEIGHT - 16)
    (single,) = tiling.tile_windows(HEIGHT, WIDTH, 128, edge="pad")
    assert (single.row_off, single.col_off, single.height) == (0, 0, 128)


def test_patch_id_bounds_transform_and_profile():
    window = Window(col_off=512, row_off=256, width=64, height=32)
    assert tiling.patch_id(window) == "r000256_c000512"
    transform = Affine(2, 0, 1000, 0, -2, 5000)
    assert tiling.window_transform(window, transform) == Affine(2, 0, 2024, 0, -2, 4488)
    assert tiling.window_bounds(window, transform) == (2024, 4424, 2152, 4488)
    profile = {"driver": "GTiff", "width": 900, "height": 900, "count": 4, "dtype": "uint16",
               "transform": transform, "tiled": True, "blockxsize": 256}  # fmt: skip
    patch = tiling.patch_profile(profile, window)
    assert (patch["width"], patch["height"], patch["count"]) == (64, 32, 4)
    assert patch["transform"] == Affine(2, 0, 2024, 0, -2, 4488)
    assert "blockxsize" not in patch and "blockxsize" in profile  # source profile untouched
    with pytest.raises(ValueError, match="integer"):
        tiling.patch_id(Window(0.5, 0, 4, 4))


# --------------------------------------------------------------------------------------------
# Streaming reads
# --------------------------------------------------------------------------------------------


def test_iter_patches_matches_direct_reads_in_row_major_order(scene):
    windows = tiling.tile_windows(HEIGHT, WIDTH, 32, 24, edge="pad")
    shuffled = [windows[i] for i in np.random.default_rng(0).permutation(len(windows))]
    out = list(tiling.iter_patches(scene, shuffled, bands=["red", 4]))
    assert [w for w, _ in out] == windows  # sorted back to row-major
    for window, patch in out:
        assert patch.shape == (2, 32, 32) and patch.dtype == np.uint16
        np.testing.assert_array_equal(patch, direct_read(scene, window, [3, 4]))
    edge_patch = out[-1][1]  # bottom-right: rows 72-103, cols 72-103; raster ends at 100 x 90
    assert (edge_patch[:, 28:, :] == 0).all() and (edge_patch[:, :, 18:] == 0).all()
    assert (edge_patch[:, :28, :18] != 0).all()
    inside = out[0][1]
    with pytest.raises(ValueError):
        inside[0, 0, 0] = 1  # views into the strip buffer are read-only
    last = list(tiling.iter_patches(scene, windows, bands=["red", 4], channels_last=True))
    for (window, patch), (same, band_first) in zip(last, out, strict=True):
        assert window == same and patch.shape == (32, 32, 2) and patch.dtype == np.uint16
        np.testing.assert_array_equal(patch, band_first.transpose(1, 2, 0))
    assert last[0][1].strides[1:] == (4, 2)  # pixel-interleaved: a patch row is contiguous
    turns = tiling.iter_patches(scene, windows, bands=["red", 4], channels_last=True,
                                reuse_strips=True)  # fmt: skip
    for (window, patch), (_, expected) in zip(turns, last, strict=True):
        np.testing.assert_array_equal(patch, expected, err_msg=str(window))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, HEIGHT - 1), st.integers(0, WIDTH - 1), st.integers(1, 40),
                  st.integers(1, 40)),
        min_size=1, max_size=8,
    )
)  # fmt: skip
def test_iter_patches_equals_boundless_reads_for_any_windows(tmp_path_factory, boxes):
    scene = tmp_path_factory.getbasetemp() / "any_windows.tif"
    if not scene.exists():
        write_geotiff(scene, synthetic_reflectance(HEIGHT, WIDTH, seed=5), blocksize=BLOCK)
    windows = [Window(c, r, w, h) for r, c, h, w in boxes]
    out = list(tiling.iter_patches(scene, windows, num_threads=1))
    assert [w for w, _ in out] == sorted(windows, key=lambda w: (w.row_off, w.col_off))
    for window, patch in out:
        np.testing.assert_array_equal(patch, direct_read(scene, window))
    # The layout models take: the same values, channels-last.
    last = list(tiling.iter_patches(scene, windows, channels_last=True))
    assert [w for w, _ in last] == [w for w, _ in out]
    for (window, patch), (_, band_first) in zip(last, out, strict=True):
        assert patch.shape == (window.height, window.width, 4)
        np.testing.assert_array_equal(patch, band_first.transpose(1, 2, 0))
    # Two strip buffers taking turns: the same patches, when each is copied as it comes.
    turns = tiling.iter_patches(scene, windows, channels_last=True, reuse_strips=True)
    for (window, patch), (_, expected) in zip(turns, last, strict=True):
        np.testing.assert_array_equal(patch, expected, err_msg=str(window))


def test_read_patch_pads_with_fill(scene):
    window = Window(80, 90, 16, 16)
    patch = tiling.read_patch(scene, window, fill=7)
    np.testing.assert_array_equal(patch[:, :10, :10], direct_read(scene, Window(80, 90, 10, 10)))
    assert (patch[:, 10:, :] == 7).all() and (patch[:, :, 10:] == 7).all()
    with pytest.raises(ValueError, match="does not overlap"):
        tiling.read_patch(scene, Window(200, 0, 8, 8))


@pytest.mark.parametrize(("size", "stride"), [(32, 32), (32, 16), (24, 8)])
def test_each_source_block_is_read_once(scene, monkeypatch, size, stride):
    reads = []
    original = tiling._read_strip

    def counting(dataset, indexes, window, out):
        reads.append(window)
        original(dataset, indexes, window, out)

    monkeypatch.setattr(tiling, "_read_strip", counting)
    windows = tiling.tile_windows(HEIGHT, WIDTH, size, stride, edge="pad")
    assert sum(1 for _ in tiling.iter_patches(scene, windows)) == len(windows)
    rows = [(int(w.row_off), int(w.row_off + w.height)) for w in reads]
    # Strips start on block rows, follow each other without overlap, and cover the scene once.
    assert all(start % BLOCK == 0 for start, _ in rows)
    assert [start for start, _ in rows] == [0] + [stop for _, stop in rows[:-1]]
    assert rows[-1][1] == HEIGHT
    assert len(reads) < len(windows)


def test_npz_extraction_streams_each_block_once(scene, tmp_path, monkeypatch):
    reads = []
    original = tiling._read_strip
    monkeypatch.setattr(
        tiling, "_read_strip", lambda ds, idx, w, out: reads.append(w) or original(ds, idx, w, out)
    )
    windows = tiling.tile_windows(HEIGHT, WIDTH, 24, 8, edge="pad")
    index = tiling.extract_patches(
        scene, tmp_path / "npz", windows, writer="npz", shard_size=5, max_nodata_fraction=1.0,
        progress=False,
    )  # fmt: skip
    rows = [(int(w.row_off), int(w.row_off + w.height)) for w in reads]
    assert [start for start, _ in rows] == [0] + [stop for _, stop in rows[:-1]]
    assert rows[-1][1] == HEIGHT
    assert len(index.files()) == -(-len(windows) // 5)  # shards written in the background
    for shard in index.files():
        data = tiling.read_shard(shard)
        for image, (r, c, h, w) in zip(data["images"], data["windows"], strict=True):
            np.testing.assert_array_equal(image, direct_read(scene, Window(c, r, w, h)))


def test_strips_skip_rows_no_window_needs(scene, monkeypatch):
    reads = []
    original = tiling._read_strip
    monkeypatch.setattr(
        tiling, "_read_strip", lambda ds, idx, w, out: reads.append(w) or original(ds, idx, w, out)
    )
    windows = [Window(0, 0, 16, 16), Window(32, 70, 16, 16), Window(5, 74, 16, 16)]
    for window, patch in tiling.iter_patches(scene, windows):
        np.testing.assert_array_equal(patch, direct_read(scene, window))
    assert [(w.row_off, w.height, w.col_off, w.width) for w in reads] == [
        (0, 16, 0, 48),
        (64, 32, 0, 48),
    ]


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


def test_geotiff_patches_keep_georeferencing_and_pixels(scene, tmp_path):
    windows = tiling.tile_windows(HEIGHT, WIDTH, 32, edge="pad")
    index = tiling.extract_patches(
        scene, tmp_path / "out", windows, writer="geotiff", max_nodata_fraction=0.95,
        progress=False, workers=2,
    )  # fmt: skip
    written = index.written
    assert len(written) == len(windows)  # even the padded corner, 90 % outside the raster
    with rasterio.open(scene) as src:
        for row in written.itertuples():
            window = Window(row.col_off, row.row_off, row.width, row.height)
            with rasterio.open(tmp_path / "out" / row.file) as patch:
                assert patch.crs == src.crs and patch.nodata == src.nodata
                assert patch.dtypes == src.dtypes and patch.descriptions == SCENE_BANDS
                assert patch.transform == rasterio.windows.transform(window, src.transform)
                assert patch.bounds == (row.minx, row.miny, row.maxx, row.maxy)
                np.testing.assert_array_equal(patch.read(), direct_read(scene, window))
    assert (tmp_path / "out" / "patches" / "r000096_c000064.tif").exists()  # padded corner
    np.testing.assert_array_equal(
        rasterio.open(tmp_path / "out/patches/r000096_c000064.tif").read()[:, 4:], 0
    )


@pytest.mark.parametrize(
    ("compress", "bands", "photometric"),
    [(None, None, None), ("deflate", None, None), ("jpeg", None, "ycbcr"), ("jpeg", [2], None)],
)
def test_geotiff_patches_of_a_jpeg_ycbcr_orthophoto(tmp_path, compress, bands, photometric):
    """The common orthophoto encoding (JPEG, YCbCr) gives patches that open and match it."""
    ortho = tmp_path / "ortho.tif"
    gradient = np.add.outer(np.arange(64), np.arange(64)).astype("uint8") * 2
    data = np.stack([gradient, gradient[::-1], 255 - gradient])
    profile = {
        "driver": "GTiff", "width": 64, "height": 64, "count": 3, "dtype": "uint8",
        "crs": "EPSG:32632", "transform": Affine(0.5, 0, 500000, 0, -0.5, 5000000),
        "compress": "jpeg", "photometric": "ycbcr", "tiled": True,
        "blockxsize": 16, "blockysize": 16,
    }  # fmt: skip
    with rasterio.open(ortho, "w", **profile) as dst:
        dst.write(data)
    index = tiling.extract_patches(
        ortho, tmp_path / "out", tiling.tile_windows(64, 64, 32), writer="geotiff",
        bands=bands, compress=compress, progress=False,
    )  # fmt: skip
    assert len(index.written) == 4
    for row in index.written.itertuples():
        window = Window(row.col_off, row.row_off, row.width, row.height)
        with rasterio.open(tmp_path / "out" / row.file) as patch:
            assert patch.profile.get("photometric") == photometric
            assert patch.transform == rasterio.windows.transform(window, profile["transform"])
            got = patch.read().astype(int)
        expected = direct_read(ortho, window, bands).astype(int)
        if compress == "jpeg":  # lossy again, so close rather than equal
            assert np.abs(got - expected).mean() < 3
        else:
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("writer", ["png", "jpeg"])
def test_complex_raster_to_images_names_the_file_and_the_fix(tmp_path, writer):
    data = (np.random.default_rng(0).random((1, 32, 32)) + 1j).astype("complex64")
    slc = write_geotiff(tmp_path / "slc.tif", data, nodata=None)
    with pytest.raises(ValueError, match="complex") as info:  # was numpy's TypeError
        tiling.extract_patches(slc, tmp_path / "out", tiling.tile_windows(32, 32, 16),
                               writer=writer, progress=False)  # fmt: skip
    assert str(slc) in str(info.value) and "need real values" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_index_files_csv_geojson_json(scene, tmp_path):
    import geopandas as gpd

    windows = tiling.tile_windows(HEIGHT, WIDTH, 32)
    index = tiling.extract_patches(scene, tmp_path / "out", windows, writer="npz", progress=False)
    loaded = tiling.PatchIndex.load(tmp_path / "out")
    assert list(loaded.table.columns) == tiling._INDEX_COLUMNS
    assert loaded.table["id"].tolist() == [tiling.patch_id(w) for w in windows]
    frame = gpd.read_file(tmp_path / "out" / "index.geojson")
    assert frame.crs.to_epsg() == 32633  # footprints in the raster's CRS
    np.testing.assert_allclose(
        frame.geometry.bounds.to_numpy(), index.table[["minx", "miny", "maxx", "maxy"]]
    )
    meta = json.loads((tmp_path / "out" / "index.json").read_text())
    assert meta["complete"] and meta["config"]["writer"] == "npz"
    assert meta["counts"] == {"skipped_nodata": 1, "written": len(windows) - 1}


def test_png_scaling_is_recorded_and_applied_exactly(scene, tmp_path):
    windows = tiling.tile_windows(HEIGHT, WIDTH, 32)
    index = tiling.extract_patches(scene, tmp_path / "png", windows, writer="png", progress=False)
    limits = index.metadata["scaling"]
    assert list(limits) == ["red", "green", "blue"]  # default bands by description
    assert all(high > low for low, high in limits.values())
    assert json.loads((tmp_path / "png" / "index.json").read_text())["scaling"] == limits
    for row in index.written.itertuples():
        window = Window(row.col_off, row.row_off, row.width, row.height)
        expected = tiling.scale_to_uint8(direct_read(scene, window, [3, 2, 1]), limits, nodata=0)
        picture = np.asarray(Image.open(tmp_path / "png" / row.file))
        assert picture.shape == (32, 32, 3)
        np.testing.assert_array_equal(picture, np.moveaxis(expected, 0, -1))
    # Explicit scaling: one (low, high) for all bands, clipped at both ends.
    explicit = tiling.extract_patches(
        scene, tmp_path / "grey", windows[-1:], writer="png", bands="nir", scaling=(0, 1000),
        progress=False,
    )  # fmt: skip
    assert explicit.metadata["scaling"] == {"nir": [0.0, 1000.0]}
    grey = np.asarray(Image.open(tmp_path / "grey" / explicit.table.file[0]))
    window = windows[-1]
    nir = direct_read(scene, window, [4])[0].astype(float)
    np.testing.assert_array_equal(grey, np.clip(np.rint(nir * 255 / 1000), 0, 255))


def test_jpeg_is_close_to_the_scaled_patch(scene, tmp_path):
    windows = tiling.tile_windows(HEIGHT, WIDTH, 32)[4:6]
    index = tiling.extract_patches(
        scene, tmp_path / "out", windows, writer="jpeg", scaling={"red": (0, 3000),
        "green": (0, 3000), "blue": (0, 3000)}, progress=False,
    )  # fmt: skip
    for row in index.written.itertuples():
        assert row.file.endswith(".jpg")
        window = Window(row.col_off, row.row_off, row.width, row.height)
        expected = np.moveaxis(
            tiling.scale_to_uint8(direct_read(scene, window, [3, 2, 1]), index.metadata["scaling"]),
            0,
            -1,
        )
        picture = np.asarray(Image.open(tmp_path / "out" / row.file)).astype(int)
        assert np.abs(picture - expected).mean() < 4
    with pytest.raises(ValueError, match="scaling has no"):
        tiling.extract_patches(
            scene, tmp_path / "bad", windows, writer="jpeg", scaling={"red": (0, 1)},
            progress=False,
        )  # fmt: skip


def test_npz_shards_hold_images_ids_labels_splits(scene, tmp_path):
    windows = tiling.tile_windows(HEIGHT, WIDTH, 32, 16, edge="shift")
    labels = [i % 2 for i in range(len(windows))]
    splits = ["train", "validation", "test", None] * (len(windows) // 4) + [None] * (
        len(windows) % 4
    )
    index = tiling.extract_patches(
        scene, tmp_path / "out", windows[::-1], writer="npz", labels=labels[::-1],
        splits=splits[::-1], shard_size=10, progress=False,
    )  # fmt: skip
    shards = sorted((tmp_path / "out" / "shards").glob("*.npz"))
    assert len(shards) == -(-len(windows) // 10)
    seen = []
    for shard in shards:
        data = tiling.read_shard(shard)
        assert data["images"].dtype == np.uint16 and data["images"].shape[1:] == (4, 32, 32)
        for image, pid, label, split, (r, c, h, w) in zip(
            data["images"], data["ids"], data["labels"], data["splits"], data["windows"],
            strict=True,
        ):  # fmt: skip
            position = [tiling.patch_id(x) for x in windows].index(pid)
            assert (label, split or None) == (labels[position], splits[position])
            np.testing.assert_array_equal(image, direct_read(scene, Window(c, r, w, h)))
            seen.append(str(pid))
    assert seen == index.written["id"].tolist()
    assert seen == sorted(seen)


def test_class_folders_are_readable_by_keras(scene, tmp_path):
    keras = pytest.importorskip("keras")
    windows = tiling.tile_windows(HEIGHT, WIDTH, 16)
    labels = [(i % 3) - 1 for i in range(len(windows))]  # -1 ignore, 0, 1
    splits = ["train" if i % 5 else "validation" for i in range(len(windows))]
    splits[7] = None
    index = tiling.extract_patches(
        scene, tmp_path / "ds", windows, writer="png", labels=labels, splits=splits,
        layout="class_folders", class_names={0: "no_roof", 1: "roof"}, progress=False,
    )  # fmt: skip
    table = index.table
    assert set(table.loc[table.label == -1, "status"]) == {"skipped_label"}
    assert table.loc[7, "status"] == "skipped_split"  # label 0, split None
    expected_train = ((table.split == "train") & (table.status == "written")).sum()
    assert (table.loc[table.status == "written", "file"].str.match(r"^(train|validation)/")).all()
    dataset = keras.utils.image_dataset_from_directory(
        tmp_path / "ds" / "train", image_size=(16, 16), batch_size=64, shuffle=False
    )
    assert dataset.class_names == ["no_roof", "roof"]
    assert sum(int(images.shape[0]) for images, _ in dataset) == expected_train


def test_class_folders_need_labels_and_splits(scene, tmp_path):
    windows = tiling.tile_windows(HEIGHT, WIDTH, 32)
    with pytest.raises(ValueError, match="needs labels and splits"):
        tiling.extract_patches(scene, tmp_path, windows, writer="png", layout="class_folders")
    with pytest.raises(ValueError, match="labels has 2 entries"):
        tiling.extract_patches(scene, tmp_path, windows, labels=[0, 1])


@pytest.mark.parametrize("name", ["../../../x", "a/b", "a\\b", "..", ".", "", "a\0b", 3])
def test_class_names_must_be_plain_folder_names(scene, tmp_path, name):
    windows = tiling.tile_windows(HEIGHT, WIDTH, 32)
    out = tmp_path / "deep" / "er" / "out"
    with pytest.raises(ValueError, match=r"class_names\[1\] = .* is not a plain folder name"):
        tiling.extract_patches(
            scene, out, windows, writer="png", layout="class_folders", progress=False,
            labels=[1] * len(windows), splits=["train"] * len(windows),
            class_names={0: "negative", 1: name},
        )  # fmt: skip
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [scene]  # nothing written


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.uint8, array_shapes(min_dims=3, max_dims=3, max_side=5), elements=st.integers(0, 2))
)
def test_nodata_pixels_are_those_where_every_band_equals_nodata(array):
    np.testing.assert_array_equal(tiling._nodata_pixels(array, 0), (array == 0).all(axis=0))
    floats = np.where(array == 0, np.nan, array.astype(np.float32))
    np.testing.assert_array_equal(tiling._nodata_pixels(floats, float("nan")), (array == 0).all(0))


def test_npz_shards_need_one_patch_size(scene, tmp_path):
    windows = [Window(0, 40, 16, 16), Window(20, 40, 24, 24)]
    with pytest.raises(ValueError, match="npz shards need windows of one size"):
        tiling.extract_patches(scene, tmp_path / "mixed", windows, writer="npz", progress=False)
    assert not list((tmp_path / "mixed" / "shards").glob("*.npz"))


def test_mostly_nodata_patches_are_skipped(scene, tmp_path):
    windows = [Window(0, 0, 32, 32), Window(8, 8, 32, 32), Window(40, 40, 32, 32)]
    # nodata fractions: 24*24/1024 = 0.5625, 16*16/1024 = 0.25, 0
    strict = tiling.extract_patches(
        scene, tmp_path / "a", windows, writer="npz", max_nodata_fraction=0.2, progress=False
    )
    assert strict.table.status.tolist() == ["skipped_nodata", "skipped_nodata", "written"]
    loose = tiling.extract_patches(scene, tmp_path / "b", windows, writer="npz", progress=False)
    assert loose.table.status.tolist() == ["skipped_nodata", "written", "written"]


def test_nan_counts_as_nodata_and_png_patches_keep_their_colours(tmp_path):
    """A float scene marking nodata with NaN, without a declared nodata value."""
    data = np.random.default_rng(7).uniform(100, 200, (3, 64, 64)).astype("float32")
    data[:, :32, :24] = np.nan  # 24/32 of the top-left patch: above max_nodata_fraction
    data[0, 40:44, 40:48] = np.nan  # 32 pixels (1 band) of the bottom-right patch
    path = write_geotiff(tmp_path / "nan.tif", data, nodata=None)
    windows = tiling.tile_windows(64, 64, 32)
    index = tiling.extract_patches(path, tmp_path / "png", windows, writer="png", progress=False)
    assert index.table.status.tolist() == ["skipped_nodata", "written", "written", "written"]
    limits = index.metadata["scaling"]
    for (low, high), band in zip(limits.values(), data, strict=True):
        assert [low, high] == pytest.approx(np.nanpercentile(band, [2, 98]).tolist())
    for row in index.written.itertuples():
        window = Window(row.col_off, row.row_off, row.width, row.height)
        patch = direct_read(path, window)
        picture = np.moveaxis(np.asarray(Image.open(tmp_path / "png" / row.file)), -1, 0)
        valid = ~np.isnan(patch).any(axis=0)
        assert picture[:, valid].mean() > 50  # not black
        assert (picture[:, ~valid] == 0).all()
        np.testing.assert_array_equal(picture, tiling.scale_to_uint8(patch, limits))
    strict = tiling.extract_patches(path, tmp_path / "npz", windows, writer="npz",
                                    max_nodata_fraction=0.02, progress=False)  # fmt: skip
    # 32 NaN pixels of 1024 is 0.031 > 0.02: the bottom-right patch is skipped too
    assert strict.table.status.tolist() == ["skipped_nodata", "written", "written",
                                            "skipped_nodata"]  # fmt: skip


def test_a_raster_without_crs_is_tiled_with_a_warning(tmp_path):
    path = write_geotiff(tmp_path / "nocrs.tif", np.ones((1, 32, 32), "uint16"), crs=None)
    windows = tiling.tile_windows(32, 32, 16)
    with pytest.warns(UserWarning, match="no coordinate reference system"):
        index = tiling.extract_patches(path, tmp_path / "out", windows, progress=False)
    assert (index.table.status == "written").all()


def test_a_raster_of_nodata_everywhere_warns_that_nothing_was_written(tmp_path):
    path = write_geotiff(tmp_path / "empty.tif", np.zeros((2, 32, 32), "uint16"), nodata=0)
    windows = tiling.tile_windows(32, 32, 16)
    with pytest.warns(UserWarning, match="all 4 patch.*skipped as nodata.*nodata value 0"):
        index = tiling.extract_patches(path, tmp_path / "out", windows, progress=False)
    assert (index.table.status == "skipped_nodata").all()


# --------------------------------------------------------------------------------------------
# Resume, configuration changes, overwrite
# --------------------------------------------------------------------------------------------


class Crash(RuntimeError):
    pass


def crash_after(monkeypatch, name: str, calls: int) -> None:
    original = getattr(tiling, name)
    count = {"n": 0}

    def flaky(*args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise Crash("simulated crash")
        return original(*args, **kwargs)

    monkeypatch.setattr(tiling, name, flaky)


@pytest.mark.parametrize(
    ("writer", "seam", "calls"),
    [("png", "_write_image", 5), ("geotiff", "_write_geotiff", 7), ("npz", "_write_npz", 2)],
)
def test_resume_after_a_crash_is_byte_identical(scene, tmp_path, monkeypatch, writer, seam, calls):
    windows = tiling.tile_windows(HEIGHT, WIDTH, 24, 12, edge="pad")
    kwargs = {"writer": writer, "progress": False, "shard_size": 8}
    clean = tiling.extract_patches(scene, tmp_path / "clean", windows, **kwargs)
    with monkeypatch.context() as patch:
        crash_after(patch, seam, calls)
        with pytest.raises(Crash):
            tiling.extract_patches(scene, tmp_path / "resumed", windows, **kwargs)
    assert not (tmp_path / "resumed" / "index.csv").exists()
    written_before = set(tree_sha256(tmp_path / "resumed"))
    resumed = tiling.extract_patches(scene, tmp_path / "resumed", windows, **kwargs)
    assert tree_sha256(tmp_path / "resumed") == tree_sha256(tmp_path / "clean")
    assert resumed.table.equals(clean.table)
    assert len(written_before) > 1  # the crash left some patches, which were kept


def crashed_run(scene, out, monkeypatch, writer, seam, calls, **kwargs):
    with monkeypatch.context() as patch:
        crash_after(patch, seam, calls)
        with pytest.raises(Crash):
            tiling.extract_patches(scene, out, **kwargs, writer=writer, progress=False)


@pytest.mark.parametrize(
    ("writer", "seam", "calls", "keep_bytes"),
    [
        ("png", "_write_image", 5, 0),  # renamed, then power loss before the data reached disk
        ("png", "_write_image", 5, 0.5),
        ("jpeg", "_write_image", 5, 0.5),
        ("geotiff", "_write_geotiff", 7, 0),
        ("geotiff", "_write_geotiff", 7, 0.5),
        ("npz", "_write_npz", 2, 0.5),  # a truncated shard: np.load raises BadZipFile
        ("npz", "_write_npz", 2, 0),
    ],
)
def test_resume_redoes_damaged_files_and_names_them(
    scene, tmp_path, monkeypatch, writer, seam, calls, keep_bytes
):
    windows = tiling.tile_windows(HEIGHT, WIDTH, 24, 12, edge="pad")
    kwargs = {"windows": windows, "shard_size": 8}
    tiling.extract_patches(scene, tmp_path / "clean", **kwargs, writer=writer, progress=False)
    out = tmp_path / "resumed"
    crashed_run(scene, out, monkeypatch, writer, seam, calls, **kwargs)
    damaged = sorted(p for p in out.rglob("*.*") if p.parent != out)[0]
    damaged.write_bytes(damaged.read_bytes()[: int(damaged.stat().st_size * keep_bytes)])
    name = damaged.relative_to(out).as_posix()
    with pytest.warns(UserWarning, match=f"1 file.*damaged.*{name}"):
        tiling.extract_patches(scene, out, **kwargs, writer=writer, progress=False)
    assert tree_sha256(out) == tree_sha256(tmp_path / "clean")


def test_a_scene_edited_in_place_after_its_first_mib_is_not_resumed(tmp_path):
    data = np.arange(1200 * 1000, dtype="uint16").reshape(1, 1200, 1000) % 5000 + 1
    scene = write_geotiff(tmp_path / "big.tif", data, compress=None, blocksize=None)
    assert scene.stat().st_size > 2**21
    windows = tiling.tile_windows(1200, 1000, 200)
    out = tmp_path / "out"
    tiling.extract_patches(scene, out, windows, writer="npz", progress=False)
    before = scene.stat()
    with open(scene, "r+b") as handle:  # new pixels in the last rows, same size
        handle.seek(before.st_size - 4096)
        handle.write(b"\x07" * 4096)
    os.utime(scene, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    with pytest.raises(FileExistsError, match="differing keys: source"):
        tiling.extract_patches(scene, out, windows, writer="npz", progress=False)
    index = tiling.extract_patches(scene, out, windows, writer="npz", overwrite=True,
                                   progress=False)  # fmt: skip
    last = tiling.read_shard(index.files()[-1])["images"][-1]
    np.testing.assert_array_equal(last, direct_read(scene, windows[-1]))


def test_a_second_run_into_a_busy_folder_is_refused_and_the_first_completes(
    scene, tmp_path, monkeypatch
):
    # While the first run has a patch under its temporary name, a second run starts in the
    # same folder; it must not touch the first run's files, and says why it stops.
    windows = tiling.tile_windows(HEIGHT, WIDTH, 32)
    kwargs = {"writer": "png", "progress": False}
    tiling.extract_patches(scene, tmp_path / "clean", windows, **kwargs)
    out = tmp_path / "out"
    real_save, calls = Image.Image.save, []

    def save_then_start_another_run(picture, fp, *args, **kw):
        real_save(picture, fp, *args, **kw)
        calls.append(fp)
        if len(calls) == 3:
            message = rf"another extraction is writing to {out} \(pid {os.getpid()}\); wait"
            with pytest.raises(RuntimeError, match=message):
                tiling.extract_patches(scene, out, windows, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_then_start_another_run)
    tiling.extract_patches(scene, out, windows, **kwargs)
    assert len(calls) >= 3
    assert tree_sha256(out) == tree_sha256(tmp_path / "clean")  # no temporary or lock file left
    monkeypatch.undo()
    lock = out / ".extract_patches.lock"
    lock.write_text(f"{dead_pid()}@{socket.gethostname()}\n")  # a killed run's lock
    tiling.extract_patches(scene, out, windows, **kwargs)
    assert not lock.exists()


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporary_files_of_killed_runs_are_removed(scene, tmp_path):
    windows = tiling.tile_windows(HEIGHT, WIDTH, 32)
    out = tmp_path / "out"
    tiling.extract_patches(scene, out, windows, writer="png", progress=False)
    stale = out / "patches" / f".r000000_c000000.png.{dead_pid()}.0123456789ab.partial"
    stale.write_bytes(b"half a patch")
    tiling.extract_patches(scene, out, windows, writer="png", progress=False)
    assert not stale.exists()


@pytest.mark.parametrize("writer", ["geotiff", "jpeg"])
def test_parallel_writers_give_the_same_bytes(scene, tmp_path, writer):
    windows = tiling.tile_windows(HEIGHT, WIDTH, 16, 12)
    kwargs = {"writer": writer, "progress": False}
    tiling.extract_patches(scene, tmp_path / "one", windows, **kwargs)
    tiling.extract_patches(scene, tmp_path / "threads", windows, workers=3, **kwargs)
    tiling.extract_patches(scene, tmp_path / "procs", windows, workers=2, pool="process", **kwargs)
    reference = tree_sha256(tmp_path / "one")
    assert len(reference) > 40
    assert tree_sha256(tmp_path / "threads") == reference == tree_sha256(tmp_path / "procs")


def test_a_different_configuration_raises_unless_overwrite(scene, tmp_path):
    windows = tiling.tile_windows(HEIGHT, WIDTH, 32)
    out = tmp_path / "out"
    tiling.extract_patches(scene, out, windows, writer="png", progress=False)
    before = tree_sha256(out)
    with pytest.raises(FileExistsError, match="differing keys: bands, scaling"):
        tiling.extract_patches(
            scene, out, windows, writer="png", bands=["nir"], scaling=(0, 5000), progress=False
        )
    assert tree_sha256(out) == before  # nothing deleted
    index = tiling.extract_patches(
        scene, out, windows, writer="npz", overwrite=True, progress=False
    )
    assert not (out / "patches").exists()
    assert {p.parent.name for p in index.files()} == {"shards"}


def test_overwrite_deletes_only_what_an_earlier_run_wrote(scene, tmp_path):
    windows = tiling.tile_windows(HEIGHT, WIDTH, 32)
    out = tmp_path / "project"
    mine = {"test/test_model.py": b"def test(): pass\n", "train/notes.md": b"# notes\n",
            "train/positive/extra.png": b"my own image"}  # fmt: skip
    for name, data in mine.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    with pytest.raises(
        FileExistsError, match="not written by extract_patches: .*test/test_model.py"
    ):
        tiling.extract_patches(scene, out, windows, writer="png", progress=False)
    labels, splits = [i % 2 for i in range(len(windows))], ["train", "test"] * (len(windows) // 2)
    kwargs = {"writer": "png", "layout": "class_folders", "progress": False}
    with pytest.warns(UserWarning, match="kept 3 file"):
        first = tiling.extract_patches(scene, out, windows, labels=labels, splits=splits,
                                       overwrite=True, **kwargs)  # fmt: skip
    assert len(first.files()) > len(windows) // 2
    with pytest.warns(UserWarning, match="kept 3 file.*test/test_model.py"):
        tiling.extract_patches(scene, out, windows, writer="npz", overwrite=True, progress=False)
    assert {name: (out / name).read_bytes() for name in mine} == mine
    left = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert left == {*mine, "index.csv", "index.geojson", "index.json", "shards/shard_00000.npz"}
    assert not (out / "train" / "negative").exists()  # emptied folders are removed


def test_unknown_patches_in_out_dir_are_not_touched(scene, tmp_path):
    (tmp_path / "out" / "patches").mkdir(parents=True)
    (tmp_path / "out" / "patches" / "mine.png").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="unknown configuration"):
        tiling.extract_patches(scene, tmp_path / "out", tiling.tile_windows(HEIGHT, WIDTH, 32))
    assert (tmp_path / "out" / "patches" / "mine.png").exists()


def test_bad_extract_arguments(scene, tmp_path):
    windows = tiling.tile_windows(HEIGHT, WIDTH, 32)
    with pytest.raises(ValueError, match="writer="):
        tiling.extract_patches(scene, tmp_path, windows, writer="tiff")
    with pytest.raises(ValueError, match="same patch origin"):
        tiling.extract_patches(scene, tmp_path, windows + windows[:1])
    with pytest.raises(ValueError, match="outside"):
        tiling.extract_patches(scene, tmp_path, [Window(200, 0, 8, 8)])
    with pytest.raises(ValueError, match="1 \\(grey\\) or 3"):
        tiling.extract_patches(scene, tmp_path, windows, writer="png", bands=[1, 2])
    with pytest.raises(FileNotFoundError):
        tiling.extract_patches(tmp_path / "missing.tif", tmp_path, windows)


def test_overlapping_patches_are_stored_once_as_pieces(scene, tmp_path):
    # At half-patch stride every pixel lies in four patches; the shard keeps it once.
    size = 16
    windows = tiling.tile_windows(HEIGHT, WIDTH, size, 8)
    index = tiling.extract_patches(scene, tmp_path / "npz", windows, writer="npz",
                                   max_nodata_fraction=1.0, progress=False)  # fmt: skip
    [shard] = index.files()  # the default shard holds the whole small grid: one piece
    with np.load(shard) as data:
        assert "images" not in data.files and data["piece_origins"].tolist() == [[0, 0]]
        assert data["piece_0"].shape == (4, HEIGHT, WIDTH)
    patch_bytes = len(windows) * 4 * size * size * 2
    assert shard.stat().st_size < 0.35 * patch_bytes
    data = tiling.read_shard(shard)
    assert len(data["images"]) == len(windows)
    with pytest.raises(ValueError, match=f"keep has 3 values but .* holds {len(windows)}"):
        tiling.read_shard(shard, np.ones(3, bool))
    none = tiling.read_shard(shard, np.zeros(len(windows), bool))
    assert none["images"].shape == (0, 4, size, size) and len(none["ids"]) == 0
    for image, (r, c, h, w) in zip(data["images"], data["windows"], strict=True):
        np.testing.assert_array_equal(image, direct_read(scene, Window(c, r, w, h)))
    # Patches side by side (no overlap, so no saving) stay one after another.
    apart = tiling.tile_windows(HEIGHT, WIDTH, size, edge="drop")
    side = tiling.extract_patches(scene, tmp_path / "side", apart, writer="npz", progress=False)
    with np.load(side.files()[0]) as data:
        assert "images" in data.files and "piece_0" not in data.files


def test_pieces_hold_kept_patches_only_and_load_like_patches(tmp_path):
    # Nodata over the top-left corner: those patches are skipped, and a piece none of the kept
    # patches lies in is not written; the loaders return exactly the kept patches.
    data = synthetic_reflectance(64, 64, seed=5)
    data[:, :40, :40] = 0
    path = write_geotiff(tmp_path / "holes.tif", data, nodata=0)
    windows = tiling.tile_windows(64, 64, 16, 8)
    labels = [i % 2 for i in range(len(windows))]
    splits = ["train" if w.col_off < 32 else "validation" for w in windows]
    index = tiling.extract_patches(path, tmp_path / "npz", windows, writer="npz", labels=labels,
                                   splits=splits, shard_size=10, progress=False)  # fmt: skip
    assert (index.table.status == "skipped_nodata").sum() > 10
    kept = index.written
    for shard in index.files():
        with np.load(shard) as stored:
            pieces = [k for k in stored.files if k.startswith("piece_") and k[6:].isdigit()]
            if "piece_of" in stored.files:
                assert sorted(set(stored["piece_of"].tolist())) == list(range(len(pieces)))
    images, found = datasets_load(tmp_path / "npz", "train")
    wanted = kept[(kept.split == "train") & (kept.label != -1)]
    assert len(images) == len(wanted) > 0
    for image, (_, row) in zip(images, wanted.iterrows(), strict=True):
        window = Window(row.col_off, row.row_off, 16, 16)
        np.testing.assert_array_equal(image, np.moveaxis(direct_read(path, window), 0, -1))
    assert found.tolist() == wanted.label.tolist()


def datasets_load(out: Path, split: str):
    from helpers import datasets

    return datasets.load_shards(out, split=split)


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 12),
    step=st.integers(1, 14),
    rows=st.integers(1, 6),
    cols=st.integers(1, 6),
    drop=st.lists(st.booleans(), min_size=36, max_size=36),
)
def test_shard_pieces_cover_exactly_the_windows(size, step, rows, cols, drop):
    # Any row-major set of same-size windows (a grid with holes, overlapping, touching or with
    # gaps): each window lies inside its piece, the pieces cover no pixel outside the windows,
    # and they never store more pixels than the windows one by one.
    windows = [
        Window(c * step, r * step, size, size)
        for r in range(rows)
        for c in range(cols)
        if not drop[r * 6 + c]
    ]
    if not windows:
        return
    pieces, piece_of = tiling._shard_pieces(windows)
    assert len(piece_of) == len(windows)
    extent = rows * step + size, cols * step + size
    in_windows, in_pieces = np.zeros(extent, bool), np.zeros(extent, bool)
    for window, k in zip(windows, piece_of, strict=True):
        piece = pieces[k]
        assert piece.row_off <= window.row_off
        assert window.row_off + size <= piece.row_off + piece.height
        assert piece.col_off <= window.col_off
        assert window.col_off + size <= piece.col_off + piece.width
        in_windows[
            window.row_off : window.row_off + size, window.col_off : window.col_off + size
        ] = True
    for piece in pieces:
        in_pieces[piece.row_off : piece.row_off + piece.height,
                  piece.col_off : piece.col_off + piece.width] = True  # fmt: skip
    np.testing.assert_array_equal(in_pieces, in_windows)
    assert sum(p.height * p.width for p in pieces) <= len(windows) * size * size


def test_a_folder_of_another_default_shard_size_is_resumed_not_refused(
    scene, tmp_path, monkeypatch
):
    # Shards written by a version with another default size: running again with the default
    # keeps them (the size is not part of the dataset); an explicit other size still refuses.
    windows = tiling.tile_windows(HEIGHT, WIDTH, 16, 8)
    out = tmp_path / "npz"
    with monkeypatch.context() as patch:
        patch.setattr(tiling, "SHARD_BYTES", 2**14)
        first = tiling.extract_patches(scene, out, windows, writer="npz", progress=False)
    before = tree_sha256(out)
    again = tiling.extract_patches(scene, out, windows, writer="npz", progress=False)
    assert tree_sha256(out) == before
    assert again.metadata["config"]["shard_size"] == first.metadata["config"]["shard_size"]
    with pytest.raises(FileExistsError, match="differing keys: shard_size"):
        tiling.extract_patches(scene, out, windows, writer="npz", shard_size=7, progress=False)


def test_default_shards_hold_about_shard_bytes(scene, tmp_path, monkeypatch):
    windows = tiling.tile_windows(HEIGHT, WIDTH, 16, 16)
    with rasterio.open(scene) as src:
        patch_bytes = src.count * 16 * 16 * np.dtype(src.dtypes[0]).itemsize
    monkeypatch.setattr(tiling, "SHARD_BYTES", 3 * patch_bytes)  # three patches a shard
    index = tiling.extract_patches(
        scene, tmp_path / "npz", windows, writer="npz", progress=False, max_nodata_fraction=1.0
    )
    shards = sorted((tmp_path / "npz" / "shards").glob("*.npz"))
    assert len(shards) == -(-len(windows) // 3)
    with np.load(shards[0]) as first:
        assert first["images"].shape[0] == 3  # side by side: these windows do not overlap
    assert index.metadata["config"]["shard_size"] == 3


@pytest.mark.parametrize("edge", ["shift", "pad"])
def test_stamped_geotiffs_equal_gdal_written_ones(scene, tmp_path, edge):
    # Threads stamp patches from one GDAL-written template; processes let GDAL write each file.
    windows = tiling.tile_windows(HEIGHT, WIDTH, 24, 16, edge=edge)
    kwargs = {"writer": "geotiff", "progress": False, "max_nodata_fraction": 1.0, "workers": 2}
    stamped = tiling.extract_patches(scene, tmp_path / "stamped", windows, pool="thread", **kwargs)
    gdal = tiling.extract_patches(scene, tmp_path / "gdal", windows, pool="process", **kwargs)
    assert stamped.table.equals(gdal.table)
    for a_path, b_path in zip(stamped.files(), gdal.files(), strict=True):
        with rasterio.open(a_path) as a, rasterio.open(b_path) as b:
            assert a.profile == b.profile and a.descriptions == b.descriptions
            np.testing.assert_array_equal(a.read(), b.read())


def test_geotiff_template_only_for_the_simple_layout(scene):
    with rasterio.open(scene) as src:
        profile = tiling.patch_profile(src.profile, Window(0, 0, 16, 16))
        array = src.read(window=Window(0, 0, 16, 16))
    profile.pop("compress", None)
    names = ["blue", "green", "red", "nir"]
    template = tiling._GeoTiffTemplate.build(profile, names, array.shape, array.dtype)
    assert template is not None
    with rasterio.io.MemoryFile(template.render(array, profile["transform"])) as mem:
        with mem.open() as back:
            np.testing.assert_array_equal(back.read(), array)
            assert back.transform == profile["transform"]
    compressed = dict(profile, compress="deflate")
    assert tiling._GeoTiffTemplate.build(compressed, names, array.shape, array.dtype) is None
