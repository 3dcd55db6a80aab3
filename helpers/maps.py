"""Draw regions of interest (ROIs) on a scene in a notebook: an ipyleaflet map with a class palette.

:class:`RoiEditor` shows a GeoTIFF scene in its true place on a web map (rendered from the file,
so it works offline), with a class palette, a train/validation selector and drawing tools for
points, lines, polygons and rectangles. Every shape drawn becomes a GeoJSON feature (EPSG:4326)
with ``class`` and ``split`` properties; editing or deleting shapes on the map updates the
collection, because the editor reads *all* drawn features from the draw control every time
they change, not only the last one drawn.

Typical use in a notebook::

    from helpers import maps, rois

    maps.enable_colab_widgets()  # no-op outside Colab
    editor = maps.RoiEditor("data/generated/sample/scene_2021.tif",
                            classes=["water", "trees", "buildings"])
    editor  # draw; then in the next cell:
    editor.rois            # the FeatureCollection
    editor.save("my_rois.geojson")
    labels = rois.rois_to_labels(editor.rois, editor.scene, classes=editor.class_codes)

Choices made here:

* Loading ROIs whose class names the palette does not know **adds** those classes to the
  palette (with a logged warning), so no ROI of a file is ever dropped; pass
  ``unknown_classes="error"`` to :meth:`RoiEditor.load` to refuse such a file instead.
* Points drawn as circle markers come back as pin markers once the editor has stored them (the
  draw control redraws every stored point as a pin); a dot in the class colour is shown under
  each pin.
* The scene is drawn as one image overlay: a percentile-stretched RGB quick-look (longest side
  ``max_size`` pixels) reprojected to Web Mercator (EPSG:3857), the CRS of the map, so it lies
  exactly where it belongs. An online basemap is optional (``basemap=True``).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject, transform_bounds

from helpers import raster
from helpers import rois as roi_tools

__all__ = [
    "DEFAULT_COLORS",
    "RoiEditor",
    "class_overlay",
    "enable_colab_widgets",
    "scene_overlay",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

#: Colours given to new classes, in order (land-cover classes of the sample region keep theirs).
DEFAULT_COLORS: tuple[str, ...] = (
    "#e41a1c",
    "#377eb8",
    "#4daf4a",
    "#984ea3",
    "#ff7f00",
    "#ffff33",
    "#a65628",
    "#f781bf",
    "#17becf",
    "#999999",
)
_LANDCOVER_COLORS = roi_tools.LANDCOVER_COLORS
_WEB_MERCATOR = CRS.from_epsg(3857)


def enable_colab_widgets() -> bool:
    """Turn on Colab's custom widget manager, which ipyleaflet maps need there.

    Returns:
        True on Colab (enabled), False elsewhere (nothing to do: JupyterLab renders the widgets
        itself).
    """
    try:
        from google.colab import output  # type: ignore[import-not-found]
    except ImportError:
        return False
    output.enable_custom_widget_manager()
    return True


# --------------------------------------------------------------------------------------------
# The scene as an image overlay
# --------------------------------------------------------------------------------------------


def scene_overlay(
    scene: PathLike,
    *,
    bands: Sequence[int | str] = ("red", "green", "blue"),
    max_size: int = 1024,
    low: float = 2.0,
    high: float = 98.0,
) -> tuple[str, tuple[tuple[float, float], tuple[float, float]]]:
    """A PNG quick-look of a scene in Web Mercator, as a data URL, and its lat/lon bounds.

    The decimated RGB bands are stretched between the ``low`` and ``high`` percentiles, warped
    to EPSG:3857 (the CRS of web maps) and encoded as an RGBA PNG, with nodata transparent. A
    rectangle in Web Mercator is a rectangle in lon/lat, so the image's two corners place it
    exactly.

    Args:
        scene: The GeoTIFF (needs a CRS).
        bands: Bands shown as red, green, blue (names or 1-based indices); a one-band scene is
            shown in grey.
        max_size: Longest side of the quick-look, in pixels.
        low: Lower percentile of the stretch.
        high: Upper percentile of the stretch.

    Returns:
        ``(url, ((south, west), (north, east)))`` for :class:`ipyleaflet.ImageOverlay`.

    Raises:
        MissingCRSError: The scene has no CRS.
        RasterError: A band is unknown.

    Example:
        >>> url, bounds = scene_overlay("scene.tif", max_size=512)  # doctest: +SKIP
    """
    info = raster.describe(scene)
    crs = raster.ensure_crs(info.crs, scene)
    chosen = list(bands) if info.count >= 3 else [1]
    image, transform = raster.read_decimated(scene, max_size=max_size, bands=chosen, masked=True)
    rgb = raster.percentile_stretch(image, low, high, nodata=info.nodata)
    if rgb.shape[0] == 1:
        rgb = np.repeat(rgb, 3, axis=0)
    height, width = rgb.shape[1:]
    dst_transform, dst_width, dst_height = calculate_default_transform(
        crs, _WEB_MERCATOR, width, height, *_bounds(transform, width, height)
    )
    warped = np.full((3, dst_height, dst_width), np.nan, dtype=np.float32)
    reproject(
        rgb,
        warped,
        src_transform=transform,
        src_crs=crs,
        src_nodata=np.nan,
        dst_transform=dst_transform,
        dst_crs=_WEB_MERCATOR,
        dst_nodata=np.nan,
        resampling=Resampling.bilinear,
    )
    alpha = np.isfinite(warped).all(axis=0)
    rgba = np.zeros((dst_height, dst_width, 4), dtype=np.uint8)
    rgba[..., :3] = np.round(np.nan_to_num(np.moveaxis(warped, 0, -1)) * 255).astype(np.uint8)
    rgba[..., 3] = np.where(alpha, 255, 0)
    return _png_overlay(rgba, dst_transform)


def class_overlay(
    label_map: PathLike,
    classes: Mapping[str, int],
    *,
    colors: Mapping[str, str] | None = None,
    max_size: int = 1024,
    nodata: int | None = 255,
) -> tuple[str, tuple[tuple[float, float], tuple[float, float]]]:
    """A class map (e.g. a predicted label map) as a coloured PNG in Web Mercator, with bounds.

    The counterpart of :func:`scene_overlay` for integer class rasters: the map is decimated
    and warped with nearest-neighbour resampling (a class code is never averaged into
    another), each class is painted in its colour, and nodata and codes not in ``classes``
    are transparent. Show it over the scene with ``ipyleaflet.ImageOverlay(url=url,
    bounds=bounds, opacity=0.6)``.

    Args:
        label_map: A one-band GeoTIFF of class codes (needs a CRS).
        classes: ``{class name: code}``, e.g. :data:`helpers.rois.LANDCOVER_ROI_CLASSES`.
        colors: ``{class name: colour}``; the land-cover classes keep their colours, others
            get :data:`DEFAULT_COLORS`.
        max_size: Longest side of the quick-look, in pixels.
        nodata: Code drawn transparent (the file's own nodata is always transparent).

    Returns:
        ``(url, ((south, west), (north, east)))`` for :class:`ipyleaflet.ImageOverlay`.

    Raises:
        MissingCRSError: The label map has no CRS.
        ValueError: ``classes`` is empty.

    Example:
        >>> url, bounds = class_overlay("landcover.tif", {"water": 1, "trees": 2})
        ... # doctest: +SKIP
    """
    from matplotlib.colors import to_rgb

    if not classes:
        raise ValueError("classes is empty: pass {class name: code} for the classes to colour.")
    info = raster.describe(label_map)
    crs = raster.ensure_crs(info.crs, label_map)
    codes, transform = raster.read_decimated(
        label_map, max_size=max_size, bands=[1], resampling="nearest"
    )
    codes = codes[0]
    height, width = codes.shape
    dst_transform, dst_width, dst_height = calculate_default_transform(
        crs, _WEB_MERCATOR, width, height, *_bounds(transform, width, height)
    )
    fill = 255  # outside the map after warping; class codes are 0-254, so it stays transparent
    warped = np.full((dst_height, dst_width), fill, dtype=np.uint8)
    reproject(
        codes.astype(np.uint8),
        warped,
        src_transform=transform,
        src_crs=crs,
        dst_transform=dst_transform,
        dst_crs=_WEB_MERCATOR,
        dst_nodata=fill,
        resampling=Resampling.nearest,
    )
    palette = dict(colors or {})
    table = np.zeros((256, 4), dtype=np.uint8)  # code -> RGBA, transparent by default
    used: list[str] = []
    for name, code in classes.items():
        colour = palette.get(name) or _LANDCOVER_COLORS.get(name)
        if colour is None:
            colour = next((c for c in DEFAULT_COLORS if c not in used), DEFAULT_COLORS[0])
        used.append(colour)
        table[int(code)] = [*(round(255 * v) for v in to_rgb(colour)), 255]
    for invisible in {nodata, info.nodata} - {None}:
        if 0 <= int(invisible) <= 255:
            table[int(invisible)] = 0
    rgba = table[warped]
    return _png_overlay(rgba, dst_transform)


def _bounds(transform: Any, width: int, height: int) -> tuple[float, float, float, float]:
    xs, ys = zip(*(transform * corner for corner in [(0, 0), (width, height)]), strict=True)
    return min(xs), min(ys), max(xs), max(ys)


# --------------------------------------------------------------------------------------------
# The editor
# --------------------------------------------------------------------------------------------


def _png_overlay(rgba: np.ndarray, transform: Any) -> tuple[str, tuple]:
    """An RGBA array on a Web Mercator grid as a PNG data URL and its lat/lon bounds."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG", optimize=True)
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    height, width = rgba.shape[:2]
    west, south, east, north = transform_bounds(
        _WEB_MERCATOR, "EPSG:4326", *_bounds(transform, width, height)
    )
    return url, ((south, west), (north, east))


