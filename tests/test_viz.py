"""Tests for helpers.viz: figures keep map coordinates, labels, legends and scale bars."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from affine import Affine  # noqa: E402
from matplotlib.patches import PathPatch  # noqa: E402
from matplotlib_scalebar.scalebar import ScaleBar  # noqa: E402
from pyproj import Transformer  # noqa: E402
from rasterio.transform import array_bounds, from_origin  # noqa: E402
from shapely.geometry import LineString, Point, Polygon, box  # noqa: E402

from helpers import raster, viz  # noqa: E402
from helpers.raster import MissingCRSError  # noqa: E402

UTM = "EPSG:32633"
TRANSFORM = from_origin(500_000, 4_000_000, 2.0, 2.0)  # 2 m pixels
H, W = 40, 60
CLASSES = {
    1: ("water", "#2b6cb0"),
    2: ("trees", "#1f6f3a"),
    4: ("bare_soil", "#c8a165"),
    7: ("building_informal", "#f0ad4e"),
}


def _extent() -> tuple[float, float, float, float]:
    west, south, east, north = array_bounds(H, W, TRANSFORM)
    return west, east, south, north


def _rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    rgb = rng.random((3, H, W)).astype("float32")
    rgb[:, :5, :5] = np.nan
    return rgb


def _scalebars(ax) -> list[ScaleBar]:
    return [a for a in ax.artists if isinstance(a, ScaleBar)]


def _to_lonlat(geom):
    import shapely

    tr = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


# --------------------------------------------------------------------------------------------
# plot_image
# --------------------------------------------------------------------------------------------


def test_plot_image_draws_at_map_extent_with_labels_and_scalebar():
    fig = viz.plot_image(_rgb(), TRANSFORM, crs=UTM, title="True colour")
    ax = fig.axes[0]
    image = ax.get_images()[0]
    assert image.get_extent() == pytest.approx(_extent())
    assert ax.get_xlabel() == "Easting (m)" and ax.get_ylabel() == "Northing (m)"
    assert ax.get_title() == "True colour"
    (bar,) = _scalebars(ax)
    assert bar.dx == 1 and bar.units == "m"


def test_plot_image_nan_pixels_are_transparent():
    fig = viz.plot_image(_rgb(), TRANSFORM, crs=UTM)
    rgba = fig.axes[0].get_images()[0].get_array()
    assert rgba.shape == (H, W, 4)
    assert (rgba[:5, :5, 3] == 0).all()
    assert (rgba[5:, 5:, 3] == 1).all()


def test_plot_image_geographic_labels_and_no_scalebar():
    transform = from_origin(30.0, -1.0, 0.001, 0.001)
    fig = viz.plot_image(_rgb(), transform, crs="EPSG:4326")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Longitude (°)" and ax.get_ylabel() == "Latitude (°)"
    assert _scalebars(ax) == []


def test_plot_image_without_crs_or_with_scalebar_off():
    ax = viz.plot_image(_rgb(), TRANSFORM).axes[0]
    assert ax.get_xlabel() == "x (map units)" and _scalebars(ax) == []
    ax = viz.plot_image(_rgb(), TRANSFORM, crs=UTM, scalebar=False).axes[0]
    assert _scalebars(ax) == []


def test_plot_image_single_band_is_grey():
    fig = viz.plot_image(_rgb()[0], TRANSFORM, crs=UTM)
    image = fig.axes[0].get_images()[0]
    assert image.get_cmap().name == "gray"
    assert image.get_array().shape == (H, W)


def test_plot_image_rejects_unstretched_or_misshaped_input():
    with pytest.raises(ValueError, match="percentile_stretch"):
        viz.plot_image(np.full((3, 4, 4), 1200.0), TRANSFORM)
    with pytest.raises(ValueError, match="raster.composite"):
        viz.plot_image(np.zeros((4, 4, 4)), TRANSFORM)
    with pytest.raises(ValueError, match="rotated"):
        viz.plot_image(np.zeros((4, 4)), Affine(1, 0.5, 0, 0.5, -1, 0))
    with pytest.raises(TypeError, match="Affine"):
        viz.plot_image(np.zeros((4, 4)), (0, 1, 0, 0, 0, -1))


def test_plot_image_draws_into_given_axes():
    fig, axes = plt.subplots(1, 2)
    returned = viz.plot_image(_rgb(), TRANSFORM, crs=UTM, ax=axes[1])
    assert returned is fig
    assert len(axes[1].get_images()) == 1 and len(axes[0].get_images()) == 0


# --------------------------------------------------------------------------------------------
# plot_band, plot_classes, plot_histograms, plot_side_by_side
# --------------------------------------------------------------------------------------------


def test_plot_band_has_colorbar_with_label_and_limits():
    ndvi = np.linspace(-1, 1, H * W, dtype="float32").reshape(H, W)
    fig = viz.plot_band(
        ndvi, TRANSFORM, crs=UTM, cmap="RdYlGn", vmin=-1, vmax=1, colorbar_label="NDVI"
    )
    ax, colorbar_ax = fig.axes
    image = ax.get_images()[0]
    assert image.get_extent() == pytest.approx(_extent())
    assert image.get_clim() == (-1, 1)
    assert image.get_cmap().name == "RdYlGn"
    assert colorbar_ax.get_ylabel() == "NDVI"
    assert len(_scalebars(ax)) == 1


def test_plot_band_nodata_is_masked():
    band = np.ones((1, H, W), "uint16")
    band[0, 0, 0] = 0
    fig = viz.plot_band(band, TRANSFORM, nodata=0)
    shown = fig.axes[0].get_images()[0].get_array()
    assert np.ma.getmaskarray(shown)[0, 0] and not np.ma.getmaskarray(shown)[1:, 1:].any()
    with pytest.raises(ValueError, match="single band"):
        viz.plot_band(np.zeros((2, 4, 4)), TRANSFORM)


def _class_map() -> np.ndarray:
    cm = np.zeros((H, W), "uint8")
    cm[:, :20] = 1
    cm[:, 20:40] = 4
    cm[:, 40:] = 7
    cm[:3, :3] = 0  # nodata
    return cm


def test_plot_classes_colours_each_code_and_legends_present_classes():
    fig = viz.plot_classes(_class_map(), TRANSFORM, CLASSES, crs=UTM, title="Land cover")
    ax = fig.axes[0]
    image = ax.get_images()[0]
    assert image.get_extent() == pytest.approx(_extent())
    rgba = image.to_rgba(image.get_array())
    assert matplotlib.colors.to_hex(rgba[10, 10]) == "#2b6cb0"  # water
    assert matplotlib.colors.to_hex(rgba[10, 30]) == "#c8a165"  # bare soil
    assert matplotlib.colors.to_hex(rgba[10, 50]) == "#f0ad4e"  # informal buildings
    assert rgba[0, 0, 3] == 0  # nodata transparent
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["water", "bare_soil", "building_informal"]  # trees absent
    handles = ax.get_legend().legend_handles
    assert matplotlib.colors.to_hex(handles[0].get_facecolor()) == "#2b6cb0"


def test_plot_classes_legend_all_and_none():
    ax = viz.plot_classes(_class_map(), TRANSFORM, CLASSES, legend="all").axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        name for name, _ in CLASSES.values()
    ]
    ax = viz.plot_classes(_class_map(), TRANSFORM, CLASSES, legend=False).axes[0]
    assert ax.get_legend() is None


def test_plot_classes_unknown_code_is_an_error():
    cm = _class_map()
    cm[20, 20] = 9
    with pytest.raises(ValueError, match=r"codes \[9\].*Add them to classes"):
        viz.plot_classes(cm, TRANSFORM, CLASSES)


def test_plot_histograms_one_line_per_band_valid_pixels_only():
    image = np.stack([np.full((H, W), v, "uint16") for v in (100, 200, 300, 400)])
    image[:, :10, :] = 0
    names = ("blue", "green", "red", "nir")
    fig = viz.plot_histograms(image, names, nodata=0, title="Histograms", log=True)
    ax = fig.axes[0]
    steps = ax.patches
    assert len(steps) == 4
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(names)
    assert matplotlib.colors.to_hex(steps[3].get_edgecolor()) == matplotlib.colors.to_hex("darkred")
    assert ax.get_yscale() == "log"
    counts = steps[0].get_data().values
    assert counts.sum() == (H - 10) * W  # nodata rows excluded
    edges = steps[0].get_data().edges
    assert edges[0] >= 100  # the 0 spike is not there


def test_plot_side_by_side_shares_extent():
    rgb = _rgb()
    fig = viz.plot_side_by_side([(rgb, "A"), (rgb[0], "B")], TRANSFORM, crs=UTM, suptitle="S")
    assert [ax.get_title() for ax in fig.axes] == ["A", "B"]
    assert fig.axes[0].get_xlim() == fig.axes[1].get_xlim()
    assert fig.get_suptitle() == "S"


# --------------------------------------------------------------------------------------------
# plot_vectors
# --------------------------------------------------------------------------------------------


def test_plot_vectors_reprojects_lonlat_onto_the_utm_image(make_geojson):
    fig = viz.plot_image(_rgb(), TRANSFORM, crs=UTM)
    ax = fig.axes[0]
    limits = (ax.get_xlim(), ax.get_ylim())
    outline = box(500_010, 3_999_950, 500_050, 3_999_990)
    far_away = box(600_000, 3_900_000, 600_010, 3_900_010)  # must not widen the view
    path = make_geojson([_to_lonlat(outline), _to_lonlat(far_away)])
    viz.plot_vectors(path, ax=ax, label="Settlements")
    (patch,) = [p for p in ax.patches if isinstance(p, PathPatch)]
    vertices = patch.get_path().vertices
    first_ring = vertices[:5]
    assert first_ring[:, 0].min() == pytest.approx(500_010, abs=0.01)
    assert first_ring[:, 1].max() == pytest.approx(3_999_990, abs=0.01)
    assert (ax.get_xlim(), ax.get_ylim()) == limits
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["Settlements"]


def test_plot_vectors_adds_to_class_legend_and_accepts_geojson_dicts():
    fig = viz.plot_classes(_class_map(), TRANSFORM, CLASSES, crs=UTM)
    ax = fig.axes[0]
    square = _to_lonlat(box(500_010, 3_999_950, 500_050, 3_999_990))
    collection = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "geometry": square.__geo_interface__, "properties": {}}],
    }
    viz.plot_vectors(collection, ax=ax, edgecolor="black", label="Settlements 2021")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["water", "bare_soil", "building_informal", "Settlements 2021"]


def test_plot_vectors_lines_points_holes_and_same_crs():
    _, ax = plt.subplots()
    holed = Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], [[(4, 4), (6, 4), (6, 6), (4, 6)]])
    viz.plot_vectors(
        [holed, LineString([(12, 0), (20, 8)]), Point(15, 5)],
        ax=ax,
        src_crs=UTM,
        dst_crs=UTM,
        facecolor="orange",
    )
    (patch,) = ax.patches
    fig = ax.figure
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())

    def colour_at(x, y):
        col, row = ax.transData.transform((x, y))
        return matplotlib.colors.to_hex(pixels[pixels.shape[0] - int(row), int(col)] / 255)

    assert colour_at(8, 2) == matplotlib.colors.to_hex("orange")
    assert colour_at(5, 5) == "#ffffff"  # the hole stays open
    assert len(ax.collections) == 2  # the line and the point
    assert ax.get_xlim()[1] >= 20  # empty axes zoom to the data


def test_plot_vectors_needs_a_target_crs():
    _, ax = plt.subplots()
    with pytest.raises(MissingCRSError, match="dst_crs"):
        viz.plot_vectors([Point(0, 0)], ax=ax)
    with pytest.raises(FileNotFoundError, match="missing.geojson"):
        viz.plot_vectors("missing.geojson", ax=ax, dst_crs=UTM)
    with pytest.raises(TypeError, match="shapely geometries"):
        viz.plot_vectors([42], ax=ax, dst_crs=UTM)


# --------------------------------------------------------------------------------------------
# save_figure and an end-to-end figure
# --------------------------------------------------------------------------------------------


def test_save_figure_writes_png_atomically(tmp_path):
    fig = viz.plot_image(_rgb(), TRANSFORM, crs=UTM, title="T")
    target = tmp_path / "figures" / "nested" / "image.png"
    returned = viz.save_figure(fig, target, dpi=50)
    assert returned == target
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.imread(target).ndim == 3
    assert [p.name for p in target.parent.iterdir()] == ["image.png"]  # no temp file left
    viz.save_figure(fig, target, dpi=50)  # overwriting works too
    assert [p.name for p in target.parent.iterdir()] == ["image.png"]


@pytest.mark.parametrize("suffix", ["png", "pdf", "svg"])
def test_save_figure_same_figure_same_bytes(tmp_path, suffix):
    def build():
        return viz.plot_image(_rgb(), TRANSFORM, crs=UTM, title="T")

    a = viz.save_figure(build(), tmp_path / f"a.{suffix}", dpi=50).read_bytes()
    b = viz.save_figure(build(), tmp_path / f"b.{suffix}", dpi=50).read_bytes()
    assert a == b


def test_save_figure_bad_suffix_names_the_formats(tmp_path):
    fig = viz.plot_image(_rgb()[0], TRANSFORM, crs=UTM)
    with pytest.raises(ValueError, match=r"figure\.xyz.*\.png"):
        viz.save_figure(fig, tmp_path / "figure.xyz")
    assert list(tmp_path.iterdir()) == []


def test_scene_from_file_to_figure(scene_path, tmp_path):
    info = raster.describe(scene_path)
    image, transform = raster.read_decimated(scene_path, max_size=32, masked=True)
    rgb = raster.percentile_stretch(raster.composite(image, info.band_names))
    fig = viz.plot_image(rgb, transform, crs=info.crs, title="Scene")
    assert fig.axes[0].get_images()[0].get_extent() == pytest.approx(
        (info.bounds.left, info.bounds.right, info.bounds.bottom, info.bounds.top)
    )
    assert viz.save_figure(fig, tmp_path / "scene.png").stat().st_size > 0


def test_plot_windows_draws_one_rectangle_per_window_with_a_legend(scene_path):
    from rasterio.windows import Window

    info = raster.describe(scene_path)
    image = raster.percentile_stretch(raster.read(scene_path, bands=[3, 2, 1]), nodata=0)
    fig = viz.plot_image(image, info.transform, crs=info.crs)
    ax = fig.axes[0]
    windows = [Window(0, 0, 32, 32), Window(32, 0, 32, 32), Window(0, 32, 32, 32)]
    viz.plot_windows(
        windows,
        info.transform,
        ax=ax,
        values=["train", "test", "train"],
        colors={"train": "tab:blue", "test": "tab:red"},
        legend_title="split",
    )
    rects = [p for c in ax.collections for p in c.get_paths()]
    assert len(rects) == 3
    # the first window's rectangle spans the raster's top-left 32 x 32 pixels in map units
    x0, y0 = info.transform.c, info.transform.f
    xs, ys = rects[0].vertices[:, 0], rects[0].vertices[:, 1]
    assert np.isclose(xs.min(), x0) and np.isclose(ys.max(), y0)
    assert np.isclose(xs.max() - xs.min(), 32 * info.transform.a)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"train", "test"} <= set(labels)
