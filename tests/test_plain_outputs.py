"""Tests for helpers.plain_outputs: inference.predict on PNG images, PNG / NumPy out."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning

from helpers import inference, plain_outputs


def _brightness(x: np.ndarray) -> np.ndarray:
    """A 'model': the mean of the three channels / 255, one channel."""
    return x.mean(axis=-1, keepdims=True) / 255.0


def _three_classes(x: np.ndarray) -> np.ndarray:
    """A 'model' with three channels: dark, middle, bright (softmax-like one-hot)."""
    level = np.digitize(x.mean(axis=-1), [85, 170])
    return np.eye(3, dtype="float32")[level]


@pytest.fixture
def png(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 70, 3)).astype("uint8")
    path = tmp_path / "image.png"
    Image.fromarray(image).save(path)
    return path, image


def _predict(model, scene, out, **kwargs):
    options = {"bands": [1, 2, 3], "patch_size": 32, "progress": False}
    return inference.predict(model, scene, out, **(options | kwargs))


def test_png_in_png_and_npy_out_match_the_model(png, tmp_path):
    path, image = png
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotGeoreferencedWarning)  # silenced, not shown
        with pytest.warns(UserWarning, match="no coordinate reference system"):
            classes = _predict(
                _brightness, path, tmp_path / "out" / "classes.png", output="classes"
            )
        with pytest.warns(UserWarning, match="no coordinate reference system"):
            probs = _predict(_brightness, path, tmp_path / "out" / "prob.npy")
    expected = image.mean(axis=-1) / 255.0
    array = np.load(probs)
    assert array.shape == (1, 50, 70) and array.dtype == np.float32
    np.testing.assert_allclose(array[0], expected, atol=1e-5)  # blending an exact model: exact
    written = np.asarray(Image.open(classes))
    assert written.shape == (50, 70) and written.dtype == np.uint8
    np.testing.assert_array_equal(written, (expected >= 0.5).astype("uint8"))
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file or folder left


def test_both_outputs_as_png_and_multiclass_classes(png, tmp_path):
    path, image = png
    with pytest.warns(UserWarning, match="no coordinate reference system"):
        prob, cls = _predict(_brightness, path, tmp_path / "map.png", output="both")
    assert prob.name == "map_prob.png" and cls.name == "map_class.png"
    expected = np.rint(np.clip(image.mean(axis=-1) / 255.0, 0, 1) * 255)
    assert np.abs(np.asarray(Image.open(prob)).astype(int) - expected).max() <= 1
    with pytest.warns(UserWarning, match="no coordinate reference system"):
        three = _predict(_three_classes, path, tmp_path / "three.npy", output="classes")
    np.testing.assert_array_equal(np.load(three), np.digitize(image.mean(axis=-1), [85, 170]))
    with (
        pytest.warns(UserWarning),
        pytest.raises(ValueError, match="a PNG holds one probability band"),
    ):
        _predict(_three_classes, path, tmp_path / "three.png")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        _predict(_brightness, path, tmp_path / "map.png", output="both")


def test_png_in_geotiff_out_has_the_pixel_grid_and_no_crs(png, tmp_path):
    path, _ = png
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotGeoreferencedWarning)
        with pytest.warns(UserWarning, match="no coordinate reference system"):
            out = _predict(_brightness, path, tmp_path / "prob.tif")
        with rasterio.open(out) as src:
            assert src.driver == "GTiff" and src.crs is None and src.shape == (50, 70)
    assert not plain_outputs.is_georeferenced(path)
    assert not plain_outputs.is_georeferenced(tmp_path / "missing.png")
