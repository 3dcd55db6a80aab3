"""Tests for helpers.task_names: file names from the region config."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import task_names


def test_slug_keeps_letters_and_digits():
    assert task_names.slug("Informal settlement") == "informal_settlement"
    assert task_names.slug("  Bâti / built-up 2024 ") == "bati_built_up_2024"
    with pytest.raises(ValueError, match="empty file name"):
        task_names.slug("?!")


def test_model_path_names_the_target_or_the_class_table(tmp_path):
    outputs = SimpleNamespace(models=tmp_path)
    vectors = SimpleNamespace(
        name="r", target="Refugee camp", label_raster=None, pairs=None, outputs=outputs
    )
    assert task_names.model_path(vectors) == Path(tmp_path) / "refugee_camp_unet.keras"
    raster = SimpleNamespace(
        name="Land cover", target="built-up", label_raster=object(), pairs=None, outputs=outputs
    )
    assert task_names.model_path(raster).name == "land_cover_classes_unet.keras"
