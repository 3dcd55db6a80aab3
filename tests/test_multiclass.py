"""K-class scores and figures: per-class precision, recall and F1, macro-F1, the K x K confusion
matrix and the error gallery."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from helpers import multiclass  # noqa: E402

NAMES = ["crop", "forest", "water"]
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0])


def test_predicted_classes_takes_the_most_probable():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    assert multiclass.predicted_classes(probs).tolist() == [0, 2]
    with pytest.raises(ValueError, match=r"\(N, K\).*threshold"):
        multiclass.predicted_classes(np.array([[0.3], [0.9]]))


def test_per_class_scores_by_hand():
    table = multiclass.per_class_scores(Y_TRUE, Y_PRED, NAMES)
    assert list(table.index) == NAMES
    # crop: 3 of 4 found, 3 of 4 predicted right; forest: 2/3 and 2/3; water: 2/3 and 2/3
    np.testing.assert_allclose(table["recall"], [3 / 4, 2 / 3, 2 / 3])
    np.testing.assert_allclose(table["precision"], [3 / 4, 2 / 3, 2 / 3])
    assert table["support"].tolist() == [4, 3, 3]
    mapped = multiclass.per_class_scores(Y_TRUE, Y_PRED, {0: "a", 1: "b", 2: "c"})
    assert list(mapped.index) == ["a", "b", "c"]
    never = multiclass.per_class_scores([0, 1, 2], [0, 0, 0], NAMES)
    assert never.loc["water", "precision"] == 0.0 and never.loc["water", "recall"] == 0.0


def test_summary_scores_macro_f1_weighs_every_class_the_same():
    scores = multiclass.summary_scores(Y_TRUE, Y_PRED, 3)
    assert scores["accuracy"] == pytest.approx(0.7) and scores["tiles"] == 10
    assert scores["macro_f1"] == pytest.approx((0.75 + 2 / 3 + 2 / 3) / 3)
    rare = multiclass.summary_scores([0] * 9 + [1], [0] * 10, 2)  # the rare class never found
    assert rare["accuracy"] == pytest.approx(0.9) and rare["macro_f1"] < 0.5


def test_confusion_matrices_counts_and_rows():
    counts, normalised = multiclass.confusion_matrices(Y_TRUE, Y_PRED, 4)  # class 3 absent
    assert counts[:3, :3].tolist() == [[3, 1, 0], [0, 2, 1], [1, 0, 2]]
    assert counts.sum() == len(Y_TRUE)
    np.testing.assert_allclose(normalised[:3].sum(axis=1), 1.0)
    assert normalised[3].tolist() == [0, 0, 0, 0]  # no tiles of class 3: a zero row, no NaN
    with pytest.raises(ValueError, match=r"y_pred holds \[5\].*0 \.\. 3"):
        multiclass.confusion_matrices(Y_TRUE, np.full(10, 5), 4)


def test_plot_confusion_matrix_labels_classes():
    counts, _ = multiclass.confusion_matrices(Y_TRUE, Y_PRED, 3)
    fig = multiclass.plot_confusion_matrix(counts, NAMES)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert "0.75" in [t.get_text() for t in ax.texts]  # crop's recall on the diagonal
    raw = multiclass.plot_confusion_matrix(counts, NAMES, normalize=False)
    assert "3" in [t.get_text() for t in raw.axes[0].texts]
    with pytest.raises(ValueError, match="expected 3"):
        multiclass.plot_confusion_matrix(counts, ["a", "b"])
    plt.close("all")


def test_plot_error_gallery_shows_the_errors_of_each_class():
    rng = np.random.default_rng(0)
    images = rng.random((10, 8, 8, 3)).astype("float32")
    probs = np.eye(3)[Y_PRED] * 0.8 + 0.2 / 3
    fig = multiclass.plot_error_gallery(images, Y_TRUE, probs, NAMES, per_class=2)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 3  # one error of each class
    assert {ax.get_title().split("\n")[0] for ax in shown} == {"forest", "water", "crop"}
    assert "3 of 10 tiles wrong" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="same tiles"):
        multiclass.plot_error_gallery(images[:5], Y_TRUE, probs, NAMES)
    plt.close("all")


def test_classifier_head_trains_a_k_class_resnet50_with_integer_labels():
    import keras

    from helpers import datasets, models

    assert multiclass.classifier_head(2) == {
        "units": 1, "activation": "sigmoid", "loss": "binary_crossentropy", "binary": True,
    }  # fmt: skip
    head = multiclass.classifier_head(4)
    keras.utils.set_random_seed(0)
    model = models.build_resnet50_classifier(
        (32, 32, 3), weights=None, dense_units=8, freeze_layers=0, num_classes=head["units"]
    )
    assert model.output_shape == (None, 4)
    assert model.get_layer("predictions").get_config()["activation"] == "softmax"
    model.compile("adam", head["loss"])
    images = np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32)
    stream = datasets.from_arrays(images, np.arange(8) % 4, batch_size=4)
    history = model.fit(stream, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    probs = model.predict(images, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="num_classes=1"):
        multiclass.classifier_head(1)


def test_a_softmax_model_card_needs_no_threshold(tmp_path):
    from helpers import models

    card = {
        "bands": ["red", "green", "blue"],
        "scaling": {"method": "linear", "scale": 1 / 255},
        "tile_size": 32,
        "classes": dict(enumerate(NAMES)),
        "training_data": "t",
    }
    path = models.write_model_card(tmp_path / "m.keras", decision_threshold=None, **card)
    assert models.read_model_card(path)["decision_threshold"] is None
    with pytest.raises(ValueError, match="or null"):
        models.write_model_card(tmp_path / "m.keras", decision_threshold=2, **card)
