"""Tests for helpers.models: ResNet50 tile classifier, band adaptation, preprocessing, cards."""

from __future__ import annotations

import json
import logging

import keras
import numpy as np
import pytest

from helpers import models

SMALL = {"dense_units": 8, "dropout": 0.5}


@pytest.fixture(scope="module")
def rgb_weights_file(tmp_path_factory):
    """A 3-band backbone with seeded random weights, saved as ``.weights.h5``."""
    keras.utils.set_random_seed(0)
    model = models.build_resnet50_classifier((32, 32, 3), weights=None, **SMALL)
    backbone = model.get_layer("resnet50")
    path = tmp_path_factory.mktemp("weights") / "resnet50_rgb.weights.h5"
    backbone.save_weights(path)
    kernel, bias = backbone.get_layer("conv1_conv").get_weights()
    return path, kernel, bias, backbone.get_layer("conv5_block3_3_conv").get_weights()[0]


def test_binary_model_outputs_probabilities():
    keras.utils.set_random_seed(1)
    model = models.build_resnet50_classifier((32, 32, 3), weights=None, **SMALL)
    x = np.random.default_rng(0).uniform(-120, 150, (2, 32, 32, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(model(x, training=False))
    assert y.shape == (2, 1)
    assert np.all((y >= 0) & (y <= 1))
    assert model.get_layer("predictions").activation.__name__ == "sigmoid"


def test_multiclass_flatten_head_is_softmax():
    model = models.build_resnet50_classifier(
        (32, 32, 3), weights=None, pooling="flatten", num_classes=3, **SMALL
    )
    y = keras.ops.convert_to_numpy(model(np.zeros((2, 32, 32, 3), "float32")))
    assert y.shape == (2, 3)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    assert model.get_layer("head_flatten") is not None


@pytest.mark.parametrize("freeze", [0, 60])
def test_first_n_backbone_layers_frozen_rest_trainable(freeze):
    model = models.build_resnet50_classifier(
        (32, 32, 3), weights=None, freeze_layers=freeze, **SMALL
    )
    flags = [layer.trainable for layer in model.get_layer("resnet50").layers]
    assert not any(flags[:freeze])
    assert all(flags[freeze:])
    assert model.get_layer("head_dense").trainable


def test_invalid_arguments_name_the_argument():
    with pytest.raises(ValueError, match="freeze_layers=9999"):
        models.build_resnet50_classifier((32, 32, 3), freeze_layers=9999, **SMALL)
    with pytest.raises(ValueError, match="pooling='median'"):
        models.build_resnet50_classifier((32, 32, 3), pooling="median", **SMALL)
    with pytest.raises(ValueError, match="rgb_bands"):
        models.build_resnet50_classifier((32, 32, 4), rgb_bands=(0, 1, 4), **SMALL)
    with pytest.raises(FileNotFoundError, match="no_such.weights.h5"):
        models.build_resnet50_classifier((32, 32, 3), weights="no_such.weights.h5", **SMALL)


@pytest.mark.parametrize("bands", [1, 4])
def test_any_band_count_builds_without_weights(bands):
    model = models.build_resnet50_classifier((32, 32, bands), weights=None, **SMALL)
    y = model(np.zeros((1, 32, 32, bands), "float32"))
    assert tuple(y.shape) == (1, 1)


def test_four_band_model_keeps_rgb_kernels_and_scaled_mean(rgb_weights_file):
    path, kernel, bias, deep_kernel = rgb_weights_file
    model = models.build_resnet50_classifier((32, 32, 4), weights=path, **SMALL)
    backbone = model.get_layer("resnet50")
    new_kernel, new_bias = backbone.get_layer("conv1_conv").get_weights()
    assert new_kernel.shape == (7, 7, 4, 64)
    np.testing.assert_array_equal(new_kernel[:, :, :3, :], kernel)
    np.testing.assert_allclose(new_kernel[:, :, 3, :], kernel.mean(axis=2) * 3 / 4, rtol=1e-6)
    np.testing.assert_array_equal(new_bias, bias)
    # Every other layer is copied by name.
    np.testing.assert_array_equal(
        backbone.get_layer("conv5_block3_3_conv").get_weights()[0], deep_kernel
    )


def test_rgb_bands_place_pretrained_kernels(rgb_weights_file):
    path, kernel, _, _ = rgb_weights_file
    model = models.build_resnet50_classifier(
        (32, 32, 4), weights=path, rgb_bands=(1, 2, 3), **SMALL
    )
    new_kernel = model.get_layer("resnet50").get_layer("conv1_conv").get_weights()[0]
    np.testing.assert_array_equal(new_kernel[:, :, 1:, :], kernel)
    np.testing.assert_allclose(new_kernel[:, :, 0, :], kernel.mean(axis=2) * 3 / 4, rtol=1e-6)


def _offline(*args, **kwargs):
    raise Exception("URL fetch failure on https://example: None -- [Errno -3] name resolution")


def test_offline_imagenet_falls_back_with_warning(monkeypatch, caplog):
    monkeypatch.setattr(keras.utils, "get_file", _offline)
    with caplog.at_level(logging.WARNING, logger="helpers.models"):
        model = models.build_resnet50_classifier((32, 32, 3), weights="imagenet", **SMALL)
    assert model.output_shape == (None, 1)
    messages = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "ImageNet weights could not be downloaded" in messages
    assert "name resolution" in messages and "weights=PATH" in messages


def test_offline_imagenet_with_require_pretrained_raises(monkeypatch):
    monkeypatch.setattr(keras.utils, "get_file", _offline)
    with pytest.raises(RuntimeError, match="weights=PATH"):
        models.build_resnet50_classifier(
            (32, 32, 3), weights="imagenet", require_pretrained=True, **SMALL
        )


def _legacy_h5_weights(path, seed: int) -> np.ndarray:
    """A ResNet50 no-top weights file in the legacy HDF5 layout Keras publishes ImageNet in."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(seed)
    backbone = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, backbone)
    return backbone.get_layer("conv1_conv").get_weights()[0]


def test_imagenet_weights_download_from_a_local_server(monkeypatch, tmp_path, local_http_server):
    """The real download path: fetched over HTTP, hash-checked, cached, then used offline."""
    import hashlib

    root, url = local_http_server
    served = root / models._RESNET50_NOTOP_FILE
    kernel = _legacy_h5_weights(served, seed=5)
    monkeypatch.setattr(models, "_RESNET50_NOTOP_URL", url + served.name)
    monkeypatch.setattr(
        models, "_RESNET50_NOTOP_HASH", hashlib.md5(served.read_bytes()).hexdigest()
    )
    cache = tmp_path / "cache"
    path = models.resolve_weights("imagenet", require_pretrained=True, cache_dir=cache)
    assert path == str(cache / "models" / served.name)
    model = models.build_resnet50_classifier(
        (32, 32, 4), weights="imagenet", cache_dir=cache, require_pretrained=True, **SMALL
    )
    new_kernel = model.get_layer("resnet50").get_layer("conv1_conv").get_weights()[0]
    np.testing.assert_array_equal(new_kernel[:, :, :3, :], kernel)
    served.unlink()  # the server no longer has it: the cached copy is used
    assert models.resolve_weights("imagenet", cache_dir=cache) == path


def test_imagenet_download_with_a_wrong_hash_falls_back(
    monkeypatch, tmp_path, local_http_server, caplog
):
    root, url = local_http_server
    (root / models._RESNET50_NOTOP_FILE).write_bytes(b"not a weights file")
    monkeypatch.setattr(models, "_RESNET50_NOTOP_URL", url + models._RESNET50_NOTOP_FILE)
    with caplog.at_level(logging.WARNING, logger="helpers.models"):
        assert models.resolve_weights("imagenet", cache_dir=tmp_path) is None
    assert "training from scratch" in caplog.text
    with pytest.raises(RuntimeError, match="could not be downloaded"):
        models.resolve_weights("imagenet", require_pretrained=True, cache_dir=tmp_path)


def test_keras_round_trip_keeps_predictions_and_freezing(tmp_path):
    keras.utils.set_random_seed(2)
    model = models.build_resnet50_classifier((32, 32, 4), weights=None, freeze_layers=10, **SMALL)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 4)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-5
    )
    # The input layer has no weights and Keras does not save its flag; every other layer keeps it.
    flags = [layer.trainable for layer in loaded.get_layer("resnet50").layers]
    assert not any(flags[1:10]) and all(flags[10:])
    assert len(loaded.trainable_weights) == len(model.trainable_weights)
    assert len(loaded.non_trainable_weights) == len(model.non_trainable_weights)


def test_preprocess_bgr_order_means_and_extra_band():
    x = np.zeros((1, 2, 2, 4), dtype=np.uint8)
    x[..., 0], x[..., 1], x[..., 2], x[..., 3] = 10, 20, 30, 40  # blue, green, red, nir
    out = models.preprocess_for_imagenet(x, ("blue", "green", "red", "nir"))
    b, g, r = models.IMAGENET_MEAN_BGR
    np.testing.assert_allclose(out[0, 0, 0], [10 - b, 20 - g, 30 - r, 40 - 114.799], atol=1e-3)
    assert out.dtype == np.float32
    assert models.preprocessed_band_order(("nir", "red", "green", "blue")) == (
        "blue",
        "green",
        "red",
        "nir",
    )
    # Plain RGB is exactly Keras' own caffe preprocessing.
    rgb = np.random.default_rng(0).integers(0, 256, (1, 4, 4, 3)).astype("float32")
    expected = keras.applications.resnet50.preprocess_input(rgb.copy())
    np.testing.assert_allclose(models.preprocess_for_imagenet(rgb), expected)
    # Tensors go through keras.ops and agree with the NumPy path.
    tensor_out = models.preprocess_for_imagenet(
        keras.ops.convert_to_tensor(x), ("blue", "green", "red", "nir")
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(tensor_out), out, atol=1e-4)


def test_preprocess_rejects_bad_band_order():
    with pytest.raises(ValueError, match="lacks"):
        models.preprocess_for_imagenet(np.zeros((2, 2, 3)), ("red", "green", "nir"))
    with pytest.raises(ValueError, match="4 bands"):
        models.preprocess_for_imagenet(np.zeros((2, 2, 4)), ("red", "green", "blue"))


CARD = {
    "bands": ("blue", "green", "red", "nir"),
    "scaling": {"method": "uint8_stretch", "limits": [[0, 2000]] * 4, "then": "imagenet_caffe"},
    "tile_size": 64,
    "classes": {0: "negative", 1: "informal_settlement"},
    "decision_threshold": 0.4,
    "training_data": "sample region 2021-06-15, seed 42",
}


def test_model_card_round_trip_next_to_model(tmp_path):
    path = models.write_model_card(tmp_path / "model.keras", **CARD, val_auc=np.float32(0.5))
    assert path == tmp_path / "model.card.json"
    assert [p.name for p in tmp_path.iterdir()] == ["model.card.json"]  # no temp file left
    card = models.read_model_card(tmp_path / "model.keras")
    assert card["bands"] == list(CARD["bands"])
    assert card["classes"] == CARD["classes"]
    assert card["decision_threshold"] == 0.4 and card["val_auc"] == 0.5
    again = models.write_model_card(tmp_path / "other.keras", **CARD, val_auc=np.float32(0.5))
    assert again.read_bytes() == path.read_bytes()


def test_model_card_missing_key_errors(tmp_path):
    incomplete = {k: v for k, v in CARD.items() if k != "decision_threshold"}
    with pytest.raises(ValueError, match="decision_threshold"):
        models.write_model_card(tmp_path / "model.keras", **incomplete)
    card_path = tmp_path / "hand.card.json"
    card_path.write_text(
        json.dumps({k: v for k, v in CARD.items() if k != "bands"} | {"classes": []})
    )
    with pytest.raises(ValueError, match=r"hand\.card\.json.*'bands'"):
        models.read_model_card(card_path)
    with pytest.raises(FileNotFoundError, match="write_model_card"):
        models.read_model_card(tmp_path / "absent.keras")


def test_dict_card_is_validated_like_a_file_card():
    card = models.read_model_card(dict(CARD, classes={"0": "negative", "1": "settlement"}))
    assert card["classes"] == {0: "negative", 1: "settlement"} and card is not CARD
    minimal = {"bands": ["red"], "scaling": {"method": "linear", "scale": 1e-4}}
    assert models.read_model_card(minimal) == minimal  # the keys prediction needs suffice
    no_scaling = {k: v for k, v in CARD.items() if k != "scaling"}
    with pytest.raises(ValueError, match=r"given as a dict lacks required key\(s\) \['scaling'\]"):
        models.read_model_card(no_scaling)
    with pytest.raises(ValueError, match="'scaling'"):
        models.scale_inputs(np.zeros((1, 2, 2, 4)), no_scaling)  # was KeyError: 'scaling'
    with pytest.raises(ValueError, match="decision_threshold"):
        models.read_model_card(dict(CARD, decision_threshold=5))


def test_scale_inputs_linear_and_stretch():
    raw = np.array([[[[0, 1000, 2000, 3000]]]], dtype=np.uint16)
    linear = {"bands": CARD["bands"], "scaling": {"method": "linear", "scale": 1e-4, "offset": 0}}
    np.testing.assert_allclose(models.scale_inputs(raw, linear)[0, 0, 0], [0, 0.1, 0.2, 0.3])
    stretch = {
        "bands": CARD["bands"],
        "scaling": {"method": "uint8_stretch", "limits": [[0, 2000]] * 4, "then": None},
    }
    np.testing.assert_allclose(models.scale_inputs(raw, stretch)[0, 0, 0], [0, 127.5, 255, 255])
    caffe = models.scale_inputs(raw, CARD)  # stretch, then ImageNet preprocessing
    expected = models.preprocess_for_imagenet(models.scale_inputs(raw, stretch), CARD["bands"])
    np.testing.assert_allclose(caffe, expected)


def test_scale_inputs_and_card_reject_mismatches(tmp_path):
    with pytest.raises(ValueError, match="3 band.*lists 4"):
        models.scale_inputs(np.zeros((1, 8, 8, 3)), CARD)
    bad = dict(CARD, scaling={"method": "uint8_stretch", "limits": [[0, 1]] * 3})
    with pytest.raises(ValueError, match="one \\(low, high\\) pair"):
        models.write_model_card(tmp_path / "m.keras", **bad)
    with pytest.raises(ValueError, match="'method'"):
        models.write_model_card(tmp_path / "m.keras", **dict(CARD, scaling="1/255"))
    assert not list(tmp_path.iterdir())  # nothing written on error


def test_bn_momentum_is_set_and_saved(tmp_path):
    model = models.build_resnet50_classifier((32, 32, 3), weights=None, bn_momentum=0.9, **SMALL)
    backbone = model.get_layer("resnet50")
    norms = [
        layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert norms and all(layer.momentum == 0.9 for layer in norms)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras").get_layer("resnet50")
    assert loaded.get_layer(norms[0].name).momentum == 0.9
    with pytest.raises(ValueError, match="bn_momentum"):
        models.build_resnet50_classifier((32, 32, 3), weights=None, bn_momentum=1.5, **SMALL)


def test_save_with_card_round_trip_and_refusals(tmp_path):
    model = models.build_resnet50_classifier((32, 32, 4), weights=None, **SMALL)
    fields = dict(CARD, tile_size=32)
    path = models.save_with_card(model, tmp_path / "clf.keras", **fields)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clf.card.json", "clf.keras"]
    loaded, card = models.load_with_card(path)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 4)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert card["bands"] == list(CARD["bands"])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        models.save_with_card(model, path, **fields)
    with pytest.raises(ValueError, match="3 band.*takes 4"):
        three = {"method": "linear", "scale": 1e-4}
        models.save_with_card(
            model, tmp_path / "x.keras", **dict(fields, bands=["r", "g", "b"], scaling=three)
        )
    with pytest.raises(ValueError, match="tile_size=64"):
        models.save_with_card(model, tmp_path / "y.keras", **dict(fields, tile_size=64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clf.card.json", "clf.keras"]


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_load_with_card_names_a_corrupt_model_file(tmp_path, damage):
    model = keras.Sequential([keras.Input((4, 4, 4)), keras.layers.Conv2D(1, 1)])
    path = models.save_with_card(model, tmp_path / "tiny.keras", **dict(CARD, tile_size=4))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"<html>" * 50)
    with pytest.raises(ValueError) as info:
        models.load_with_card(path)
    message = str(info.value)
    assert f"{path} exists but is not a readable Keras model (corrupt or truncated?)" in message
    assert "save_with_card" in message


def test_load_with_card_catches_a_card_from_another_model(tmp_path):
    model = models.build_resnet50_classifier((32, 32, 4), weights=None, **SMALL)
    path = models.save_with_card(model, tmp_path / "clf.keras", **dict(CARD, tile_size=32))
    card = json.loads(models.model_card_path(path).read_text())
    card["bands"] = ["red", "green", "blue"]
    card["scaling"]["limits"] = card["scaling"]["limits"][:3]
    models.model_card_path(path).write_text(json.dumps(card))
    with pytest.raises(ValueError, match="another model"):
        models.load_with_card(path)
    with pytest.raises(FileNotFoundError, match="notebook 03"):
        models.load_with_card(tmp_path / "missing.keras")
