"""Tests for helpers.segmentation: the classic U-Net and the ResNet50 U-Net."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest

from helpers import losses, segmentation

TINY = {"depth": 2, "filters": 4}


def layer_types(model: keras.Model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers]


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


# --------------------------------------------------------------------------------------------
# build_unet
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bands", [1, 4, 7])
def test_unet_binary_output_is_a_probability_per_pixel(bands):
    model = segmentation.build_unet((32, 32, bands), **TINY)
    x = np.random.default_rng(0).random((2, 32, 32, bands), dtype=np.float32)
    y = predict(model, x)
    assert y.shape == (2, 32, 32, 1)
    assert np.all((y >= 0) & (y <= 1))
    assert model.get_layer("predictions").activation.__name__ == "sigmoid"


def test_unet_multiclass_is_softmax():
    model = segmentation.build_unet((32, 48, 3), 5, **TINY)
    y = predict(model, np.zeros((1, 32, 48, 3), "float32"))
    assert y.shape == (1, 32, 48, 5)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("depth", [1, 3])
def test_unet_levels_filters_and_skips(depth):
    model = segmentation.build_unet((32, 32, 4), depth=depth, filters=8)
    types = layer_types(model)
    assert types.count("MaxPooling2D") == depth
    assert types.count("Conv2DTranspose") == depth
    assert types.count("Concatenate") == depth
    assert model.get_layer("bottleneck_conv1").filters == 8 * 2**depth
    # every skip joins the decoder at the size it left the encoder
    for level in range(depth):
        concat = model.get_layer(f"up{level}_concat")
        up_shape, skip_shape = (tuple(t.shape) for t in concat.input)
        assert up_shape == skip_shape == (None, 32 // 2**level, 32 // 2**level, 8 * 2**level)
    assert types.count("BatchNormalization") == 2 * (2 * depth + 1)  # two per conv block


def test_unet_defaults_are_the_classic_layout():
    model = segmentation.build_unet((128, 128, 4))
    assert [model.get_layer(f"down{i}_conv1").filters for i in range(4)] == [32, 64, 128, 256]
    assert model.get_layer("bottleneck_conv2").filters == 512
    assert "Dropout" not in layer_types(model)


def test_unet_options_change_the_layers():
    plain = segmentation.build_unet((32, 32, 2), batch_norm=False, dropout=0.3,
                                    upsampling="bilinear", **TINY)  # fmt: skip
    types = layer_types(plain)
    assert "BatchNormalization" not in types and "Conv2DTranspose" not in types
    assert types.count("UpSampling2D") == 2
    assert plain.get_layer("bottleneck_dropout").rate == 0.3
    assert plain.get_layer("down0_conv1").use_bias


def test_unet_bn_momentum_reaches_every_batch_norm_and_survives_saving(tmp_path):
    def momenta(model):
        return {layer.momentum for layer in model.layers
                if isinstance(layer, keras.layers.BatchNormalization)}  # fmt: skip

    assert momenta(segmentation.build_unet((16, 16, 3), **TINY)) == {0.99}  # Keras' default
    model = segmentation.build_unet((16, 16, 3), bn_momentum=0.9, **TINY)
    assert momenta(model) == {0.9}
    model.save(tmp_path / "unet.keras")
    assert momenta(keras.models.load_model(tmp_path / "unet.keras")) == {0.9}
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match=f"bn_momentum={bad}"):
            segmentation.build_unet((16, 16, 3), bn_momentum=bad, **TINY)


def test_unet_without_fixed_size_runs_on_any_multiple():
    model = segmentation.build_unet((None, None, 3), **TINY)
    for rows, cols in [(16, 16), (32, 48)]:
        assert predict(model, np.zeros((1, rows, cols, 3), "float32")).shape == (1, rows, cols, 1)


def test_unet_rejects_sizes_not_divisible_by_two_to_the_depth():
    with pytest.raises(ValueError, match=r"multiples of 16 \(depth=4.*got \[100\].*96"):
        segmentation.build_unet((100, 128, 4))
    with pytest.raises(ValueError, match="multiples of 4"):
        segmentation.build_unet((32, 30, 4), depth=2)
    with pytest.raises(ValueError, match="rows, cols, bands"):
        segmentation.build_unet((32, 32))
    for kwargs, match in [({"depth": 0}, "depth=0"), ({"filters": 0}, "filters=0"),
                          ({"dropout": 1.0}, "dropout=1.0"), ({"upsampling": "nearest"},
                          "upsampling='nearest'")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            segmentation.build_unet((32, 32, 4), **kwargs)
    with pytest.raises(ValueError, match="num_classes=0"):
        segmentation.build_unet((32, 32, 4), 0)


def test_unet_learns_a_mask_that_follows_the_image():
    """A few steps on a mask that is a threshold of band 0: the masked loss must drop."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.random((16, 16, 16, 2), dtype=np.float32)
    masks = (images[..., :1] > 0.5).astype("uint8")
    masks[:, :, :3] = 255  # a band of unknown pixels
    model = segmentation.build_unet((16, 16, 2), **TINY)
    model.compile(keras.optimizers.Adam(0.03), loss=losses.MaskedCrossentropyDice(),
                  metrics=[losses.MaskedIoU(class_id=1)], jit_compile=False)  # fmt: skip
    history = model.fit(images, masks, epochs=12, batch_size=16, verbose=0).history
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    assert history["iou_1"][-1] > 0.6


