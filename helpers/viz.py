"""Plots of georeferenced rasters and vectors that keep map coordinates on the axes.

Every plotting function draws in map units (the raster's CRS), labels the axes with the unit
("Easting (m)" or "Longitude (°)"), adds a scale bar for metric CRSs and returns the matplotlib
:class:`~matplotlib.figure.Figure`. Pass ``ax=`` to draw into an existing grid of axes.

Typical use in a notebook::

    from helpers import raster, viz

    image, transform = raster.read_decimated(path, masked=True)
    rgb = raster.percentile_stretch(raster.composite(image, info.band_names))
    fig = viz.plot_image(rgb, transform, crs=info.crs, title="True colour, 2021")
    viz.plot_vectors("settlements_2021.geojson", ax=fig.axes[0], label="Settlements")
    viz.save_figure(fig, "outputs/figures/true_colour.png")

Figures are created with pyplot so they show up in notebooks on their own; assign the result
(``fig = viz.plot_image(...)``) or end the line with ``;`` so a figure is not drawn twice.
Invalid pixels (``nan`` or masked) are drawn transparent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from affine import Affine
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, PathPatch
from matplotlib.path import Path as MplPath
from rasterio.crs import CRS
from rasterio.plot import plotting_extent

from helpers.files import atomic_path
from helpers.raster import MissingCRSError, crs_units

__all__ = [
    "BAND_COLOURS",
    "plot_band",
    "plot_classes",
    "plot_histograms",
    "plot_image",
    "plot_side_by_side",
    "plot_vectors",
    "save_figure",
]

#: Line colours for :func:`plot_histograms`, by band name; other bands use matplotlib's cycle.
BAND_COLOURS: dict[str, str] = {
    "blue": "tab:blue",
    "green": "tab:green",
    "red": "tab:red",
    "nir": "darkred",
}

# The CRS of the map drawn on an Axes is remembered on the Axes object itself, so
# plot_vectors can reproject overlays without being told again.
_CRS_ATTRIBUTE = "_helpers_viz_crs"
_LEGEND_KWARGS = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0}


# --------------------------------------------------------------------------------------------
# Shared plumbing
# --------------------------------------------------------------------------------------------


def _new_axes(ax: Axes | None, figsize: tuple[float, float] | None = None) -> Axes:
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize or (7.0, 6.0), layout="constrained")
    return ax


def _as_crs(crs: Any) -> CRS | None:
    return None if crs is None else CRS.from_user_input(crs)


def _check_transform(transform: Affine) -> Affine:
    if not isinstance(transform, Affine):
        raise TypeError(
            f"transform must be an affine.Affine (e.g. dataset.transform or the transform "
            f"returned by raster.read_decimated), got {type(transform).__name__}."
        )
    if transform.b != 0 or transform.d != 0:
        raise ValueError(
            f"transform {tuple(transform)[:6]} is rotated; imshow can only draw north-up "
            "grids. Reproject the raster first (rasterio.warp.reproject)."
        )
    return transform


def _two_d(array: np.ndarray, argument: str) -> np.ndarray:
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(
            f"{argument} must be a single band (rows, cols) or (1, rows, cols), got shape "
            f"{array.shape}. Select one band first, e.g. array[0]."
        )
    return array


def _label_axes(ax: Axes, crs: CRS | None) -> None:
    units = crs_units(crs)
    if crs is None:
        ax.set_xlabel("x (map units)")
        ax.set_ylabel("y (map units)")
    elif crs.is_geographic:
        ax.set_xlabel("Longitude (°)")
        ax.set_ylabel("Latitude (°)")
    else:
        short = {"metre": "m", "meter": "m", "foot": "ft", "US survey foot": "ftUS"}
        unit = short.get(units or "", units or "map units")
        ax.set_xlabel(f"Easting ({unit})")
        ax.set_ylabel(f"Northing ({unit})")
    # Full coordinates (500 000, not 5e5 with an offset) are what readers compare with a GIS.
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.tick_params(axis="x", labelrotation=30)


def _add_scalebar(ax: Axes, crs: CRS | None) -> None:
    if crs is None or not crs.is_projected or crs_units(crs) not in ("metre", "meter"):
        return  # a metric scale bar would lie on degrees or feet
    from matplotlib_scalebar.scalebar import ScaleBar

    ax.add_artist(ScaleBar(dx=1, units="m", location="lower right", box_alpha=0.7))


def _finish_map(
    ax: Axes, crs: CRS | None, title: str | None, scalebar: bool, *, label: bool = True
) -> None:
    setattr(ax, _CRS_ATTRIBUTE, crs)
    if crs is not None and crs.is_geographic:
        # A degree of longitude shrinks with latitude; stretch so shapes are not distorted.
        mid_latitude = np.radians(np.clip(np.mean(ax.get_ylim()), -85, 85))
        ax.set_aspect(1 / np.cos(mid_latitude))
    if label:
        _label_axes(ax, crs)
    if scalebar:
        _add_scalebar(ax, crs)
    if title:
        ax.set_title(title)


def _float_with_nan(array: np.ndarray) -> np.ndarray:
    data = np.ma.getdata(array).astype(np.float32)
    data[np.ma.getmaskarray(array)] = np.nan
    return data


def _merge_legend(ax: Axes, handles: list[Any], labels: list[str], title: str | None) -> None:
    """Add entries to the Axes legend, keeping the entries already there."""
    old = ax.get_legend()
    if old is not None:
        handles = list(old.legend_handles) + handles
        labels = [t.get_text() for t in old.get_texts()] + labels
        title = old.get_title().get_text() or title
    ax.legend(handles, labels, title=title, **_LEGEND_KWARGS)


# --------------------------------------------------------------------------------------------
# Rasters
# --------------------------------------------------------------------------------------------


def plot_image(
    image: np.ndarray,
    transform: Affine,
    *,
    crs: Any = None,
    ax: Axes | None = None,
    title: str | None = None,
    scalebar: bool = True,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Draw a stretched RGB composite (or a grey single band) at its map position.

    Args:
        image: ``(3, rows, cols)`` floats in ``[0, 1]`` (the output of
            ``raster.percentile_stretch``), or one band ``(rows, cols)`` / ``(1, rows, cols)``
            drawn in grey. ``nan`` and masked pixels are transparent.
        transform: The image's :class:`~affine.Affine` (north-up).
        crs: The image's CRS; sets the axis labels and enables the scale bar.
        ax: Axes to draw into; a new figure is made when None.
        title: Axes title.
        scalebar: Add a scale bar (only for projected CRSs in metres).
        figsize: Size of a new figure in inches.

    Returns:
        The Figure.

    Raises:
        ValueError: wrong shape, RGB values outside ``[0, 1]`` (stretch first) or a rotated
            transform.

    Example:
        >>> rgb = raster.percentile_stretch(raster.composite(image, names))  # doctest: +SKIP
        >>> fig = plot_image(rgb, transform, crs=crs, title="True colour")  # doctest: +SKIP
    """
    transform = _check_transform(transform)
    crs = _as_crs(crs)
    image = np.asanyarray(image)
    if image.ndim == 3 and image.shape[0] == 3:
        data = _float_with_nan(image)
        finite = data[np.isfinite(data)]
        if finite.size and (finite.min() < -1e-6 or finite.max() > 1 + 1e-6):
            raise ValueError(
                f"image values span {finite.min():g}..{finite.max():g}, but an RGB image must "
                "be in [0, 1]. Stretch it first: raster.percentile_stretch(image)."
            )
        alpha = np.isfinite(data).all(axis=0)
        rgba = np.concatenate([np.nan_to_num(data, nan=0.0), alpha[np.newaxis]], axis=0)
        pixels, kwargs = np.clip(np.moveaxis(rgba, 0, -1), 0, 1), {}
    elif image.ndim == 2 or (image.ndim == 3 and image.shape[0] == 1):
        pixels = _float_with_nan(_two_d(image, "image"))
        finite = pixels[np.isfinite(pixels)]
        in_unit = finite.size == 0 or (finite.min() >= 0 and finite.max() <= 1)
        kwargs = {"cmap": "gray", "vmin": 0 if in_unit else None, "vmax": 1 if in_unit else None}
    else:
        raise ValueError(
            f"image must be (3, rows, cols) RGB or one band (rows, cols), got shape "
            f"{image.shape}. Pick three bands with raster.composite(image, band_names)."
        )
    ax = _new_axes(ax, figsize)
    extent = plotting_extent(pixels, transform)
    ax.imshow(pixels, extent=extent, interpolation="nearest", **kwargs)
    _finish_map(ax, crs, title, scalebar)
    return ax.figure


