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
        with np.load(path) as data:
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
    with pytest.raises(ValueError, match=r"1 class folder\(s\) \(negative\).*exactly two"):
        datasets.from_class_folders(tmp_path / "train", image_size=16)
