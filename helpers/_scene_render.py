"""Strip renderer of the synthetic sample region (private to :mod:`helpers.sample_data`).

A strip is a band of full-width rows plus a halo for the PSF blur. Everything drawn in it is a
function of world coordinates (texture noise) or of the vector layout (rasterized per strip), so
strips join seamlessly and memory stays bounded by the strip size.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import shapely
from affine import Affine
from rasterio.features import rasterize
from scipy import ndimage

from helpers import _scene_layout as lay

# --------------------------------------------------------------------------- noise
# Value noise on a hashed integer lattice: it can be evaluated on any window of the plane (so
# strips join without seams), is deterministic for a seed and needs no dependency beyond numpy.


def _hash(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Lattice values in [-1, 1] from integer coordinates (a 32-bit integer hash)."""
    with np.errstate(over="ignore"):
        h = (np.asarray(ix).astype(np.int64).astype(np.uint32) * np.uint32(0x8DA6B343)) ^ (
            np.asarray(iy).astype(np.int64).astype(np.uint32) * np.uint32(0xD8163841)
        )
        h ^= np.uint32((seed * 0x9E3779B1) & 0xFFFFFFFF)
        h ^= h >> np.uint32(15)
        h *= np.uint32(0x2C1B3C6D)
        h ^= h >> np.uint32(12)
        h *= np.uint32(0x297A2D39)
        h ^= h >> np.uint32(15)
    return (h.astype(np.float32) * np.float32(2.0 / 4294967295.0)) - np.float32(1.0)


def _smooth(t):
    return t * t * (3 - 2 * t)


def _octave_offset(seed: int, k: int) -> tuple[float, float]:
    r = np.random.default_rng([seed, k, 7])
    return float(r.uniform(0, 1000)), float(r.uniform(0, 1000))