def plot_band(
    array2d: np.ndarray,
    transform: Affine,
    *,
    crs: Any = None,
    ax: Axes | None = None,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar_label: str | None = None,
    title: str | None = None,
    scalebar: bool = True,
    nodata: float | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Draw one band or index (NDVI, a probability map ...) with a colour bar.

    Args:
        array2d: ``(rows, cols)`` or ``(1, rows, cols)``; ``nan``, masked and ``nodata``
            pixels are transparent.
        transform: The band's :class:`~affine.Affine` (north-up).
        crs: The band's CRS; sets axis labels and the scale bar.
        ax: Axes to draw into; a new figure is made when None.
        cmap: Matplotlib colormap name, e.g. "RdYlGn" for NDVI, "Blues" for water.
        vmin: Value at the bottom of the colormap (default: data minimum).
        vmax: Value at the top of the colormap (default: data maximum).
        colorbar_label: Label of the colour bar, e.g. "NDVI".
        title: Axes title.
        scalebar: Add a scale bar (projected CRSs in metres only).
        nodata: Value drawn transparent.
        figsize: Size of a new figure in inches.

    Returns:
        The Figure.
    """
    transform = _check_transform(transform)
    crs = _as_crs(crs)
    data = _float_with_nan(_two_d(np.asanyarray(array2d), "array2d"))
    if nodata is not None:
        data[data == nodata] = np.nan
    ax = _new_axes(ax, figsize)
    image = ax.imshow(
        data,
        extent=plotting_extent(data, transform),
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
    )
    ax.figure.colorbar(image, ax=ax, label=colorbar_label, shrink=0.8)
    _finish_map(ax, crs, title, scalebar)
    return ax.figure


def plot_classes(
    class_map: np.ndarray,
    transform: Affine,
    classes: Mapping[int, tuple[str, str]],
    *,
    crs: Any = None,
    ax: Axes | None = None,
    title: str | None = None,
    alpha: float = 1.0,
    nodata: int | None = 0,
    legend: bool | str = True,
    scalebar: bool = True,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Draw a class map (land cover, a segmentation prediction) with one colour per class.

    Args:
        class_map: Integer ``(rows, cols)`` or ``(1, rows, cols)``.
        transform: The map's :class:`~affine.Affine` (north-up).
        classes: ``{code: (name, hex colour)}``, e.g. ``sample_data.LANDCOVER_CLASSES``.
        crs: The map's CRS.
        ax: Axes to draw into (e.g. over an image, with ``alpha`` < 1).
        title: Axes title.
        alpha: Opacity of the class colours.
        nodata: Code drawn transparent (None: every code must be in ``classes``).
        legend: True or "present": one entry per class present in the map, in code order;
            "all": every class in ``classes`` (keeps legends identical across maps to
            compare); False: no legend.
        scalebar: Add a scale bar (projected CRSs in metres only).
        figsize: Size of a new figure in inches.

    Returns:
        The Figure.

    Raises:
        ValueError: the map holds codes that are neither in ``classes`` nor ``nodata``, or
            ``classes`` is empty.
    """
    transform = _check_transform(transform)
    crs = _as_crs(crs)
    if not classes:
        raise ValueError("classes is empty: pass {code: (name, hex colour)} for every class.")
    codes = sorted(int(c) for c in classes)
    raw = _two_d(np.asanyarray(class_map), "class_map")
    data = np.ma.getdata(raw)
    invalid = np.ma.getmaskarray(raw).copy()
    if nodata is not None:
        invalid |= data == nodata
    present = np.unique(data[~invalid])
    unknown = sorted(set(present.tolist()) - set(codes))
    if unknown:
        raise ValueError(
            f"class_map holds codes {unknown} that are not in classes ({codes}) and are not "
            f"nodata ({nodata}). Add them to classes or pass nodata= for the empty code."
        )
    colours = ListedColormap([classes[c][1] for c in codes])
    edges = (
        [codes[0] - 0.5]
        + [(a + b) / 2 for a, b in zip(codes[:-1], codes[1:], strict=True)]
        + [codes[-1] + 0.5]
    )
    norm = BoundaryNorm(edges, colours.N)
    ax = _new_axes(ax, figsize)
    ax.imshow(
        np.ma.masked_array(data, mask=invalid),
        extent=plotting_extent(data, transform),
        cmap=colours,
        norm=norm,
        alpha=alpha,
        interpolation="nearest",
    )
    if legend:
        shown = codes if legend == "all" else [c for c in codes if c in set(present.tolist())]
        handles = [
            Patch(facecolor=classes[c][1], edgecolor="0.3", linewidth=0.5, alpha=alpha)
            for c in shown
        ]
        _merge_legend(ax, handles, [classes[c][0] for c in shown], title="Classes")
    _finish_map(ax, crs, title, scalebar)
    return ax.figure


def plot_side_by_side(
    images_and_titles: Sequence[tuple[np.ndarray, str]],
    transform: Affine,
    *,
    crs: Any = None,
    suptitle: str | None = None,
    scalebar: bool = True,
    panel_size: float = 4.5,
) -> Figure:
    """Draw images of the same grid next to each other with shared, linked axes.

    Each image goes through :func:`plot_image` (RGB in ``[0, 1]`` or one grey band), e.g. the
    true and false colour composites, or the two dates of a change pair.

    Args:
        images_and_titles: ``[(image, title), ...]``.
        transform: The common :class:`~affine.Affine`.
        crs: The common CRS.
        suptitle: Title above all panels.
        scalebar: Add a scale bar to each panel.
        panel_size: Width and height of one panel in inches.

    Returns:
        The Figure.
    """
    if not images_and_titles:
        raise ValueError("images_and_titles is empty: pass [(image, title), ...].")
    n = len(images_and_titles)
    fig, axes = plt.subplots(
        1,
        n,
        figsize=(panel_size * n, panel_size + 0.5),
        sharex=True,
        sharey=True,
        layout="constrained",
        squeeze=False,
    )
    for i, (ax, (image, panel_title)) in enumerate(zip(axes[0], images_and_titles, strict=True)):
        plot_image(image, transform, crs=crs, ax=ax, title=panel_title, scalebar=scalebar)
        if i:
            ax.set_ylabel("")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_histograms(
    array: np.ndarray,
    band_names: Sequence[str],
    *,
    nodata: float | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    log: bool = False,
    bins: int = 256,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Draw one histogram line per band, over valid pixels only.

    Useful to choose a stretch and to see why nodata must be excluded (a spike at 0).

    Args:
        array: ``(bands, rows, cols)`` (or ``(rows, cols)`` with one name).
        band_names: One name per band; blue, green, red and nir get their own colours.
        nodata: Value excluded, with masked and ``nan`` pixels.
        ax: Axes to draw into.
        title: Axes title.
        log: Logarithmic count axis.
        bins: Number of bins, shared by all bands.
        figsize: Size of a new figure in inches.

    Returns:
        The Figure.
    """
    array = np.asanyarray(array)
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3 or array.shape[0] != len(band_names):
        raise ValueError(
            f"array of shape {array.shape} does not match {len(band_names)} band_names; pass "
            "(bands, rows, cols) and one name per band."
        )
    data = _float_with_nan(array)
    if nodata is not None:
        data[data == nodata] = np.nan
    finite = data[np.isfinite(data)]
    ax = _new_axes(ax, figsize or (7.0, 4.0))
    if finite.size:
        edges = np.histogram_bin_edges(finite, bins=bins)
        for band, name in zip(data, band_names, strict=True):
            counts, _ = np.histogram(band[np.isfinite(band)], bins=edges)
            colour = BAND_COLOURS.get(str(name).lower())
            ax.stairs(counts, edges, label=str(name), color=colour, linewidth=1.2)
    ax.set_xlabel("Pixel value")
    ax.set_ylabel("Pixel count")
    if log:
        ax.set_yscale("log")
    ax.legend(title="Band")
    if title:
        ax.set_title(title)
    return ax.figure


# --------------------------------------------------------------------------------------------
# Vectors
# --------------------------------------------------------------------------------------------


def _load_geometries(geometries: Any) -> tuple[list[Any], Any]:
    """Return shapely geometries and the CRS named inside old-style GeoJSON (else None)."""
    import shapely
    from shapely.geometry import shape

    declared = None
    if isinstance(geometries, (str, os.PathLike)):
        path = Path(os.fspath(geometries))
        if not path.exists():
            raise FileNotFoundError(f"Vector file not found: {path}. Check the path.")
        try:
            geometries = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not GeoJSON ({exc}); pass a .geojson file.") from exc
    if isinstance(geometries, Mapping):
        kind = geometries.get("type")
        crs_member = geometries.get("crs")
        if isinstance(crs_member, Mapping):
            declared = crs_member.get("properties", {}).get("name")
        if kind == "FeatureCollection":
            items = [f.get("geometry") for f in geometries.get("features", [])]
        elif kind == "Feature":
            items = [geometries.get("geometry")]
        else:
            items = [geometries]
    elif isinstance(geometries, shapely.Geometry):
        items = [geometries]
    else:
        items = list(geometries)
    out = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, Mapping):
            item = shape(item.get("geometry", item) if item.get("type") == "Feature" else item)
        if not isinstance(item, shapely.Geometry):
            raise TypeError(
                "geometries must be shapely geometries, GeoJSON dicts or a .geojson path, got "
                f"{type(item).__name__}."
            )
        if not item.is_empty:
            out.append(item)
    return out, declared


def _reproject(geometries: list[Any], src: CRS, dst: CRS) -> list[Any]:
    if src == dst or not geometries:
        return geometries
    import pyproj
    import shapely

    transformer = pyproj.Transformer.from_crs(src.to_wkt(), dst.to_wkt(), always_xy=True)

    def project(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return list(shapely.transform(np.asarray(geometries, dtype=object), project))


def plot_vectors(
    geometries: Any,
    *,
    ax: Axes,
    src_crs: Any = "EPSG:4326",
    dst_crs: Any = None,
    facecolor: str = "none",
    edgecolor: str = "yellow",
    linewidth: float = 1.0,
    label: str | None = None,
    markersize: float = 12.0,
) -> Figure:
    """Overlay vector geometries (settlement outlines, footprints) on a map.

    Geometries are reprojected from ``src_crs`` to the CRS of the map already on ``ax`` (set
    by :func:`plot_image`, :func:`plot_band` or :func:`plot_classes`), so GeoJSON in lon/lat
    lines up with a UTM image. The view keeps the image's extent.

    Args:
        geometries: Shapely geometries (one or an iterable), a GeoJSON dict (FeatureCollection,
            Feature or geometry) or the path of a .geojson file.
        ax: Axes to draw on.
        src_crs: CRS of the geometries. GeoJSON (RFC 7946) is always EPSG:4326; an old-style
            ``"crs"`` member in the file takes precedence over this default.
        dst_crs: CRS of the axes; default: the CRS the map on ``ax`` was drawn with.
        facecolor: Fill colour of polygons ("none" for outlines).
        edgecolor: Colour of outlines, lines and points.
        linewidth: Width of outlines and lines in points.
        label: Legend entry for these geometries (added to any existing legend).
        markersize: Size of points, in points squared.

    Returns:
        The Figure of ``ax``.

    Raises:
        MissingCRSError: ``dst_crs`` not given and ``ax`` has no map with a CRS.
        FileNotFoundError, ValueError, TypeError: unreadable input.

    Example:
        >>> fig = plot_image(rgb, transform, crs=crs)  # doctest: +SKIP
        >>> plot_vectors("settlements.geojson", ax=fig.axes[0], label="Settled")  # doctest: +SKIP
    """
    from shapely.geometry.polygon import orient

    shapes, declared = _load_geometries(geometries)
    if declared is not None and src_crs == "EPSG:4326":
        src_crs = declared
    target = dst_crs if dst_crs is not None else getattr(ax, _CRS_ATTRIBUTE, None)
    if target is None:
        raise MissingCRSError(
            "plot_vectors does not know the CRS of these axes: draw the image with crs=... "
            "(plot_image(..., crs=info.crs)) or pass dst_crs= (the raster's CRS)."
        )
    shapes = _reproject(shapes, CRS.from_user_input(src_crs), CRS.from_user_input(target))

    rings, lines, points = [], [], []
    for geom in shapes:
        for part in getattr(geom, "geoms", [geom]):
            kind = part.geom_type
            if kind == "Polygon":
                part = orient(part, 1.0)  # holes wind the other way, so they stay unfilled
                rings += [MplPath(np.asarray(part.exterior.coords), closed=True)]
                rings += [MplPath(np.asarray(r.coords), closed=True) for r in part.interiors]
            elif kind in ("LineString", "LinearRing"):
                lines.append(np.asarray(part.coords))
            elif kind == "Point":
                points.append((part.x, part.y))
            else:  # nested collections
                shapes.extend(getattr(part, "geoms", []))

    limits = (ax.get_xlim(), ax.get_ylim()) if ax.has_data() else None
    if rings:
        ax.add_patch(
            PathPatch(
                MplPath.make_compound_path(*rings),
                facecolor=facecolor,
                edgecolor=edgecolor,
                linewidth=linewidth,
            )
        )
    if lines:
        ax.add_collection(LineCollection(lines, colors=edgecolor, linewidths=linewidth))
    if points:
        xy = np.asarray(points)
        ax.scatter(xy[:, 0], xy[:, 1], s=markersize, c=edgecolor, edgecolors="black", zorder=3)
    if limits is not None:
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
    else:
        ax.autoscale_view()
    if label:
        if rings:
            handle = Patch(facecolor=facecolor, edgecolor=edgecolor, linewidth=linewidth)
        elif lines:
            handle = Line2D([], [], color=edgecolor, linewidth=linewidth)
        else:
            handle = Line2D([], [], color=edgecolor, marker="o", linestyle="none")
        _merge_legend(ax, [handle], [label], title=None)
    return ax.figure


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


def save_figure(
    fig: Figure, path: str | os.PathLike, *, dpi: int = 150, **savefig_kwargs: Any
) -> Path:
    """Save a figure atomically, creating parent folders.

    The figure is written to a temporary file in the same folder and then renamed, so a reader
    never sees a half-written image. Dates are left out of PDF/SVG metadata so the same figure
    gives the same bytes.

    Args:
        fig: The figure.
        path: Target file; the suffix picks the format (.png, .pdf, .svg, .jpg ...).
        dpi: Resolution for raster formats.
        **savefig_kwargs: Passed to :meth:`~matplotlib.figure.Figure.savefig`
            (default ``bbox_inches="tight"`` so outside legends are kept).

    Returns:
        The path written.

    Raises:
        ValueError: the suffix is not a format matplotlib can write.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(
            f"Cannot save a figure as {path}: use one of the suffixes "
            f"{', '.join('.' + s for s in sorted(supported))}."
        )
    savefig_kwargs.setdefault("bbox_inches", "tight")
    if fmt in ("pdf", "svg"):
        savefig_kwargs.setdefault("metadata", {"CreationDate" if fmt == "pdf" else "Date": None})
    with atomic_path(path) as tmp, plt.rc_context({"svg.hashsalt": "helpers.viz"}):
        fig.savefig(tmp, format=fmt, dpi=dpi, **savefig_kwargs)
    return path


def plot_windows(
    windows: Sequence[Any],
    transform: Affine,
    *,
    ax: Axes,
    values: Sequence[Any] | None = None,
    colors: Mapping[Any, str] | None = None,
    edgecolor: str = "yellow",
    linewidth: float = 0.8,
    fill_alpha: float = 0.0,
    legend_title: str | None = None,
) -> Figure:
    """Draw patch windows (rasterio ``Window`` objects) as rectangles on a map.

    Args:
        windows: The windows, in the pixel grid of ``transform``.
        transform: The raster's affine transform (north-up).
        ax: Axes of a map drawn with :func:`plot_image` or another function of this module.
        values: One value per window (a label, a split name); with ``colors`` each value gets a
            colour and a legend entry.
        colors: {value: colour}; values missing from it are not drawn.
        edgecolor: Colour of every rectangle when ``values`` is None.
        linewidth: Outline width.
        fill_alpha: Opacity of the rectangles' fill (0: outlines only).
        legend_title: Title of the legend added when ``values`` is given.

    Returns:
        The axes' figure.
    """
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    transform = _check_transform(transform)
    if values is not None and len(values) != len(windows):
        raise ValueError(f"values has {len(values)} entries for {len(windows)} windows")
    groups: dict[Any, list[Rectangle]] = {}
    for i, w in enumerate(windows):
        key = values[i] if values is not None else None
        if values is not None and (colors is None or key not in colors):
            continue
        x0, y0 = transform.c + w.col_off * transform.a, transform.f + w.row_off * transform.e
        width, height = w.width * transform.a, w.height * transform.e
        groups.setdefault(key, []).append(Rectangle((x0, y0), width, height))
    handles, labels = [], []
    for key, rects in groups.items():
        colour = edgecolor if values is None else colors[key]
        ax.add_collection(
            PatchCollection(
                rects,
                facecolor=colour if fill_alpha else "none",
                edgecolor=colour,
                linewidth=linewidth,
                alpha=None if not fill_alpha else fill_alpha,
            )
        )
        if values is not None:
            handles.append(Patch(facecolor=colour, edgecolor=colour, alpha=fill_alpha or 1.0))
            labels.append(str(key))
    if handles:
        _merge_legend(ax, handles, labels, legend_title)
    return ax.figure
