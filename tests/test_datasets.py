"""Tests for helpers.datasets: shards and class folders to tf.data, augmentation, class weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SCENE_BANDS, synthetic_reflectance, write_geotiff

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from helpers import datasets, tiling  # noqa: E402

HEIGHT, WIDTH, SIZE = 64, 96, 16  # 4 x 6 = 24 patches of 16 x 16
N = (HEIGHT // SIZE) * (WIDTH // SIZE)
# Per patch, in row-major order: splits cycle train x3 / validation / test / none, labels
# cycle 0, 1, -1 (ignore), 1, 0 (period 5) so each split gets both classes.
SPLIT_CYCLE = ["train", "train", "train", "validation", "test", None]
LABEL_CYCLE = [0, 1, -1, 1, 0]


def plan() -> tuple[list[str | None], list[int]]:
    splits = [SPLIT_CYCLE[i % len(SPLIT_CYCLE)] for i in range(N)]
    labels = [LABEL_CYCLE[i % len(LABEL_CYCLE)] for i in range(N)]
    return splits, labels


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    data = synthetic_reflectance(HEIGHT, WIDTH, seed=5)
    return write_geotiff(
        tmp_path_factory.mktemp("scene") / "scene.tif", data, band_names=SCENE_BANDS, blocksize=16
    )


@pytest.fixture(scope="module")
def shards(scene, tmp_path_factory) -> Path:
    """npz shards (7 patches each, so several shards) of the 24 patches with labels/splits."""
    out = tmp_path_factory.mktemp("npz")
    splits, labels = plan()
    windows = tiling.tile_windows(HEIGHT, WIDTH, SIZE)
    tiling.extract_patches(
        scene, out, windows, writer="npz", labels=labels, splits=splits, shard_size=7,
        progress=False,
    )  # fmt: skip
    return out


def stored(out: Path) -> dict[str, np.ndarray]:
    parts: dict[str, list] = {"images": [], "labels": [], "splits": [], "ids": []}
    for path in sorted((out / "shards").glob("*.npz")):
        data = tiling.read_shard(path)
        for key in parts:
            parts[key].append(data[key])
    return {k: np.concatenate(v) for k, v in parts.items()}


def expected(out: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    data = stored(out)
    keep = (data["splits"] == split) & (data["labels"] != -1)
    return data["images"][keep], data["labels"][keep]


# --------------------------------------------------------------------------------------------
# load_shards
# --------------------------------------------------------------------------------------------


def test_load_shards_converts_to_channels_last_float32(shards):
    images, labels = datasets.load_shards(shards, split="train")
    want_images, want_labels = expected(shards, "train")
    assert images.dtype == np.float32 and images.shape == (len(want_images), SIZE, SIZE, 4)
    assert images.flags.c_contiguous
    np.testing.assert_array_equal(images, np.transpose(want_images, (0, 2, 3, 1)))
    np.testing.assert_array_equal(labels, want_labels)


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_load_shards_keeps_only_labelled_patches_of_the_split(shards, split):
    splits, labels = plan()
    n = sum(s == split and lab != -1 for s, lab in zip(splits, labels, strict=True))
    images, got = datasets.load_shards(shards, split=split)
    assert len(images) == len(got) == n
    assert set(got.tolist()) == {0, 1}  # never -1


def test_load_shards_selects_bands_by_position_and_name(shards):
    all_bands, _ = datasets.load_shards(shards, split="train")
    by_name, _ = datasets.load_shards(shards, split="train", bands=["NIR", "red"])
    by_index, _ = datasets.load_shards(shards, split="train", bands=[3, 2])
    np.testing.assert_array_equal(by_name, all_bands[..., [3, 2]])
    np.testing.assert_array_equal(by_index, by_name)
    with pytest.raises(ValueError, match="'swir'.*blue, green, red, nir"):
        datasets.load_shards(shards, split="train", bands=["swir"])
    with pytest.raises(ValueError, match="0-based"):
        datasets.load_shards(shards, split="train", bands=[4])


def test_load_shards_errors_name_the_problem(shards, scene, tmp_path):
    with pytest.raises(FileNotFoundError, match='writer="npz"'):
        datasets.load_shards(tmp_path, split="train")
    with pytest.raises(ValueError, match="'training'.*train, validation, test"):
        datasets.load_shards(shards, split="training")
    # Only train and validation patches, the test split is empty.
    out = tmp_path / "no_test"
    windows = tiling.tile_windows(HEIGHT, WIDTH, SIZE)
    splits = ["train" if i % 3 else "validation" for i in range(N)]
    tiling.extract_patches(scene, out, windows, writer="npz", labels=[i % 2 for i in range(N)],
                           splits=splits, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"'test' has no labelled.*train: 16, validation: 8"):
        datasets.load_shards(out, split="test")
    # One class only in the train split.
    out = tmp_path / "one_class"
    tiling.extract_patches(scene, out, windows, writer="npz", labels=[0] * N,
                           splits=["train"] * N, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="only class 0.*needs both"):
        datasets.load_shards(out, split="train")


# --------------------------------------------------------------------------------------------
# from_shards
# --------------------------------------------------------------------------------------------


def test_from_shards_scales_and_batches(shards):
    dataset = datasets.from_shards(shards, split="validation", batch_size=3)
    want_images, want_labels = expected(shards, "validation")
    batches = list(dataset)
    assert [int(x.shape[0]) for x, _ in batches] == [3] * (len(want_images) // 3) + (
        [len(want_images) % 3] if len(want_images) % 3 else []
    )
    images = np.concatenate([x.numpy() for x, _ in batches])
    labels = np.concatenate([y.numpy() for _, y in batches])
    assert images.dtype == np.float32 and labels.dtype == np.float32 and labels.shape[1] == 1
    # not shuffled outside train: the stored order, scaled to reflectance
    np.testing.assert_allclose(images, np.transpose(want_images, (0, 2, 3, 1)) / 10000, rtol=1e-6)
    np.testing.assert_array_equal(labels[:, 0], want_labels)


def test_from_shards_train_epoch_covers_every_sample_once_and_is_seeded(shards):
    want_images, want_labels = expected(shards, "train")
    first = datasets.from_shards(shards, split="train", batch_size=4, seed=1, scale=1.0)
    again = datasets.from_shards(shards, split="train", batch_size=4, seed=1, scale=1.0)
    epochs = [np.concatenate([x.numpy() for x, _ in first]) for _ in range(2)]
    assert len(epochs[0]) == len(want_images)
    seen = [img.tobytes() for img in epochs[0]]
    wanted = [np.transpose(img, (1, 2, 0)).astype("float32").tobytes() for img in want_images]
    assert sorted(seen) == sorted(wanted)  # every sample exactly once
    assert seen != wanted  # but shuffled
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled each epoch
    np.testing.assert_array_equal(np.concatenate([x.numpy() for x, _ in again]), epochs[0])
    pairs = [
        (x.numpy().tobytes(), float(y[0])) for xs, ys in first for x, y in zip(xs, ys, strict=True)
    ]
    by_image = dict(zip(wanted, want_labels.tolist(), strict=True))
    assert all(by_image[image] == label for image, label in pairs)  # labels travel along


def test_from_shards_augmentation_is_applied_and_seeded(shards):
    def run(seed):
        augment = datasets.augmentation(seed=seed)
        dataset = datasets.from_shards(
            shards, split="validation", batch_size=2, augment=augment, shuffle=False
        )
        return np.concatenate([x.numpy() for x, _ in dataset])

    plain = np.concatenate([x.numpy() for x, _ in datasets.from_shards(shards, split="validation")])
    a, b = run(3), run(3)
    assert a.shape == plain.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, plain)
    for got, original in zip(a, plain, strict=True):  # flips/rotations only move pixels
        np.testing.assert_array_equal(np.sort(got, axis=None), np.sort(original, axis=None))
    fast = datasets.from_shards(
        shards, split="validation", augment=datasets.augmentation(), deterministic=False
    )
    assert np.concatenate([x.numpy() for x, _ in fast]).shape == plain.shape


# --------------------------------------------------------------------------------------------
# augmentation
# --------------------------------------------------------------------------------------------


def test_augmentation_builds_only_the_layers_asked_for():
    assert [type(x).__name__ for x in datasets.augmentation().layers] == [
        "RandomFlip",
        "RandomRotate90",
    ]
    full = datasets.augmentation(rotation=0.05, zoom=0.1, translation=0.1, brightness=0.1,
                                 contrast=0.1)  # fmt: skip
    assert [type(x).__name__ for x in full.layers] == [
        "RandomFlip", "RandomRotate90", "RandomRotation", "RandomZoom", "RandomTranslation",
        "RandomBrightness", "RandomContrast",
    ]  # fmt: skip
    assert datasets.augmentation(flips=False, rotate90=False).layers == []
    with pytest.raises(ValueError, match="zoom=1.5"):
        datasets.augmentation(zoom=1.5)


def test_augmentation_keeps_shape_dtype_and_is_deterministic():
    x = np.random.default_rng(0).random((6, 12, 12, 4), dtype=np.float32)
    settings = dict(rotation=0.05, zoom=0.1, translation=0.1, brightness=0.1, contrast=0.1)
    a = np.asarray(datasets.augmentation(**settings, seed=7)(x, training=True))
    b = np.asarray(datasets.augmentation(**settings, seed=7)(x, training=True))
    c = np.asarray(datasets.augmentation(**settings, seed=8)(x, training=True))
    assert a.shape == x.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    inference = datasets.augmentation(**settings)(x, training=False)
    np.testing.assert_array_equal(np.asarray(inference), x)


def test_rotate90_picks_an_exact_rotation_per_image():
    x = np.random.default_rng(1).random((32, 8, 8, 3), dtype=np.float32)
    out = np.asarray(datasets.RandomRotate90(seed=0)(x, training=True))
    ks = []
    for got, image in zip(out, x, strict=True):
        matches = [k for k in range(4) if np.array_equal(got, np.rot90(image, k, axes=(0, 1)))]
        assert len(matches) == 1  # exactly one of the four rotations: values never change
        ks.append(matches[0])
    assert set(ks) == {0, 1, 2, 3}  # per image, not one k for the batch


def test_rotate90_non_square_keeps_shape_and_values():
    x = np.random.default_rng(2).random((16, 6, 10, 2), dtype=np.float32)
    out = np.asarray(datasets.RandomRotate90(seed=0)(x, training=True))
    assert out.shape == x.shape
    for got, image in zip(out, x, strict=True):
        assert any(np.array_equal(got, np.rot90(image, k, axes=(0, 1))) for k in (0, 2))


def test_flips_and_rotate90_preserve_the_values_of_each_image():
    x = np.random.default_rng(3).random((10, 9, 9, 4), dtype=np.float32)
    out = np.asarray(datasets.augmentation(seed=4)(x, training=True))
    for got, image in zip(out, x, strict=True):
        np.testing.assert_array_equal(np.sort(got, axis=None), np.sort(image, axis=None))


def test_rotate90_serializes(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 2)), datasets.RandomRotate90(seed=3)])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.layers[0], datasets.RandomRotate90) and loaded.layers[0].seed == 3


# --------------------------------------------------------------------------------------------
# class_weights
# --------------------------------------------------------------------------------------------


def test_class_weights_balance_the_classes():
    weights = datasets.class_weights(np.array([0, 0, 0, 0, 0, 0, 1, 1]))
    assert weights == pytest.approx({0: 8 / 12, 1: 8 / 4})
    assert weights[0] * 6 == pytest.approx(weights[1] * 2)
    assert datasets.class_weights([0, 1]) == {0: 1.0, 1: 1.0}


def test_class_weights_errors():
    with pytest.raises(ValueError, match="class 1 is absent"):
        datasets.class_weights([0, 0, 0])
    with pytest.raises(ValueError, match=r"\[-1\].*label -1"):
        datasets.class_weights([0, 1, -1])


def test_class_weights_k_classes():
    labels_ = np.array([0] * 6 + [1] * 3 + [2] * 1)
    weights = datasets.class_weights(labels_)
    assert weights == pytest.approx({0: 10 / 18, 1: 10 / 9, 2: 10 / 3})
    assert {round(weights[c] * n, 9) for c, n in ((0, 6), (1, 3), (2, 1))} == {round(10 / 3, 9)}
    with pytest.raises(ValueError, match="class 3 is absent.*all 4 classes"):
        datasets.class_weights(labels_, num_classes=4)
    with pytest.raises(ValueError, match=r"values \[5\]"):
        datasets.class_weights([0, 1, 5], num_classes=3)


# --------------------------------------------------------------------------------------------
# from_class_folders
# --------------------------------------------------------------------------------------------


def test_from_class_folders_reads_png_class_folders(scene, tmp_path):
    splits, labels = plan()
    windows = tiling.tile_windows(HEIGHT, WIDTH, SIZE)
    tiling.extract_patches(
        scene, tmp_path / "png", windows, writer="png", labels=labels, splits=splits,
        layout="class_folders", progress=False,
    )  # fmt: skip
    n_train = sum(s == "train" and lab != -1 for s, lab in zip(splits, labels, strict=True))
    n_pos = sum(s == "train" and lab == 1 for s, lab in zip(splits, labels, strict=True))
    dataset = datasets.from_class_folders(
        tmp_path / "png" / "train", image_size=SIZE, batch_size=4, augment=datasets.augmentation()
    )
    assert dataset.class_names == ["negative", "positive"]
    batches = list(dataset)
    images = np.concatenate([x.numpy() for x, _ in batches])
    labels_out = np.concatenate([y.numpy() for _, y in batches])
    assert images.shape == (n_train, SIZE, SIZE, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1  # scaled to 0-1
    assert labels_out.shape == (n_train, 1) and labels_out.sum() == n_pos


def test_from_class_folders_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        datasets.from_class_folders(tmp_path / "missing", image_size=16)
    (tmp_path / "train" / "negative").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"1 class folder\(s\) \(negative\).*at least two"):
        datasets.from_class_folders(tmp_path / "train", image_size=16)
    from PIL import Image

    (tmp_path / "train" / "positive").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "train" / "negative" / "a.png")
    Image.new("RGB", (24, 24)).save(tmp_path / "train" / "positive" / "b.png")
    with pytest.raises(ValueError, match=r"mixes image sizes.*16 x 16.*24 x 24"):
        datasets.from_class_folders(tmp_path / "train", image_size=16)


def test_from_class_folders_k_classes_gives_integer_labels(tmp_path):
    from PIL import Image

    names = ["Forest", "River", "Urban"]  # sorted: labels 0, 1, 2
    for code, name in enumerate(names):
        (tmp_path / "train" / name).mkdir(parents=True)
        for i in range(code + 2):
            Image.new("RGB", (16, 16), (80 * code, 10, 10)).save(
                tmp_path / "train" / name / f"{i}.jpg"
            )
    dataset = datasets.from_class_folders(
        tmp_path / "train", image_size=16, batch_size=4, shuffle=False
    )
    assert dataset.class_names == names
    labels_out = np.concatenate([y.numpy() for _, y in dataset])
    assert labels_out.shape == (9,) and labels_out.tolist() == [0] * 2 + [1] * 3 + [2] * 4


# --------------------------------------------------------------------------------------------
# Segmentation: shard pairs and joint augmentation
# --------------------------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def vegetation_mask(scene_array: np.ndarray) -> np.ndarray:
    """Class 1 where NIR > 2 x red (the vegetated middle third of the scene), else 0."""
    return (scene_array[3].astype(int) > 2 * scene_array[2].astype(int)).astype("uint8")


def follows_rule(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per pixel: does the mask agree with the rule applied to the (channels-last) image?"""
    rule = (images[..., 3] > 2 * images[..., 2]).astype("uint8")
    return rule == masks[..., 0]


