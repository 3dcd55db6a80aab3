"""Reusable building blocks of the course: raster I/O, plotting, sample data and, later, tiling,
labels, datasets, models, inference and post-processing.

Notebooks import the modules they need, e.g. ``from helpers import raster, viz``.
"""

__version__ = "0.1.0"
