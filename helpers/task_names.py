"""File names from the region config: what notebooks 05-07 call their masks and models.

A model of the target class is named after it (``informal_settlement_unet.keras``), a model of
a whole class table (a label raster or image/mask pairs) after the region
(``landcover_classes_unet.keras``), so that two regions or two targets never overwrite each
other's files and a file says what it holds.

Example:
    >>> slug("Informal settlement (2021)")
    'informal_settlement_2021'
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

__all__ = ["model_path", "slug", "task_slug"]


def slug(text: str) -> str:
    """Lower-case ASCII letters, digits and underscores: a name safe in any file system.

    Raises:
        ValueError: Nothing of ``text`` is left (e.g. only punctuation); name the class with
            letters or digits.
    """
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    out = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    if not out:
        raise ValueError(f"{text!r} gives an empty file name; use letters or digits in the name.")
    return out


def task_slug(region: Any) -> str:
    """The name of a region's segmentation task in file names.

    ``slug(target)`` for vector labels (a binary task); ``slug(name) + "_classes"`` for a label
    raster or image/mask pairs (one output per class of the class table).
    """
    if getattr(region, "label_raster", None) is not None or getattr(region, "pairs", None):
        return f"{slug(region.name)}_classes"
    return slug(region.target)


def model_path(region: Any) -> Path:
    """Where notebook 05 saves the region's U-Net (its card goes next to it)."""
    return Path(region.outputs.models) / f"{task_slug(region)}_unet.keras"