@pytest.fixture(scope="module")
def mask_raster(scene, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The scene's vegetation mask on the same grid; the top-left patch is all 255 (ignore)."""
    import rasterio

    with rasterio.open(scene) as src:
        data = src.read()
    mask = vegetation_mask(data)
    mask[:SIZE, :SIZE] = 255
    path = write_geotiff(tmp_path_factory.mktemp("mask") / "mask.tif", mask, nodata=255,
                          band_names=["vegetation"], blocksize=16)  # fmt: skip
    return path, mask


@pytest.fixture(scope="module")
def mask_shards(mask_raster, tmp_path_factory) -> Path:
    """Mask shards with the image shards' windows and splits; no patch skipped."""
    out = tmp_path_factory.mktemp("mask_npz")
    splits, _ = plan()
    tiling.extract_patches(
        mask_raster[0], out, tiling.tile_windows(HEIGHT, WIDTH, SIZE), writer="npz",
        splits=splits, shard_size=5, max_nodata_fraction=1.0, progress=False,
    )  # fmt: skip
    return out


def test_load_shard_pairs_matches_each_image_with_its_mask(shards, mask_shards, mask_raster):
    images, masks = datasets.load_shard_pairs(shards, mask_shards, split="train")
    data = stored(shards)
    keep = data["splits"] == "train"  # every train patch, whatever its tile label
    assert images.dtype == np.float32 and images.shape == (keep.sum(), SIZE, SIZE, 4)
    assert masks.dtype == np.uint8 and masks.shape == (keep.sum(), SIZE, SIZE, 1)
    np.testing.assert_array_equal(images, np.transpose(data["images"][keep], (0, 2, 3, 1)))
    for mask, (row, col, _, _) in zip(masks, stored_windows(shards)[keep], strict=True):
        window = mask_raster[1][row : row + SIZE, col : col + SIZE]
        np.testing.assert_array_equal(mask[..., 0], window)
    known = masks[..., 0] != 255
    assert known.any() and (~known).any()
    assert follows_rule(images, masks)[known].all()
    nir, _ = datasets.load_shard_pairs(shards, mask_shards, split="train", bands=["nir"])
    np.testing.assert_array_equal(nir, images[..., 3:])


def stored_windows(out: Path) -> np.ndarray:
    windows = []
    for path in sorted((out / "shards").glob("*.npz")):
        with np.load(path) as data:
            windows.append(data["windows"])
    return np.concatenate(windows)


def test_from_shard_pairs_keeps_pairs_together_and_is_seeded(shards, mask_shards):
    def run():
        dataset = datasets.from_shard_pairs(
            shards, mask_shards, split="train", batch_size=4, seed=2,
            augment=datasets.joint_augmentation(seed=5),
        )  # fmt: skip
        return [(x.numpy(), y.numpy()) for x, y in dataset]

    first, again = run(), run()
    images = np.concatenate([x for x, _ in first])
    masks = np.concatenate([y for _, y in first])
    plain, _ = datasets.load_shard_pairs(shards, mask_shards, split="train")
    assert images.shape == plain.shape and masks.dtype == np.uint8
    assert set(np.unique(masks).tolist()) == {0, 1, 255}
    known = masks[..., 0] != 255
    assert follows_rule(images, masks)[known].all()  # same flips/rotations on both
    assert not np.array_equal(images, plain / 10000)  # shuffled and augmented
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    validation = datasets.from_shard_pairs(shards, mask_shards, split="validation")
    want, want_masks = datasets.load_shard_pairs(shards, mask_shards, split="validation")
    got = [(x.numpy(), y.numpy()) for x, y in validation]
    np.testing.assert_allclose(np.concatenate([x for x, _ in got]), want / 10000, rtol=1e-6)
    np.testing.assert_array_equal(np.concatenate([y for _, y in got]), want_masks)


def test_shard_pairs_errors_name_the_problem(shards, mask_shards, mask_raster, tmp_path):
    windows = tiling.tile_windows(HEIGHT, WIDTH, SIZE)
    splits, _ = plan()
    # Default max_nodata_fraction skips the all-255 mask patch: ids no longer align.
    skipped = tmp_path / "skipped"
    tiling.extract_patches(mask_raster[0], skipped, windows, writer="npz", splits=splits,
                           progress=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"1 of the \d+ 'train' image.*r000000_c000000.*"
                                         r"max_nodata_fraction=1.0"):  # fmt: skip
        datasets.load_shard_pairs(shards, skipped, split="train")
    # Different splits for the same patch.
    shifted = tmp_path / "shifted"
    tiling.extract_patches(mask_raster[0], shifted, windows, writer="npz", splits=splits[1:] +
                           splits[:1], max_nodata_fraction=1.0, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="same splits"):
        datasets.load_shard_pairs(shards, shifted, split="train")
    # A mask on another grid (shifted origin).
    from rasterio.transform import from_origin

    other = write_geotiff(tmp_path / "other.tif", mask_raster[1], nodata=255,
                           transform=from_origin(1000.0, 2000.0, 1.0, 1.0))  # fmt: skip
    tiling.extract_patches(other, tmp_path / "other", windows, writer="npz", splits=splits,
                           max_nodata_fraction=1.0, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="different grids.*transform"):
        datasets.load_shard_pairs(shards, tmp_path / "other", split="train")
    # The scene itself is not a mask (4 bands).
    with pytest.raises(ValueError, match="hold 4 bands"):
        datasets.load_shard_pairs(shards, shards, split="train")
    with pytest.raises(FileNotFoundError, match="Mask folder"):
        datasets.load_shard_pairs(shards, tmp_path / "none", split="train")
    with pytest.raises(ValueError, match="'training'"):
        datasets.load_shard_pairs(shards, mask_shards, split="training")
    with pytest.raises(ValueError, match="joint_augmentation"):
        datasets.from_shard_pairs(shards, mask_shards, split="train",
                                  augment=datasets.augmentation())  # fmt: skip


def pair(seed: int = 0, shape=(6, 16, 16), codes=(0, 3)) -> tuple[np.ndarray, np.ndarray]:
    """Random 2-band images of smooth blobs and a mask derived from band 0 (codes[0]/codes[1])."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((shape[0], shape[1] // 4, shape[2] // 4, 2), dtype=np.float32)
    images = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)  # 4x4 blocks
    masks = np.where(images[..., :1] > 0.5, codes[1], codes[0]).astype("uint8")
    return images, masks


def derived(images: np.ndarray, codes=(0, 3)) -> np.ndarray:
    return np.where(images[..., :1] > 0.5, codes[1], codes[0]).astype("uint8")


def test_joint_augmentation_moves_image_and_mask_together():
    images, masks = pair()
    x, y = datasets.joint_augmentation(seed=1)(images, masks, training=True)
    x, y = np.asarray(x), np.asarray(y)
    assert y.dtype == np.uint8 and x.shape == images.shape and y.shape == masks.shape
    np.testing.assert_array_equal(y, derived(x))
    changed = [not np.array_equal(a, b) for a, b in zip(x, images, strict=True)]
    assert sum(changed) >= 3  # a draw per image, most of them not the identity
    for got, original in zip(x, images, strict=True):  # exact moves: same values
        np.testing.assert_array_equal(np.sort(got, axis=None), np.sort(original, axis=None))


def test_joint_rotation_and_zoom_never_blend_mask_codes():
    images, masks = pair(seed=2, shape=(8, 32, 32))
    aug = datasets.joint_augmentation(rotation=0.1, zoom=0.3, seed=3)
    x, y = (np.asarray(t) for t in aug(images, masks, training=True))
    assert set(np.unique(y).tolist()) <= {0, 3, 255}  # bilinear would make 1s and 2s
    known = y != 255
    assert known.mean() > 0.5
    assert not np.array_equal(x, images)
    # Same transform: the mask still follows the image almost everywhere (the image is
    # resampled bilinearly, so block edges may differ by a pixel).
    assert (derived(x)[known] == y[known]).mean() > 0.9
    assert (y == 255).any()  # zooming out brings in unknown pixels, marked as ignored


def test_joint_augmentation_radiometry_touches_images_only():
    images, masks = pair(seed=4)
    aug = datasets.joint_augmentation(flips=False, rotate90=False, brightness=0.2,
                                      contrast=0.2, seed=0)  # fmt: skip
    x, y = aug(images, masks, training=True)
    np.testing.assert_array_equal(np.asarray(y), masks)
    assert not np.allclose(np.asarray(x), images)


def test_joint_augmentation_is_seeded_and_off_at_inference():
    images, masks = pair(seed=5)
    settings_ = dict(rotation=0.05, zoom=0.1, brightness=0.1, contrast=0.1)
    a = datasets.joint_augmentation(**settings_, seed=7)(images, masks, training=True)
    b = datasets.joint_augmentation(**settings_, seed=7)(images, masks, training=True)
    c = datasets.joint_augmentation(**settings_, seed=8)(images, masks, training=True)
    for first, second in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(first), np.asarray(second))
    assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))
    x, y = datasets.joint_augmentation(**settings_)(images, masks, training=False)
    np.testing.assert_array_equal(np.asarray(x), images)
    np.testing.assert_array_equal(np.asarray(y), masks)
    with pytest.raises(ValueError, match="zoom=1.5"):
        datasets.joint_augmentation(zoom=1.5)


@settings(max_examples=10, deadline=None)
@given(rows=st.sampled_from([4, 8, 12]), cols=st.sampled_from([4, 8, 16]),
       seed=st.integers(0, 1000), unbatched_masks=st.booleans())  # fmt: skip
def test_flips_and_rot90_keep_every_pair_consistent(rows, cols, seed, unbatched_masks):
    images, masks = pair(seed, shape=(4, rows, cols))
    x, y = datasets.joint_augmentation(seed=seed)(
        images, masks[..., 0] if unbatched_masks else masks, training=True
    )
    y = np.asarray(y)
    if unbatched_masks:
        y = y[..., None]
    np.testing.assert_array_equal(y, derived(np.asarray(x)))


# --------------------------------------------------------------------------------------------
# from_arrays and the augmentation's value range
# --------------------------------------------------------------------------------------------


def test_from_arrays_balanced_batches_and_bad_input():
    images = np.random.default_rng(0).random((20, 8, 8, 2), dtype=np.float32)
    labels_ = np.array([1] * 2 + [0] * 18)
    balanced = datasets.from_arrays(images, labels_, batch_size=10, balanced=True, seed=1)
    shares = [float(y.numpy().mean()) for _, y in balanced.take(20)]
    assert 0.4 < np.mean(shares) < 0.6  # 2 positives in 20, yet half of every batch on average
    quarter = datasets.from_arrays(images, labels_, batch_size=10, balanced=True,
                                   positive_fraction=0.25, seed=1)  # fmt: skip
    assert 0.15 < np.mean([float(y.numpy().mean()) for _, y in quarter.take(40)]) < 0.35
    plain = datasets.from_arrays(images, labels_, batch_size=10, shuffle=False)
    first, target = next(iter(plain))
    np.testing.assert_array_equal(first.numpy(), images[:10])
    assert target.shape == (10, 1)
    with pytest.raises(ValueError, match="both classes"):
        datasets.from_arrays(images, np.zeros(20, int), balanced=True)
    with pytest.raises(ValueError, match="empty"):
        datasets.from_arrays(images[:0], labels_[:0])
    with pytest.raises(ValueError, match=r"values \[2\].*2 classes.*0 \.\. 1"):
        datasets.from_arrays(images, np.full(20, 2), num_classes=2)
    with pytest.raises(ValueError, match="integer class codes"):
        datasets.from_arrays(images, np.full(20, 0.5))


def test_from_arrays_k_classes_gives_integer_targets_and_equal_shares():
    rng = np.random.default_rng(0)
    images = rng.random((30, 8, 8, 3), dtype=np.float32)
    labels_ = np.array([0] * 20 + [1] * 5 + [2] * 3 + [3] * 2)
    plain = datasets.from_arrays(images, labels_, batch_size=30, shuffle=False)
    _, target = next(iter(plain))
    assert target.shape == (30,) and target.dtype.name == "int32"  # sparse categorical targets
    np.testing.assert_array_equal(target.numpy(), labels_)
    balanced = datasets.from_arrays(images, labels_, batch_size=40, balanced=True, seed=2)
    drawn = np.concatenate([y.numpy() for _, y in balanced.take(10)])
    shares = np.bincount(drawn, minlength=4) / len(drawn)
    assert np.all(np.abs(shares - 0.25) < 0.06)  # every class equally often, though 20:5:3:2
    with pytest.raises(ValueError, match=r"class\(es\) \[4\] have none"):
        datasets.from_arrays(images, labels_, balanced=True, num_classes=5)


def test_augmentation_value_range_keeps_caffe_scaled_values():
    x = np.full((2, 8, 8, 3), -50.0, dtype=np.float32)  # ImageNet-preprocessed values are signed
    aug = datasets.augmentation(flips=False, rotate90=False, contrast=0.2, seed=0,
                                value_range=(-125.0, 155.0))  # fmt: skip
    out = np.asarray(aug(x, training=True))
    assert out.min() >= -125.0 and np.allclose(out, -50.0)  # constant image: contrast keeps it
    clipped = np.asarray(
        datasets.augmentation(flips=False, rotate90=False, contrast=0.2)(x, training=True)
    )
    assert clipped.min() >= 0.0  # the default (0, 1) range would clip it: the reason for the option


def test_pairs_from_arrays_batches_repeats_and_augments_pairs_together():
    rng = np.random.default_rng(0)
    images = rng.random((5, 8, 8, 4), dtype=np.float32)
    masks = (images[..., 3:] > 0.5).astype("uint8")  # a mask derived from the image
    plain = datasets.pairs_from_arrays(images, masks, batch_size=2)
    assert [int(x.shape[0]) for x, _ in plain] == [2, 2, 1]
    augment = datasets.joint_augmentation(seed=3)
    stream = datasets.pairs_from_arrays(images, masks, batch_size=4, augment=augment,
                                        shuffle=True, repeat=True, seed=1)  # fmt: skip
    for x, y in stream.take(4):  # more batches than one pass holds: it repeats
        np.testing.assert_array_equal((x.numpy()[..., 3:] > 0.5).astype("uint8"), y.numpy())
    with pytest.raises(ValueError, match="pair up"):
        datasets.pairs_from_arrays(images, masks[:3])