def test_unet_save_and_load_keep_predictions(tmp_path):
    model = segmentation.build_unet((16, 16, 3), 3, **TINY)
    x = np.random.default_rng(1).random((2, 16, 16, 3), dtype=np.float32)
    model.save(tmp_path / "unet.keras")
    loaded = keras.models.load_model(tmp_path / "unet.keras")
    np.testing.assert_allclose(predict(loaded, x), predict(model, x), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# build_resnet50_unet (each ResNet50 build takes seconds: few builds, smallest inputs)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rgb_weights_file(tmp_path_factory):
    """A 3-band ResNet50 (no top) with seeded random weights, saved as ``.weights.h5``."""
    keras.utils.set_random_seed(0)
    backbone = keras.applications.ResNet50(include_top=False, weights=None,
                                           input_shape=(32, 32, 3))  # fmt: skip
    path = tmp_path_factory.mktemp("weights") / "resnet50_rgb.weights.h5"
    backbone.save_weights(path)
    return path, backbone.get_layer("conv4_block6_2_conv").get_weights()[0]


def test_resnet50_unet_loads_weights_freezes_encoder_and_upsamples_to_full_size(rgb_weights_file):
    path, deep_kernel = rgb_weights_file
    model = segmentation.build_resnet50_unet((64, 64, 3), 4, weights=path, freeze_encoder=True)
    encoder = model.get_layer("resnet50_encoder")
    np.testing.assert_array_equal(encoder.get_layer("conv4_block6_2_conv").get_weights()[0],
                                  deep_kernel)  # fmt: skip
    assert not encoder.trainable and not encoder.trainable_weights
    assert model.get_layer("decoder0_conv1").trainable and model.trainable_weights
    # skips enter the decoder at strides 16, 8, 4, 2; the last step is at full resolution
    sizes = [model.get_layer(f"decoder{i}_concat").output.shape[1] for i in range(4)]
    assert sizes == [4, 8, 16, 32]
    assert [model.get_layer(f"decoder{i}_conv2").filters for i in range(5)] == [
        256, 128, 64, 32, 16
    ]  # fmt: skip
    y = predict(model, np.zeros((1, 64, 64, 3), "float32"))
    assert y.shape == (1, 64, 64, 4)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)


def test_resnet50_unet_offline_imagenet_falls_back_with_warning(monkeypatch, caplog):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with caplog.at_level(logging.WARNING, logger="helpers.models"):
        model = segmentation.build_resnet50_unet((32, 32, 4), weights="imagenet", bn_momentum=0.9,
                                                 decoder_filters=(8, 8, 8, 8, 8))  # fmt: skip
    assert "training from scratch" in caplog.text
    assert model.output_shape == (None, 32, 32, 1)
    assert model.get_layer("resnet50_encoder").trainable
    # from scratch: every batch norm, encoder and decoder, follows the weights quickly
    norms = [layer for part in (model, model.get_layer("resnet50_encoder")) for layer in part.layers
             if isinstance(layer, keras.layers.BatchNormalization)]  # fmt: skip
    assert len(norms) > 50 and {layer.momentum for layer in norms} == {0.9}
    with pytest.raises(RuntimeError, match="could not be downloaded"):
        segmentation.build_resnet50_unet((32, 32, 4), weights="imagenet", require_pretrained=True)


def test_resnet50_unet_argument_errors():
    with pytest.raises(ValueError, match="multiples of 32"):
        segmentation.build_resnet50_unet((48, 64, 4))
    with pytest.raises(ValueError, match="decoder_filters"):
        segmentation.build_resnet50_unet((64, 64, 4), decoder_filters=(64, 32))
    with pytest.raises(ValueError, match="rgb_bands"):
        segmentation.build_resnet50_unet((64, 64, 4), rgb_bands=(0, 1, 4))
    with pytest.raises(FileNotFoundError, match="neither 'imagenet'"):
        segmentation.build_resnet50_unet((64, 64, 4), weights="missing.h5")
