"""Tests for helpers.pair_sources: PNG / GeoTIFF image and mask pairs, split by image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import PAIR_CLASSES, write_geotiff, write_pair
from PIL import Image

from helpers import pair_sources as ps
from helpers.labels import IGNORE_VALUE


def _pairs(folder: Path, count: int = 6, size: int = 48) -> Path:
    rng = np.random.default_rng(0)
    for i in range(count):
        write_pair(folder, f"img_{i}", size, rng)
    return folder


def _section(**changes) -> dict:
    return {
        "images": "images",
        "masks": "masks/*.png",
        "classes": dict(PAIR_CLASSES),
        "ignore": [255],
    } | changes


def test_parse_matches_by_stem_and_check_returns_band_names(tmp_path):
    _pairs(tmp_path)
    source = ps.parse_pairs(_section(), tmp_path, "r.yaml")
    assert (
        [p.stem for p in source.images]
        == [p.stem for p in source.masks]
        == [f"img_{i}" for i in range(6)]
    )
    assert source.target == "shadow"  # the last class without a target key
    assert ps.check_pairs(source, 32, "r.yaml") == ("band_1", "band_2", "band_3")
    named = ps.parse_pairs(_section(bands=["Red", "green", "blue"]), tmp_path, "r.yaml")
    assert ps.check_pairs(named, 32) == ("red", "green", "blue")


def test_split_is_by_image_seeded_and_every_split_exists():
    stems = [f"s{i}" for i in range(10)]
    first = ps.split_by_image(stems, validation=0.2, test=0.2, seed=1)
    assert first == ps.split_by_image(list(reversed(stems)), validation=0.2, test=0.2, seed=1)
    assert (
        sorted(first.values()).count("test") == 2 and list(first.values()).count("validation") == 2
    )
    small = ps.split_by_image(["a", "b", "c"], validation=0.1, test=0.1, seed=0)
    assert sorted(small.values()) == ["test", "train", "validation"]


def test_patches_keep_each_image_in_one_split(tmp_path):
    _pairs(tmp_path, count=6, size=48)
    source = ps.parse_pairs(
        _section(split={"validation": 0.2, "test": 0.2, "seed": 3}), tmp_path, "r"
    )
    patches = ps.pair_patches(source, 32, 16)
    per_image = 4  # 2 x 2 windows of 32 px at stride 16 on 48 px
    splits = source.splits()
    for split, (images, masks) in patches.items():
        assert images.shape == (per_image * list(splits.values()).count(split), 32, 32, 3)
        assert masks.shape == (*images.shape[:3], 1) and masks.dtype == np.uint8
        assert set(np.unique(masks).tolist()) <= {0, 1, 2, IGNORE_VALUE}
    # the first train image's first patch is its top-left corner, pixel for pixel
    stem = next(s for s, split in splits.items() if split == "train")
    image = np.asarray(Image.open(tmp_path / "images" / f"{stem}.png"))
    np.testing.assert_array_equal(patches["train"][0][0], image[:32, :32])


def test_codes_are_mapped_to_class_indices(tmp_path):
    """Codes 3, 7, 9 become indices 0, 1, 2; GeoTIFF pairs work too, georeferenced or not."""
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    write_geotiff(
        tmp_path / "images" / "a.tif", np.ones((2, 40, 40), "uint16"), crs=None, nodata=None
    )
    codes = np.full((40, 40), 3, "uint8")
    codes[:, 20:] = 7
    codes[:5] = 9
    codes[-2:] = 0
    write_geotiff(tmp_path / "masks" / "a.tif", codes, nodata=None)
    section = _section(
        images="images/*.tif", masks="masks", classes={7: "b", 3: "a", 9: "c"}, ignore=[0]
    )
    source = ps.parse_pairs(section | {"split": {"validation": 0, "test": 0}}, tmp_path, "r")
    ps.check_pairs(source, 32)
    images, masks = ps.pair_patches(source, 40, 40)["train"]
    assert images.shape == (1, 40, 40, 2)
    assert masks[0, 10, 0, 0] == 0 and masks[0, 10, 30, 0] == 1 and masks[0, 0, 0, 0] == 2
    assert (masks[0, -2:] == IGNORE_VALUE).all()


def test_errors_name_the_key_and_the_file(tmp_path):
    _pairs(tmp_path, count=3)
    (tmp_path / "masks" / "img_1.png").unlink()
    with pytest.raises(
        ps.PairSourceError, match=r"r.yaml: pairs.masks: no mask for 1 image\(s\), e.g. img_1.png"
    ):
        ps.parse_pairs(_section(), tmp_path, "r.yaml")
    (tmp_path / "images" / "img_1.png").unlink()
    with pytest.raises(ps.PairSourceError, match="r.yaml: pairs.images: no image file matches"):
        ps.parse_pairs(_section(images="nothing/*.png"), tmp_path, "r.yaml")
    with pytest.raises(ps.PairSourceError, match="r.yaml: pairs.split"):
        ps.parse_pairs(_section(split={"validation": 0.6, "test": 0.5}), tmp_path, "r.yaml")
    with pytest.raises(ps.PairSourceError, match="r.yaml: pairs.colours: unknown key"):
        ps.parse_pairs(_section(colours=1), tmp_path, "r.yaml")
    Image.fromarray(np.full((48, 40), 1, "uint8")).save(tmp_path / "masks" / "img_0.png")
    with pytest.raises(ps.PairSourceError, match="img_0.png is 40 x 48 px but its image"):
        ps.check_pairs(ps.parse_pairs(_section(), tmp_path, "r"), 32)
    Image.fromarray(np.full((48, 48), 4, "uint8")).save(tmp_path / "masks" / "img_0.png")
    with pytest.raises(ps.PairSourceError, match=r"pairs.classes: img_0.png holds code\(s\) \[4\]"):
        ps.check_pairs(ps.parse_pairs(_section(), tmp_path, "r"), 32)
    Image.fromarray(np.zeros((48, 48, 3), "uint8")).save(tmp_path / "masks" / "img_0.png")
    with pytest.raises(ps.PairSourceError, match="one band of class codes"):
        ps.check_pairs(ps.parse_pairs(_section(), tmp_path, "r"), 32)
    Image.fromarray(np.zeros((48, 48), "uint8")).save(tmp_path / "masks" / "img_0.png")
    with pytest.raises(
        ps.PairSourceError, match="tiling.patch_size: 64 px is larger than img_0.png"
    ):
        ps.check_pairs(ps.parse_pairs(_section(), tmp_path, "r"), 64)
    with pytest.raises(ps.PairSourceError, match="pairs.bands: lists 2 band"):
        ps.check_pairs(ps.parse_pairs(_section(bands=["a", "b"]), tmp_path, "r"), 32)