def _geometry_key(geometry: Mapping[str, Any] | None) -> str:
    """A key that identifies a drawn shape by its coordinates (the map rounds them alike)."""
    return json.dumps((geometry or {}).get("coordinates"), separators=(",", ":"))


def _kind(feature: Mapping[str, Any]) -> str:
    geometry_type = (feature.get("geometry") or {}).get("type", "")
    return roi_tools._GEOMETRY_KINDS.get(geometry_type, "other")


class RoiEditor:
    """A map to draw ROIs on a scene, class by class, for training and validation.

    Display the editor (last expression of a cell, or ``display(editor)``), pick a class and a
    split above the map, and draw with the tools on the left of the map: polyline, polygon,
    rectangle, circle marker (a point) and marker (a point); the edit and delete tools change
    or remove shapes. :attr:`rois` always holds exactly the shapes on the map.

    Args:
        scene: The GeoTIFF to draw on (needs a CRS).
        classes: Class names, or ``{name: colour}``. Names of the sample region's land cover
            get its colours; others get :data:`DEFAULT_COLORS`. Default: one class
            ``"class_1"``.
        rois: ROIs to start from: a file, a FeatureCollection or a GeoDataFrame (see
            :meth:`load`).
        path: Where the "Save" button writes (with ``overwrite=True``); None hides the button.
        bands: Bands of the quick-look (see :func:`scene_overlay`).
        max_size: Longest side of the quick-look in pixels.
        basemap: Also show OpenStreetMap under the scene (needs internet).
        height: Height of the map (CSS).

    Attributes:
        scene: The scene's path.
        map: The :class:`ipyleaflet.Map`.
        draw_control: The :class:`ipyleaflet.DrawControl` (recreated when the class changes,
            so that new shapes are drawn in the class's colour).
        widget: The whole editor (an :class:`ipywidgets.VBox`).

    Example:
        >>> editor = RoiEditor("scene.tif", classes=["water", "trees"])  # doctest: +SKIP
        >>> editor.current_class = "trees"  # doctest: +SKIP
        >>> editor.rois["features"]  # doctest: +SKIP
        []
    """

    def __init__(
        self,
        scene: PathLike,
        *,
        classes: Sequence[str] | Mapping[str, str] | None = None,
        rois: Any = None,
        path: PathLike | None = None,
        bands: Sequence[int | str] = ("red", "green", "blue"),
        max_size: int = 1024,
        basemap: bool = False,
        height: str = "600px",
    ) -> None:
        import ipyleaflet
        import ipywidgets as widgets

        self.scene = Path(os.fspath(scene))
        self.path = Path(path) if path is not None else None
        self._colors: dict[str, str] = {}
        for name, colour in self._class_items(classes):
            self._colors[name] = colour or self._next_color(name)
        if not self._colors:
            self._colors["class_1"] = self._next_color("class_1")
        self._features: list[dict[str, Any]] = []
        self._pending: dict[str, tuple[str, str]] = {}
        self._syncing = False

        url, bounds = scene_overlay(self.scene, bands=bands, max_size=max_size)
        self.bounds = bounds
        (south, west), (north, east) = bounds
        self.overlay = ipyleaflet.ImageOverlay(url=url, bounds=bounds, name="scene")
        layers: list[Any] = [self.overlay]
        if basemap:
            base = ipyleaflet.basemap_to_tiles(ipyleaflet.basemaps.OpenStreetMap.Mapnik)
            base.base = True
            layers.insert(0, base)
        self._points = ipyleaflet.GeoJSON(
            data={"type": "FeatureCollection", "features": []},
            point_style={"radius": 5, "weight": 1, "fillOpacity": 0.9},
            name="points",
        )
        layers.append(self._points)
        self.map = ipyleaflet.Map(
            center=((south + north) / 2, (west + east) / 2),
            zoom=self._zoom_for(bounds),
            layers=layers,
            scroll_wheel_zoom=True,
            layout=widgets.Layout(height=height, width="100%"),
        )
        self.map.add(ipyleaflet.ScaleControl(position="bottomleft", imperial=False))

        # palette, split, class management, status
        self._class_picker = widgets.Dropdown(
            options=list(self._colors), description="Class", layout=widgets.Layout(width="260px")
        )
        self._color_picker = widgets.ColorPicker(
            value=self._colors[self._class_picker.value],
            concise=True,
            layout=widgets.Layout(width="40px"),
        )
        self._split_picker = widgets.ToggleButtons(
            options=list(roi_tools.ROI_SPLITS),
            value="train",
            description="Split",
            style={"button_width": "90px"},
        )
        self._name_box = widgets.Text(
            placeholder="class name", layout=widgets.Layout(width="150px")
        )
        self._add_button = widgets.Button(description="Add class", icon="plus")
        self._rename_button = widgets.Button(description="Rename class", icon="pencil")
        self._status = widgets.HTML()
        self._message = widgets.HTML()
        self._class_picker.observe(self._on_class, names="value")
        self._color_picker.observe(self._on_color, names="value")
        self._split_picker.observe(self._on_split, names="value")
        self._add_button.on_click(lambda _: self._run(self.add_class, self._name_box.value))
        self._rename_button.on_click(
            lambda _: self._run(self.rename_class, self.current_class, self._name_box.value)
        )
        row1 = [self._class_picker, self._color_picker, self._split_picker]
        row2 = [self._name_box, self._add_button, self._rename_button]
        if self.path is not None:
            save = widgets.Button(description="Save", icon="save")
            save.on_click(lambda _: self._run(self.save, self.path, overwrite=True))
            row2.append(save)
        self.widget = widgets.VBox(
            [widgets.HBox(row1), widgets.HBox(row2), self.map, self._status, self._message]
        )
        self.draw_control: Any = None
        self._make_draw_control()
        if rois is not None:
            self.load(rois)
        self._refresh()

    # ---------------------------------------------------------------- public API

    @property
    def classes(self) -> dict[str, str]:
        """``{class name: colour}`` of the palette, in order."""
        return dict(self._colors)

    @property
    def class_codes(self) -> dict[str, int]:
        """``{class name: code}`` with codes 0, 1, ... in palette order (for rois_to_labels)."""
        return {name: code for code, name in enumerate(self._colors)}

    @property
    def current_class(self) -> str:
        """The class new shapes get."""
        return str(self._class_picker.value)

    @current_class.setter
    def current_class(self, name: str) -> None:
        if name not in self._colors:
            raise KeyError(f"class {name!r} is not in the palette ({', '.join(self._colors)}).")
        self._class_picker.value = name

    @property
    def current_split(self) -> str:
        """The split new shapes get: ``"train"`` or ``"validation"``."""
        return str(self._split_picker.value)

    @current_split.setter
    def current_split(self, split: str) -> None:
        if split not in roi_tools.ROI_SPLITS:
            raise ValueError(f"split must be 'train' or 'validation', got {split!r}.")
        self._split_picker.value = split

    @property
    def rois(self) -> dict[str, Any]:
        """The ROIs on the map: a FeatureCollection (EPSG:4326) with ``class`` and ``split``."""
        return {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "geometry": f["geometry"],
                    "properties": {
                        "class": f["properties"]["class"],
                        "split": f["properties"]["split"],
                    },
                }
                for f in self._features
            ],
        }

    def to_geodataframe(self) -> Any:
        """The ROIs as a GeoDataFrame (EPSG:4326) with columns ``class``, ``split``, geometry."""
        return roi_tools.as_roi_frame(self.rois)

    def add_class(self, name: str, color: str | None = None) -> None:
        """Add a class to the palette and select it.

        Raises:
            ValueError: ``name`` is empty or already in the palette.
        """
        name = str(name).strip()
        if not name:
            raise ValueError("Type a class name first.")
        if name in self._colors:
            raise ValueError(f"class {name!r} is already in the palette.")
        self._colors[name] = color or self._next_color(name)
        self._class_picker.options = list(self._colors)
        self._class_picker.value = name
        self._refresh()

    def rename_class(self, old: str, new: str) -> None:
        """Rename a class; its ROIs follow.

        Raises:
            KeyError: ``old`` is not in the palette.
            ValueError: ``new`` is empty or already used.
        """
        new = str(new).strip()
        if old not in self._colors:
            raise KeyError(f"class {old!r} is not in the palette ({', '.join(self._colors)}).")
        if not new or new in self._colors:
            raise ValueError(f"choose a new, unused class name (got {new!r}).")
        self._colors = {(new if k == old else k): v for k, v in self._colors.items()}
        for feature in self._features:
            if feature["properties"]["class"] == old:
                feature["properties"]["class"] = new
        self._class_picker.options = list(self._colors)
        self._class_picker.value = new
        self._push()

    def set_color(self, name: str, color: str) -> None:
        """Change the colour of a class; its ROIs are redrawn in it."""
        if name not in self._colors:
            raise KeyError(f"class {name!r} is not in the palette ({', '.join(self._colors)}).")
        if name == self.current_class and self._color_picker.value != color:
            self._color_picker.value = color  # its observer applies the colour
        else:
            self._apply_color(name, color)

    def _apply_color(self, name: str, color: str) -> None:
        self._colors[name] = color
        for feature in self._features:
            if feature["properties"]["class"] == name:
                feature["properties"]["style"] = self._style(name, _kind(feature))
        self._make_draw_control()
        self._push()

    def save(self, path: PathLike, *, overwrite: bool = False) -> Path:
        """Write the ROIs to a GeoJSON file (EPSG:4326), atomically.

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is False.
        """
        written = roi_tools.write_rois(self.rois, path, overwrite=overwrite)
        self._message.value = f"Saved {len(self._features)} ROIs to {written}."
        logger.info("Saved %d ROIs to %s.", len(self._features), written)
        return written

    def load(self, source: Any, *, unknown_classes: str = "add") -> None:
        """Replace the ROIs on the map with those of a file, FeatureCollection or GeoDataFrame.

        ROIs in another CRS are reprojected to EPSG:4326. The file is read and checked
        completely before anything changes: a failed load leaves the current ROIs untouched.

        Args:
            source: A GeoJSON path, a FeatureCollection dict or a GeoDataFrame.
            unknown_classes: ``"add"`` (default) adds class names the palette lacks, with a
                warning; ``"error"`` refuses the file.

        Raises:
            FileNotFoundError: A missing file.
            RoiError: A malformed file, or unknown classes with ``unknown_classes="error"``.
        """
        if unknown_classes not in ("add", "error"):
            raise ValueError(f"unknown_classes must be 'add' or 'error', got {unknown_classes!r}.")
        gdf = roi_tools.as_roi_frame(source, crs=roi_tools.ROI_CRS)
        unknown = [name for name in dict.fromkeys(gdf["class"]) if name not in self._colors]
        if unknown and unknown_classes == "error":
            raise roi_tools.RoiError(
                f"{gdf.attrs.get('source', 'ROIs')}: class name(s) {', '.join(map(repr, unknown))}"
                f" are not in the palette ({', '.join(self._colors)}). Add them with add_class, "
                "or load with unknown_classes='add'."
            )
        collection = json.loads(gdf.to_json(drop_id=True))
        if unknown:
            logger.warning("Added class(es) %s from the loaded ROIs to the palette.", unknown)
            for name in unknown:
                self._colors[name] = self._next_color(name)
            self._class_picker.options = list(self._colors)
        self._features = [
            self._tagged(f, f["properties"]["class"], f["properties"]["split"])
            for f in collection["features"]
        ]
        self._push()
        self._message.value = f"Loaded {len(self._features)} ROIs."

    def clear(self) -> None:
        """Remove every ROI from the map."""
        self._features = []
        self._push()

    # ---------------------------------------------------------------- display

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # ---------------------------------------------------------------- internals

    @staticmethod
    def _class_items(classes: Any) -> list[tuple[str, str | None]]:
        if classes is None:
            return []
        if isinstance(classes, str):
            raise TypeError("classes must be a list of names or a {name: colour} dict.")
        if isinstance(classes, Mapping):
            return [(str(k), v) for k, v in classes.items()]
        return [(str(name), None) for name in classes]

    def _next_color(self, name: str) -> str:
        if name in _LANDCOVER_COLORS and _LANDCOVER_COLORS[name] not in self._colors.values():
            return _LANDCOVER_COLORS[name]
        used = set(self._colors.values())
        for colour in DEFAULT_COLORS:
            if colour not in used:
                return colour
        return DEFAULT_COLORS[len(self._colors) % len(DEFAULT_COLORS)]

    @staticmethod
    def _zoom_for(bounds: tuple[tuple[float, float], tuple[float, float]]) -> int:
        (south, west), (north, east) = bounds
        span = max(east - west, (north - south) / max(np.cos(np.radians(north)), 0.1), 1e-9)
        # a 256-px tile spans 360 degrees at zoom 0; the map is ~800 px wide
        return int(np.clip(np.floor(np.log2(360 * 800 / 256 / span)), 1, 22))

    def _style(self, name: str, kind: str) -> dict[str, Any]:
        colour = self._colors.get(name, "#999999")
        style = {"color": colour, "weight": 3 if kind == "line" else 2, "opacity": 1.0}
        if kind != "line":
            style.update(fillColor=colour, fillOpacity=0.35 if kind == "polygon" else 0.9)
        return style

    def _tagged(self, feature: Mapping[str, Any], name: str, split: str) -> dict[str, Any]:
        properties = {
            "class": name,
            "split": split,
            "style": self._style(name, _kind(feature)),
        }
        return {"type": "Feature", "geometry": feature["geometry"], "properties": properties}

    def _draw_options(self) -> dict[str, Any]:
        colour = self._colors[self.current_class]
        shape = {"color": colour, "fillColor": colour, "fillOpacity": 0.35, "weight": 2}
        return {
            "polyline": {"shapeOptions": {"color": colour, "weight": 3}},
            "polygon": {"shapeOptions": shape},
            "rectangle": {"shapeOptions": shape},
            "circlemarker": {"color": colour, "fillColor": colour, "fillOpacity": 0.9, "radius": 6},
            "marker": {"repeatMode": False},
            "circle": {},
        }

    def _make_draw_control(self) -> None:
        import ipyleaflet

        # Leaflet.draw reads its tool options once, when the control is shown, so a new class
        # colour needs a new control; the drawn shapes move over through ``data``.
        old = self.draw_control
        control = ipyleaflet.DrawControl(
            data=[dict(f) for f in self._features], position="topleft", **self._draw_options()
        )
        control.on_draw(self._on_draw)
        control.observe(self._on_data, names="data")
        if old is not None:
            old.unobserve(self._on_data, names="data")
            old.on_draw(self._on_draw, remove=True)
            self.map.remove(old)
        self.map.add(control)
        self.draw_control = control

    def _on_draw(self, control: Any, action: str, geo_json: Mapping[str, Any]) -> None:
        # Called before the control sends its new ``data``: remember the class and split the
        # shape was drawn with, so a class change right after drawing cannot relabel it.
        if action == "created":
            self._pending[_geometry_key(geo_json.get("geometry"))] = (
                self.current_class,
                self.current_split,
            )

    def _on_data(self, change: Mapping[str, Any]) -> None:
        if self._syncing:
            return
        features, changed = [], False
        for feature in change["new"]:
            properties = feature.get("properties") or {}
            if properties.get("class") in self._colors and properties.get("split"):
                features.append(self._tagged(feature, properties["class"], properties["split"]))
                continue
            name, split = self._pending.pop(
                _geometry_key(feature.get("geometry")), (self.current_class, self.current_split)
            )
            features.append(self._tagged(feature, name, split))
            changed = True
        self._features = features
        if changed:
            self._push()
        else:
            self._refresh()

    def _push(self) -> None:
        """Send the stored features (with their class styles) to the map."""
        self._syncing = True
        try:
            self.draw_control.data = [dict(f) for f in self._features]
        finally:
            self._syncing = False
        self._refresh()

    def _refresh(self) -> None:
        points = [f for f in self._features if _kind(f) == "point"]
        self._points.data = {"type": "FeatureCollection", "features": points}
        rows = []
        for name, colour in self._colors.items():
            n = {s: 0 for s in roi_tools.ROI_SPLITS}
            for f in self._features:
                if f["properties"]["class"] == name:
                    n[f["properties"]["split"]] += 1
            rows.append(
                f'<span style="display:inline-block;width:12px;height:12px;background:{colour};'
                f'border:1px solid #333;margin-right:4px"></span>{name}: '
                f"{n['train']} train / {n['validation']} validation"
            )
        self._status.value = f"<b>{len(self._features)} ROIs</b> &nbsp; " + " &nbsp;|&nbsp; ".join(
            rows
        )

    def _on_class(self, change: Mapping[str, Any]) -> None:
        if change["new"] is None:
            return
        self._color_picker.value = self._colors[change["new"]]
        self._make_draw_control()

    def _on_color(self, change: Mapping[str, Any]) -> None:
        name = self.current_class
        if self._colors.get(name) != change["new"]:
            self._apply_color(name, change["new"])

    def _on_split(self, change: Mapping[str, Any]) -> None:
        self._refresh()

    def _run(self, function: Any, *args: Any, **kwargs: Any) -> None:
        """Run a button's action; show its error under the map instead of losing it."""
        try:
            function(*args, **kwargs)
        except (ValueError, KeyError, OSError) as exc:
            self._message.value = f'<span style="color:#b00020">{exc}</span>'
        else:
            if function is not self.save:
                self._message.value = ""