def fbm(x, y, scale: float, seed: int, octaves: int = 4) -> np.ndarray:
    """Fractal value noise at scattered points (``x``, ``y`` in metres), roughly in [-1, 1]."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    out = np.zeros(np.broadcast(x, y).shape, np.float32)
    amp, tot = 1.0, 0.0
    for k in range(octaves):
        ox, oy = _octave_offset(seed, k)
        gx, gy = x / scale + ox, y / scale + oy
        ix, iy = np.floor(gx), np.floor(gy)
        fx, fy = _smooth(gx - ix).astype(np.float32), _smooth(gy - iy).astype(np.float32)
        v00, v10 = _hash(ix, iy, seed + k), _hash(ix + 1, iy, seed + k)
        v01, v11 = _hash(ix, iy + 1, seed + k), _hash(ix + 1, iy + 1, seed + k)
        out += amp * ((v00 * (1 - fx) + v10 * fx) * (1 - fy) + (v01 * (1 - fx) + v11 * fx) * fy)
        tot += amp
        amp *= 0.5
        scale /= 2.03
    return out / np.float32(tot * 0.55)


def fbm_grid(xs: np.ndarray, ys: np.ndarray, scale: float, seed: int, octaves: int = 4):
    """Fractal value noise on the grid ``ys[:, None], xs[None, :]`` (separable interpolation)."""
    out = np.zeros((len(ys), len(xs)), np.float32)
    amp, tot = 1.0, 0.0
    for k in range(octaves):
        ox, oy = _octave_offset(seed, k)
        gx, gy = xs / scale + ox, ys / scale + oy
        ix, iy = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
        fx = _smooth(gx - ix).astype(np.float32)
        fy = _smooth(gy - iy).astype(np.float32)[:, None]
        lx = np.arange(ix.min(), ix.max() + 2)
        ly = np.arange(iy.min(), iy.max() + 2)
        lat = _hash(lx[None, :], ly[:, None], seed + k)
        jx = ix - lx[0]
        a = lat[:, jx] * (1 - fx) + lat[:, jx + 1] * fx
        jy = iy - ly[0]
        out += amp * (a[jy] * (1 - fy) + a[jy + 1] * fy)
        tot += amp
        amp *= 0.5
        scale /= 2.03
    return out / np.float32(tot * 0.55)


# --------------------------------------------------------------------------- spectra
# Surface reflectance (Blue, Green, Red, NIR), typical of VHR sensors over the tropics.
S = {
    "laterite": (0.075, 0.112, 0.185, 0.250),
    "light_earth": (0.118, 0.158, 0.212, 0.268),
    "dark_soil": (0.055, 0.073, 0.095, 0.145),
    "trampled": (0.092, 0.120, 0.160, 0.200),
    "paving": (0.150, 0.168, 0.188, 0.215),
    "grass": (0.035, 0.072, 0.048, 0.370),
    "dry_grass": (0.068, 0.098, 0.122, 0.275),
    "crop": (0.030, 0.078, 0.038, 0.460),
    "crop_mature": (0.062, 0.100, 0.105, 0.330),
    "tree": (0.032, 0.064, 0.042, 0.340),
    "river": (0.072, 0.092, 0.088, 0.048),
    "clear_water": (0.048, 0.058, 0.038, 0.020),
    "pond": (0.045, 0.075, 0.052, 0.040),
    "asphalt": (0.070, 0.080, 0.090, 0.110),
    "asphalt_old": (0.105, 0.115, 0.125, 0.145),
    "dirt_road": (0.112, 0.145, 0.192, 0.232),
    "cloud": (0.52, 0.53, 0.54, 0.56),
    "haze": (0.10, 0.085, 0.070, 0.050),
}
ROOF = np.array(
    [
        (0.165, 0.180, 0.195, 0.220),  # concrete
        (0.072, 0.082, 0.150, 0.215),  # red tile
        (0.215, 0.228, 0.238, 0.255),  # galvanised metal, new
        (0.075, 0.084, 0.094, 0.112),  # dark painted metal
        (0.078, 0.102, 0.160, 0.210),  # rusty corrugated metal
        (0.118, 0.128, 0.138, 0.152),  # old grey metal
        (0.150, 0.125, 0.092, 0.135),  # blue tarp
        (0.260, 0.268, 0.276, 0.285),  # white plastic sheet
        (0.060, 0.105, 0.080, 0.130),  # green painted
    ],
    np.float32,
)


def _spec(name):
    return np.array(S[name], np.float32)[:, None, None]


# Per ground kind: soil A, soil B, veg base, veg amplitude, dryness, land-cover override.
_SOILS = ["laterite", "light_earth", "dark_soil", "trampled", "paving"]
_SOIL_ARR = np.array([S[n] for n in _SOILS], np.float32)
_KIND = {
    lay.K_BUSH: (0, 1, 0.42, 0.85, 0.55),
    lay.K_BARE: (0, 1, 0.05, 0.35, 0.80),
    lay.K_WOOD: (2, 0, 0.70, 0.40, 0.30),
    lay.K_FIELD: (2, 0, 0.50, 0.20, 0.30),
    lay.K_GARDEN: (1, 3, 0.62, 0.55, 0.30),
    lay.K_COMPACT: (3, 4, 0.12, 0.35, 0.60),
    lay.K_LOT: (4, 1, 0.00, 0.10, 0.70),
    lay.K_PARK: (1, 0, 0.62, 0.50, 0.45),
    lay.K_YARD_INF: (3, 0, 0.02, 0.22, 0.70),
}
_KT = np.zeros((16, 5), np.float32)
for _k, _v in _KIND.items():
    _KT[_k] = _v
# field stages: veg base, veg amp, row amplitude, dryness, soil index
_STAGE = np.array(
    [
        (0.00, 0.04, 0.00, 0.5, 2),  # ploughed
        (0.25, 0.12, 0.30, 0.1, 0),  # emerging
        (0.86, 0.10, 0.10, 0.0, 2),  # green
        (0.80, 0.12, 0.08, 0.8, 0),  # mature / yellowing
        (0.50, 0.60, 0.00, 0.5, 0),  # fallow
    ],
    np.float32,
)

# Illumination and atmosphere per date: band gains, additive path radiance.
_GAIN = (np.array([1.0, 1.0, 1.0, 1.0], np.float32), np.array([1.05, 1.03, 1.0, 0.97], np.float32))
_PATH = (
    np.array([0.006, 0.004, 0.002, 0.0], np.float32),
    np.array([0.012, 0.008, 0.004, 0.0], np.float32),
)
_SHADOW = np.array([0.46, 0.39, 0.34, 0.31], np.float32)[:, None, None]
_NOISE_SD = np.array([0.0030, 0.0030, 0.0035, 0.0045], np.float32)[:, None, None]
PSF_SIGMA = 0.6
WARP_SCALE, WARP_AMP, WARP_MAX = 70.0, 22.0, 36.0  # domain warp of district edges (metres)


def warp_points(x, y, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The district domain warp (metres) at scattered points, as used by the renderer."""
    dx = np.clip(fbm(x, y, WARP_SCALE, seed + 40, 3) * WARP_AMP, -WARP_MAX, WARP_MAX)
    dy = np.clip(fbm(x, y, WARP_SCALE, seed + 41, 3) * WARP_AMP, -WARP_MAX, WARP_MAX)
    return dx, dy


