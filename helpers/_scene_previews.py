"""Preview figures of the sample region (private to :mod:`helpers.sample_data`)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
import shapely  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from PIL import Image  # noqa: E402
from pyproj import Transformer  # noqa: E402
from rasterio.enums import Resampling  # noqa: E402
from rasterio.windows import Window  # noqa: E402


def _read(path, n_out, window=None, resampling=Resampling.average):
    with rasterio.open(path) as ds:
        win = window or Window(0, 0, ds.width, ds.height)
        f = max(1, int(np.ceil(win.width / n_out)))
        shape = (ds.count, int(win.height // f), int(win.width // f))
        arr = ds.read(window=win, out_shape=shape, resampling=resampling)
        tr = ds.window_transform(win) * rasterio.Affine.scale(
            win.width / shape[2], win.height / shape[1]
        )
        return arr, tr, ds.crs


def _stretch(img, lo=None, hi=None):
    valid = img.sum(0) > 0
    if lo is None:
        lo = np.percentile(img[:, valid], 2, axis=1)
        hi = np.percentile(img[:, valid], 98, axis=1)
    out = (img.astype(np.float32) - lo[:, None, None]) / (hi - lo)[:, None, None]
    out = np.clip(out, 0, 1).transpose(1, 2, 0)
    out[~valid] = 1.0
    return out, lo, hi


def _outlines(path, crs):
    feats = json.loads(Path(path).read_text())["features"]
    if not feats:
        return []
    geoms = shapely.from_geojson([json.dumps(f["geometry"]) for f in feats])
    tf = Transformer.from_crs(4326, crs, always_xy=True)
    geoms = shapely.transform(geoms, lambda c: np.column_stack(tf.transform(c[:, 0], c[:, 1])))
    rings = []
    for g in geoms:
        for p in shapely.get_parts(g):
            rings.append(np.asarray(p.exterior.coords))
    return rings


def _plot_rings(ax, rings, tr, **kw):
    inv = ~tr
    for r in rings:
        c, rr = inv * (r[:, 0], r[:, 1])
        ax.plot(c, rr, **kw)


def _save(fig, path: Path, colors: int = 256):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    buf.seek(0)
    im = Image.open(buf).convert("RGB")
    im = im.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    im.save(path, optimize=True)
    return path


def _km_axes(ax, n_px, ps):
    ticks = np.linspace(0, n_px, 5)
    ax.set_xticks(ticks, [f"{t * ps / 1000:.1f}" for t in ticks])
    ax.set_yticks(ticks, [f"{t * ps / 1000:.1f}" for t in ticks])
    ax.set_xlabel("km")
    ax.set_ylabel("km")


def render(region, out_dir: Path, width_px: int = 1400) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    d0, d1 = region.dates
    half = width_px // 2 - 60
    a0, tr, crs = _read(region.scenes[d0], half)
    a1, _, _ = _read(region.scenes[d1], half)
    size = region.manifest["parameters"]["size"]
    ps = region.manifest["parameters"]["pixel_size"]
    n_px = a0.shape[1]
    scale_px = size / n_px
    paths = []
    for name, bands, title in (
        ("sample_true_colour.png", [2, 1, 0], "true colour (R, G, B)"),
        ("sample_false_colour.png", [3, 2, 1], "false colour (NIR, R, G)"),
    ):
        fig, axes = plt.subplots(1, 2, figsize=(width_px / 100, width_px / 200 + 0.6))
        im0, lo, hi = _stretch(a0[bands])
        im1, _, _ = _stretch(a1[bands], lo, hi)
        for ax, im, d in zip(axes, (im0, im1), (d0, d1), strict=True):
            ax.imshow(im, interpolation="lanczos")
            ax.set_title(f"{d}: {title}")
            _km_axes(ax, n_px, ps * scale_px)
        fig.suptitle("Synthetic sample region (2-98 % stretch)")
        fig.tight_layout()
        paths.append(_save(fig, out_dir / name, colors=160))
    # labels
    from helpers.sample_data import CLOUD_CLASSES, LANDCOVER_CLASSES

    lc, _, _ = _read(region.landcover[d1], half, resampling=Resampling.mode)
    cm, _, _ = _read(region.clouds[d1], half, resampling=Resampling.mode)
    colors = ["#ffffff"] + [c for _, c in LANDCOVER_CLASSES.values()]
    fig, axes = plt.subplots(1, 2, figsize=(width_px / 100, width_px / 200 + 1.0))
    axes[0].imshow(lc[0], cmap=ListedColormap(colors), vmin=0, vmax=7, interpolation="nearest")
    _plot_rings(axes[0], _outlines(region.settlements[d1], crs), tr, color="k", lw=0.9)
    axes[0].set_title(f"{d1}: land cover, informal settlements outlined")
    handles = [Patch(color=c, label=n) for n, c in LANDCOVER_CLASSES.values()]
    handles.append(Patch(facecolor="none", edgecolor="k", label="informal settlement"))
    axes[0].legend(handles=handles, loc="lower left", fontsize=7, framealpha=0.9)
    cm_rgb = np.array([[0.85, 0.85, 0.75], [1, 1, 1], [0.3, 0.3, 0.55]])[np.minimum(cm[0], 2)]
    _, lo, hi = _stretch(a0[[2, 1, 0]])  # stretch of the clearer first date
    axes[1].imshow(_stretch(a1[[2, 1, 0]], lo, hi)[0] * 0.5 + cm_rgb * 0.5)
    axes[1].set_title(f"{d1}: cloud mask over the image")
    axes[1].legend(
        handles=[
            Patch(color=(1, 1, 1), label=CLOUD_CLASSES[1][0]),
            Patch(color=(0.3, 0.3, 0.55), label=CLOUD_CLASSES[2][0]),
        ],
        loc="lower left",
        fontsize=7,
    )
    for ax in axes:
        _km_axes(ax, n_px, ps * scale_px)
    fig.tight_layout()
    paths.append(_save(fig, out_dir / "sample_labels.png"))
    # change
    fig, ax = plt.subplots(figsize=(width_px / 200 + 1, width_px / 200 + 1))
    ax.imshow(_stretch(a1[[2, 1, 0]], lo, hi)[0], interpolation="lanczos")
    _plot_rings(ax, _outlines(region.settlements[d1], crs), tr, color="#ff2fd0", lw=1.2)
    _plot_rings(ax, _outlines(region.settlements[d0], crs), tr, color="#00e5ff", lw=1.2)
    ax.legend(
        handles=[
            Patch(facecolor="none", edgecolor="#00e5ff", label=f"settlements {d0}"),
            Patch(facecolor="none", edgecolor="#ff2fd0", label=f"settlements {d1}"),
        ],
        loc="lower left",
        fontsize=8,
    )
    ax.set_title(f"Settlement growth over the {d1} image (clouds included)")
    _km_axes(ax, n_px, ps * scale_px)
    fig.tight_layout()
    paths.append(_save(fig, out_dir / "sample_change.png"))
    # zoom: 300 m around an informal and a formal spot
    _, lo, hi = _stretch(a0[[2, 1, 0]])
    paths.append(_zoom(region, out_dir, lc[0], scale_px, ps, lo, hi))
    return paths


def _zoom(region, out_dir, lc_small, scale_px, ps, lo, hi):
    from helpers.sample_data import LANDCOVER_CLASSES

    d1 = region.dates[1]
    n = int(round(300 / ps))
    k = 7
    spots = []
    for cls in (7, 6):
        m = (lc_small == cls).astype(float)
        from scipy import ndimage

        dens = ndimage.uniform_filter(m, size=max(3, int(n / scale_px)))
        i, j = np.unravel_index(np.argmax(dens), dens.shape)
        spots.append((int(i * scale_px), int(j * scale_px)))
    with rasterio.open(region.scenes[d1]) as ds:
        size = ds.width
    fig, axes = plt.subplots(2, 2, figsize=(12, 12.4))
    colors = ["#ffffff"] + [c for _, c in LANDCOVER_CLASSES.values()]
    # the informal zoom shows the second date, the formal one the (less cloudy) first date
    rows = zip(spots, ("informal settlement", "formal blocks"), (d1, region.dates[0]), strict=True)
    for row, ((i, j), label, date) in enumerate(rows):
        r0 = int(np.clip(i - n // 2, 0, size - n))
        c0 = int(np.clip(j - n // 2, 0, size - n))
        win = Window(c0, r0, n, n)
        img, _, _ = _read(region.scenes[date], n, win)
        lcw, _, _ = _read(region.landcover[date], n, win, Resampling.nearest)
        axes[row, 0].imshow(_stretch(img[[2, 1, 0]], lo, hi)[0], interpolation="nearest")
        axes[row, 0].set_title(f"{label}, {date}: true colour, 300 m x 300 m")
        axes[row, 1].imshow(
            lcw[0], cmap=ListedColormap(colors), vmin=0, vmax=k, interpolation="nearest"
        )
        axes[row, 1].set_title(f"{label}: land cover")
        for ax in axes[row]:
            t = np.linspace(0, n, 4)
            ax.set_xticks(t, [f"{v * ps:.0f}" for v in t])
            ax.set_yticks(t, [f"{v * ps:.0f}" for v in t])
            ax.set_xlabel("m")
    handles = [Patch(color=c, label=nm) for nm, c in LANDCOVER_CLASSES.values()]
    axes[0, 1].legend(handles=handles, loc="lower left", fontsize=7, framealpha=0.9)
    fig.tight_layout()
    return _save(fig, out_dir / "sample_zoom.png")