HALO = 8
COARSE = 4  # cloud field is evaluated every COARSE pixels and interpolated


def _geojson_shapes(geoms, values):
    """(GeoJSON dict, value) pairs built straight from coordinate arrays.

    rasterio converts shapely objects one by one through ``__geo_interface__``, which dominates
    the run time with ~10^5 small roofs per strip; simple polygons are converted in bulk here.
    """
    geoms = np.asarray(geoms, dtype=object)
    values = np.broadcast_to(np.asarray(values), geoms.shape)
    simple = (shapely.get_type_id(geoms) == 3) & (shapely.get_num_interior_rings(geoms) == 0)
    coords = shapely.get_coordinates(geoms[simple]).tolist()
    counts = shapely.get_num_coordinates(geoms[simple])
    ends = np.cumsum(counts)
    k = 0
    out = []
    for g, v, s in zip(geoms, values.tolist(), simple.tolist(), strict=True):
        if s:
            out.append(
                ({"type": "Polygon", "coordinates": [coords[ends[k] - counts[k] : ends[k]]]}, v)
            )
            k += 1
        elif not shapely.is_empty(g):
            out.append((g, v))
    return out


class _Strip(NamedTuple):
    """What the two dates of one strip share: its rows, grid, coordinates and texture fields."""

    strip_index: int
    row0: int
    row1: int
    ra: int  # first row rendered, halo included
    H: int
    W: int
    tr: Affine
    xs: np.ndarray
    ys: np.ndarray
    X: np.ndarray
    Y: np.ndarray
    n_lo: np.ndarray
    n_mid: np.ndarray
    n_hi: np.ndarray
    n_soil: np.ndarray
    gsel: np.ndarray
    trange: tuple[int, int]
    brange: tuple[int, int]


class StripRenderer:
    """Render strips of one layout; holds per-layout lookup tables, no raster-sized state."""

    def __init__(self, layout: lay.Layout, size: int, pixel_size: float, seed: int):
        self.L = layout
        self.size, self.ps, self.seed = size, pixel_size, seed
        self.g_bounds = shapely.bounds(layout.g_geom)
        # sort trees and buildings by y so a strip selects them with searchsorted
        o = np.argsort(layout.t_xy[:, 1], kind="stable")
        self.t_xy, self.t_r, self.t_h = layout.t_xy[o], layout.t_r[o], layout.t_h[o]
        self.t_var, self.t_ex = layout.t_var[o], layout.t_exists[:, o]
        o = np.argsort(layout.b_xy[:, 1], kind="stable")
        self.bo = o
        self.b_xy = layout.b_xy[o]
        self.b_geom = layout.b_geom[o]
        self.b_ang, self.b_len, self.b_wid = layout.b_angle[o], layout.b_len[o], layout.b_wid[o]
        self.b_h, self.b_roof, self.b_gable = layout.b_h[o], layout.b_roof[o], layout.b_gable[o]
        self.b_var, self.b_inf, self.b_ex = (
            layout.b_var[o],
            layout.b_informal[o],
            layout.b_exists[:, o],
        )
        self.b_reach = float(np.max(layout.b_len, initial=0) + np.max(layout.b_h, initial=0) * 2.5)
        self.t_reach = float(
            np.max(layout.t_r, initial=0) * 1.2 + np.max(layout.t_h, initial=0) * 1.5
        )
        self.pad = max(self.b_reach, self.t_reach) + 5
        self.warp_margin = int(np.ceil(WARP_MAX / pixel_size)) + 1

    # ------------------------------------------------------------------ helpers
    def _burn(self, geoms, values, shape, transform, dtype="int32"):
        """Rasterize ``geoms`` burning ``values`` (later geometries win)."""
        if len(geoms) == 0:
            return np.zeros(shape, dtype)
        return rasterize(
            _geojson_shapes(geoms, values),
            out_shape=shape,
            transform=transform,
            fill=0,
            dtype=dtype,
        )

    def render(self, row0: int, row1: int, strip_index: int):
        """Render rows [row0, row1); returns {date_index: (bands uint16, landcover, clouds)}."""
        size, ps, L = self.size, self.ps, self.L.extent
        ra, rb = max(0, row0 - HALO), min(size, row1 + HALO)
        H, W = rb - ra, size
        tr = Affine(ps, 0, 0, 0, -ps, L - ra * ps)
        xs = (np.arange(W) + 0.5) * ps
        ys = L - (np.arange(ra, rb) + 0.5) * ps
        ylo, yhi = ys[-1] - ps, ys[0] + ps
        sd = self.seed
        # shared texture fields (world-anchored)
        n_lo = fbm_grid(xs, ys, 55.0, sd + 1, 3)
        n_mid = fbm_grid(xs, ys, 11.0, sd + 2, 3)
        n_hi = fbm_grid(xs, ys, 2.6, sd + 3, 2)
        n_soil = fbm_grid(xs, ys, 140.0, sd + 4, 4)
        self.warp_grid = (
            np.clip(fbm_grid(xs, ys, WARP_SCALE, sd + 40, 3) * WARP_AMP, -WARP_MAX, WARP_MAX),
            np.clip(fbm_grid(xs, ys, WARP_SCALE, sd + 41, 3) * WARP_AMP, -WARP_MAX, WARP_MAX),
        )
        X = np.broadcast_to(xs[None, :].astype(np.float32), (H, W))
        Y = np.broadcast_to(ys[:, None].astype(np.float32), (H, W))
        gb = self.g_bounds
        gsel = np.nonzero((gb[:, 1] <= yhi) & (gb[:, 3] >= ylo))[0]
        t0, t1 = np.searchsorted(self.t_xy[:, 1], [ylo - self.pad, yhi + self.pad])
        b0, b1 = np.searchsorted(self.b_xy[:, 1], [ylo - self.pad, yhi + self.pad])
        strip = _Strip(
            strip_index, row0, row1, ra, H, W, tr, xs, ys, X, Y,
            n_lo, n_mid, n_hi, n_soil, gsel, (t0, t1), (b0, b1),
        )  # fmt: skip
        out = {d: self._render_date(d, strip) for d in (0, 1)}
        return out

    def _render_date(self, d: int, strip: _Strip):
        (strip_index, row0, row1, ra, H, W, tr, xs, ys, X, Y,
         n_lo, n_mid, n_hi, n_soil, gsel, trange, brange) = strip  # fmt: skip
        lyt, sd = self.L, self.seed
        shape = (H, W)
        # ---------------------------------------------------------------- ground
        kind_d = lyt.g_kind[d]
        ids = [i for i in gsel if kind_d[i] > 0]
        ids = np.asarray(ids, dtype=np.int64)
        # districts are drawn through a smooth domain warp so that their straight Voronoi edges
        # become irregular transitions; everything else is burnt exactly on top
        nd = lyt.n_districts
        dsel, osel = ids[ids < nd], ids[ids >= nd]
        m = self.warp_margin
        tr_big = Affine(self.ps, 0, -m * self.ps, 0, -self.ps, lyt.extent - (ra - m) * self.ps)
        did = self._burn(lyt.g_geom[dsel], dsel + 1, (H + 2 * m, W + 2 * m), tr_big)
        wx, wy = self.warp_grid
        ri = np.clip(np.rint(np.arange(H)[:, None] + m - wy / self.ps), 0, H + 2 * m - 1)
        ci = np.clip(np.rint(np.arange(W)[None, :] + m + wx / self.ps), 0, W + 2 * m - 1)
        did = did[ri.astype(np.int64), ci.astype(np.int64)]
        gid = self._burn(lyt.g_geom[osel], osel + 1, shape, tr)
        gid = np.where(gid > 0, gid, did)
        gi = np.maximum(gid - 1, 0)
        kind = np.where(gid > 0, kind_d[gi], lay.K_BUSH).astype(np.int16)
        var = lyt.g_var[gi]
        n_veg = fbm_grid(xs, ys, 13.0, sd + 10 + d, 3)  # vegetation patches change a little
        kt = _KT[kind]
        fbase, famp, dry = kt[..., 2], kt[..., 3], kt[..., 4]
        sa_i, sb_i = kt[..., 0].astype(np.int16), kt[..., 1].astype(np.int16)
        is_field = kind == lay.K_FIELD
        rows = np.zeros(shape, np.float32)
        if is_field.any():
            stage = lyt.g_stage[d][gi]
            st = _STAGE[stage]
            fbase = np.where(is_field, st[..., 0], fbase)
            famp = np.where(is_field, st[..., 1], famp)
            dry = np.where(is_field, st[..., 3], dry)
            sa_i = np.where(is_field, st[..., 4].astype(np.int16), sa_i)
            ang = lyt.g_angle[gi]
            spacing = 2.6 + 1.6 * var
            phase = (X * np.cos(ang) + Y * np.sin(ang)) / spacing
            rows = np.where(is_field, st[..., 2] * np.sin(2 * np.pi * phase), 0).astype(np.float32)
        n_v = 0.6 * n_veg + 0.4 * n_lo
        f_smooth = np.clip(fbase + famp * n_v + 0.15 * (var - 0.5) * is_field, 0, 1)
        f = np.clip(f_smooth + rows + 0.08 * n_hi, 0, 1)
        tsoil = np.clip(0.5 + 0.9 * n_soil + 0.2 * n_mid, 0, 1)
        soil = (
            _SOIL_ARR[sa_i].transpose(2, 0, 1) * (1 - tsoil)
            + _SOIL_ARR[sb_i].transpose(2, 0, 1) * tsoil
        )
        soil *= 1 + 0.07 * n_lo + 0.05 * n_mid + 0.04 * n_hi + 0.10 * (var - 0.5)
        # ploughed fields: darker furrows
        soil *= 1 + 0.08 * np.where(is_field, np.sin(2 * np.pi * (X + Y) / 3.1) * (f < 0.1), 0)
        tdry = np.clip(dry + 0.25 * n_mid + 0.05 * d, 0, 1)
        crop = np.where(is_field, 1.0, 0.0).astype(np.float32)
        veg_g = _spec("grass") * (1 - crop) + _spec("crop") * crop
        veg_d = _spec("dry_grass") * (1 - crop) + _spec("crop_mature") * crop
        veg = veg_g * (1 - tdry) + veg_d * tdry
        veg *= 1 + 0.10 * n_hi + 0.06 * n_mid
        refl = soil * (1 - f) + veg * f
        lc = np.where(f_smooth >= 0.5, 3, 4).astype(np.uint8)
        if is_field.any():
            lc = np.where(is_field, np.where(stage == lay.ST_PLOUGHED, 4, 3), lc).astype(np.uint8)
        # water
        for k, a, b in ((lay.K_RIVER, "clear_water", "river"), (lay.K_POND, "pond", "clear_water")):
            m = kind == k
            if m.any():
                t = np.clip(0.55 + 0.6 * n_lo + 0.1 * n_mid, 0, 1)
                w = _spec(a) * (1 - t) + _spec(b) * t
                w = w * (1 + 0.03 * n_hi)
                refl = np.where(m, w, refl)
                lc[m] = 1
        m = kind == lay.K_PAVED
        if m.any():
            t = np.clip(0.4 + 0.8 * n_lo, 0, 1)
            a = (_spec("asphalt") * (1 - t) + _spec("asphalt_old") * t) * (1 + 0.04 * n_hi)
            refl = np.where(m, a, refl)
            lc[m] = 5
        m = kind == lay.K_DIRT
        if m.any():
            a = _spec("dirt_road") * (1 + 0.08 * n_mid + 0.05 * n_hi + 0.05 * n_soil)
            refl = np.where(m, a, refl)
            lc[m] = 5
        lc[kind == lay.K_LOT] = 5
        # ---------------------------------------------------------------- shadows (ground)
        sv = lay.shadow_vector(d)
        t0, t1 = trange
        tex = self.t_ex[d, t0:t1]
        txy, tr_, th = self.t_xy[t0:t1][tex], self.t_r[t0:t1][tex], self.t_h[t0:t1][tex]
        tvar = self.t_var[t0:t1][tex]
        b0, b1 = brange
        bex = self.b_ex[d, b0:b1]
        bidx = np.arange(b0, b1)[bex]
        shadows = []
        if len(bidx):
            shadows.append(self._building_shadows(bidx, sv))
        if len(txy):
            sh_t = shapely.buffer(
                shapely.points(txy[:, 0] + sv[0] * th, txy[:, 1] + sv[1] * th),
                tr_ * 0.95,
                quad_segs=4,
            )
            shadows.append(sh_t)
        shadow = np.zeros(shape, np.uint8)
        if shadows:
            geoms = np.concatenate(shadows)
            shadow = self._burn(geoms, 1, shape, tr, "uint8")
        # ---------------------------------------------------------------- trees
        if len(txy):
            crowns = shapely.buffer(shapely.points(txy[:, 0], txy[:, 1]), tr_, quad_segs=5)
            cid = self._burn(crowns, np.arange(1, len(crowns) + 1), shape, tr)
            m = cid > 0
            if m.any():
                ci = cid[m] - 1
                dx = (X[m] - txy[ci, 0]) / tr_[ci]
                dy = (Y[m] - txy[ci, 1]) / tr_[ci]
                az = np.radians(lay.SUN[d]["azimuth"])
                lit = dx * np.sin(az) + dy * np.cos(az)
                shade = 0.80 + 0.28 * lit - 0.22 * (dx * dx + dy * dy) + 0.14 * n_hi[m]
                tv = tvar[ci]
                tree = np.array(S["tree"], np.float32)[:, None] * shade[None, :]
                tree[1] *= 0.9 + 0.25 * tv
                tree[3] *= 0.82 + 0.35 * tv
                # tree crowns are shaded by buildings but not by other trees' shadow discs
                refl[:, m] = tree
                lc[m] = 2
                shadow[m] = 0
        # ---------------------------------------------------------------- buildings
        roofmask = np.zeros(shape, bool)
        if len(bidx):
            bid = self._burn(self.b_geom[bidx], bidx + 1, shape, tr)
            m = bid > 0
            if m.any():
                bi = bid[m] - 1
                roof = self.b_roof[bi]
                spec = ROOF[roof].T.copy()  # (4, n)
                v = self.b_var[bi]
                bright = 0.86 + 0.28 * v
                inf = self.b_inf[bi]
                # patchwork of sheets on informal roofs (rusty / grey mix)
                patch = np.clip(0.5 + 1.2 * n_hi[m], 0, 1) * inf * 0.45
                spec = spec * (1 - patch) + ROOF[lay.R_OLDGREY][:, None] * patch
                ang = self.b_ang[bi]
                nx, ny = -np.sin(ang), np.cos(ang)
                side = np.sign((X[m] - self.b_xy[bi, 0]) * nx + (Y[m] - self.b_xy[bi, 1]) * ny)
                az = np.radians(lay.SUN[d]["azimuth"])
                facing = nx * np.sin(az) + ny * np.cos(az)
                gable = 1 + 0.16 * side * facing * self.b_gable[bi]
                tex = 1 + 0.05 * n_hi[m] + 0.03 * n_mid[m]
                refl[:, m] = spec * (bright * gable * tex)[None, :]
                lc[m] = np.where(inf, 7, 6)
                roofmask = m
        shade = shadow.astype(bool) & ~roofmask
        refl = np.where(shade[None], refl * _SHADOW, refl)
        # ---------------------------------------------------------------- atmosphere, clouds
        refl = refl * _GAIN[d][:, None, None] + _PATH[d][:, None, None]
        if d == 1:
            haze = np.clip(fbm_grid(xs, ys, 600.0, sd + 21, 3), 0, 1) * 0.35
            refl = refl * (1 - haze) + _spec("haze") * haze
        cov, csh = self._cloud_fields(d, ra, H, W)
        cloud_tex = 1 + 0.08 * n_mid + 0.06 * n_lo
        refl = refl * (1 - 0.55 * csh)[None]
        refl = refl * (1 - cov) + (_spec("cloud") * cloud_tex) * cov
        cmask = np.where(cov > 0.3, 1, np.where(csh > 0.3, 2, 0)).astype(np.uint8)
        # ---------------------------------------------------------------- sensor
        for b in range(4):
            refl[b] = ndimage.gaussian_filter(refl[b], PSF_SIGMA, mode="nearest", truncate=4.0)
        c0, c1 = row0 - ra, row1 - ra
        refl = refl[:, c0:c1]
        lc, cmask = lc[c0:c1], cmask[c0:c1]
        rng = np.random.default_rng([sd, 77, d, strip_index])
        refl += rng.standard_normal(refl.shape, dtype=np.float32) * _NOISE_SD
        dn = np.clip(np.rint(refl * 10000), 1, 10000).astype(np.uint16)
        if d == 0 and lyt.nodata_line is not None:
            # beyond the swath edge of the first acquisition: a straight diagonal edge
            a, b, c = lyt.nodata_line
            nd = (a * X[c0:c1] + b * Y[c0:c1]) > c
            dn[:, nd] = 0
            lc[nd] = 0
            cmask[nd] = 255
        return dn, lc, cmask

    def _building_shadows(self, bidx, sv):
        x, y = self.b_xy[bidx, 0], self.b_xy[bidx, 1]
        ang, hl, hw = self.b_ang[bidx], self.b_len[bidx] / 2, self.b_wid[bidx] / 2
        c, s = np.cos(ang), np.sin(ang)
        dx = np.stack([hl, -hl, -hl, hl], -1)
        dy = np.stack([hw, hw, -hw, -hw], -1)
        px = x[:, None] + dx * c[:, None] - dy * s[:, None]
        py = y[:, None] + dx * s[:, None] + dy * c[:, None]
        h = self.b_h[bidx][:, None]
        qx, qy = px + sv[0] * h, py + sv[1] * h
        pts = np.stack([np.concatenate([px, qx], 1), np.concatenate([py, qy], 1)], -1)
        return shapely.convex_hull(shapely.multipoints(pts))

    def _cloud_fields(self, d, ra, H, W):
        """Cloud opacity and cloud-shadow strength on the strip (evaluated coarse, interpolated)."""
        puffs = self.L.clouds[d]
        ps, L = self.ps, self.L.extent
        if len(puffs) == 0:
            z = np.zeros((H, W), np.float32)
            return z, z
        c = COARSE
        cr0 = (ra // c) - 1
        cr1 = (ra + H) // c + 2
        cc1 = W // c + 2
        crow = np.arange(cr0, cr1) * c
        ccol = np.arange(-1, cc1) * c
        cy = L - (crow + 0.5) * ps
        cx = (ccol + 0.5) * ps
        off = lay.shadow_vector(d) * self.L.cloud_height[d]

        def opacity(xs_, ys_):
            dens = np.zeros((len(ys_), len(xs_)), np.float32)
            reach = puffs[:, 2] * 3
            sel = (puffs[:, 1] + reach >= ys_.min()) & (puffs[:, 1] - reach <= ys_.max())
            sel &= (puffs[:, 0] + reach >= xs_.min()) & (puffs[:, 0] - reach <= xs_.max())
            step = abs(xs_[1] - xs_[0])
            for px, py, pr in puffs[sel]:
                j0 = max(0, int((px - 3 * pr - xs_[0]) / step))
                j1 = min(len(xs_), int((px + 3 * pr - xs_[0]) / step) + 2)
                i0 = max(0, int((ys_[0] - (py + 3 * pr)) / step))
                i1 = min(len(ys_), int((ys_[0] - (py - 3 * pr)) / step) + 2)
                if j1 <= j0 or i1 <= i0:
                    continue
                gx = (xs_[j0:j1] - px) / pr
                gy = (ys_[i0:i1] - py) / pr
                dens[i0:i1, j0:j1] += np.exp(-0.5 * (gy[:, None] ** 2 + gx[None, :] ** 2))
            nz = fbm_grid(xs_, ys_, 35.0, self.seed + 30 + d, 4)
            v = dens * (0.8 + 0.45 * nz) + 0.12 * nz
            return np.clip((v - 0.35) / 0.75, 0, 1) ** 1.2

        cov_c = opacity(cx, cy)
        sh_c = opacity(cx - off[0], cy - off[1])
        rr = (np.arange(ra, ra + H) - crow[0]) / c
        cc = (np.arange(W) - ccol[0]) / c
        R, C = np.meshgrid(rr, cc, indexing="ij")
        cov = ndimage.map_coordinates(cov_c, [R, C], order=1, mode="nearest")
        sh = ndimage.map_coordinates(sh_c, [R, C], order=1, mode="nearest")
        return cov.astype(np.float32), sh.astype(np.float32)
