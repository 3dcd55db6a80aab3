"""Vector layout of the synthetic sample region (private to :mod:`helpers.sample_data`).

Everything here is in a local metric frame: x east, y north, origin at the bottom-left corner of
the scene; the GeoTIFF transform is ``Affine(pixel_size, 0, 0, 0, -pixel_size, extent)`` plus the
UTM offset of that corner. The layout is built once (macro land use, then objects) and the
renderer draws it strip by strip, so the raster size never has to fit in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely

# Ground kinds: each ground feature has one kind per date; the renderer turns it into a spectrum.
K_BUSH, K_BARE, K_WOOD, K_FIELD, K_GARDEN, K_COMPACT, K_LOT, K_PARK = 1, 2, 3, 4, 5, 6, 7, 8
K_YARD_INF, K_RIVER, K_POND, K_PAVED, K_DIRT = 9, 10, 11, 12, 13

# Crop stages of a field on one date.
ST_PLOUGHED, ST_EMERGING, ST_GREEN, ST_MATURE, ST_FALLOW = 0, 1, 2, 3, 4

# Roof materials (index into the renderer's ROOF_SPECTRA).
R_CONCRETE, R_TILE, R_GALV, R_DARK, R_RUST, R_OLDGREY, R_TARP, R_WHITE, R_GREEN = range(9)

# Sun geometry per date (degrees): late-morning overpass, sun to the north-east in June at ~7 S.
SUN = ({"azimuth": 38.0, "elevation": 58.0}, {"azimuth": 44.0, "elevation": 54.0})


def shadow_vector(date_index: int) -> np.ndarray:
    """Ground displacement (x east, y north) of a shadow per metre of height."""
    az = np.radians(SUN[date_index]["azimuth"])
    el = np.radians(SUN[date_index]["elevation"])
    return -np.array([np.sin(az), np.cos(az)]) / np.tan(el)


@dataclass
class Layout:
    """All vector objects of a scene, with per-object attributes as parallel numpy arrays."""

    extent: float
    # ground features, burnt in order (later ones win)
    g_geom: np.ndarray
    g_kind: np.ndarray  # (2, n) uint8, kind per date; 0 = absent on that date
    g_stage: np.ndarray  # (2, n) uint8 crop stage (fields only)
    g_var: np.ndarray  # (n,) float32 in [0, 1) per-feature variation
    g_angle: np.ndarray  # (n,) float32 row orientation (fields)
    # tree crowns
    t_xy: np.ndarray  # (n, 2)
    t_r: np.ndarray
    t_h: np.ndarray
    t_var: np.ndarray
    t_exists: np.ndarray  # (2, n) bool
    # buildings
    b_geom: np.ndarray
    b_xy: np.ndarray
    b_angle: np.ndarray
    b_len: np.ndarray  # along the long axis
    b_wid: np.ndarray
    b_h: np.ndarray
    b_roof: np.ndarray
    b_gable: np.ndarray
    b_var: np.ndarray
    b_informal: np.ndarray
    b_exists: np.ndarray  # (2, n) bool
    # informal settlement outlines per date
    settlements: tuple[np.ndarray, np.ndarray]
    # clouds per date: puffs (x, y, radius) and cloud-base height
    clouds: tuple[np.ndarray, np.ndarray]
    cloud_height: tuple[float, float]
    n_districts: int = 0  # the first ground features are districts (drawn domain-warped)
    nodata_line: tuple[float, float, float] | None = None  # a*x + b*y > c is nodata on date 0
    info: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- small geometry tools


def _rects(cx, cy, length, width, angle) -> np.ndarray:
    """Rotated rectangles (vectorized) as shapely polygons; ``angle`` is the long axis (radians)."""
    c, s = np.cos(angle), np.sin(angle)
    hl, hw = length / 2, width / 2
    dx = np.stack([hl, -hl, -hl, hl, hl], axis=-1)
    dy = np.stack([hw, hw, -hw, -hw, hw], axis=-1)
    x = cx[:, None] + dx * c[:, None] - dy * s[:, None]
    y = cy[:, None] + dx * s[:, None] + dy * c[:, None]
    return shapely.polygons(np.stack([x, y], axis=-1))


def _wavy_line(rng, p0, p1, amp, n=40, waves=2.0) -> shapely.LineString:
    """A gently meandering line from p0 to p1 (sum of two random sines across the chord)."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    t = np.linspace(0, 1, n)
    d = p1 - p0
    nrm = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9)
    ph = rng.uniform(0, 2 * np.pi, 2)
    off = amp * (
        np.sin(np.pi * t) * 0.6 * np.sin(2 * np.pi * waves * t + ph[0])
        + 0.4 * np.sin(2 * np.pi * (waves * 2.3) * t + ph[1]) * np.sin(np.pi * t)
    )
    pts = p0[None] + t[:, None] * d[None] + off[:, None] * nrm[None]
    return shapely.LineString(pts)


def _blob(rng, cx, cy, radius, n_circles=8, spread=0.8) -> tuple[shapely.Geometry, np.ndarray]:
    """An organic blob: union of circles around a centre; returns it and the circle table."""
    ang = rng.uniform(0, 2 * np.pi, n_circles)
    dist = radius * spread * np.sqrt(rng.uniform(0, 1, n_circles))
    dist[0] = 0
    r = radius * rng.uniform(0.35, 0.6, n_circles)
    xs, ys = cx + dist * np.cos(ang), cy + dist * np.sin(ang)
    circles = np.stack([xs, ys, r], axis=1)
    geom = shapely.union_all(shapely.buffer(shapely.points(xs, ys), r, quad_segs=12))
    return geom, circles


def _jittered_points(rng, bounds, spacing, jitter=0.45):
    """Jittered grid of points covering ``bounds`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = bounds
    xs = np.arange(x0 + spacing / 2, x1, spacing)
    ys = np.arange(y0 + spacing / 2, y1, spacing)
    gx, gy = np.meshgrid(xs, ys)
    gx = gx.ravel() + rng.uniform(-jitter, jitter, gx.size) * spacing
    gy = gy.ravel() + rng.uniform(-jitter, jitter, gy.size) * spacing
    return gx, gy


def _points_in(geom, x, y) -> np.ndarray:
    if geom is None or shapely.is_empty(geom):
        return np.zeros(len(x), bool)
    shapely.prepare(geom)
    return shapely.contains_xy(geom, x, y)


# --------------------------------------------------------------------------- the layout


class _Builder:
    def __init__(self, size: int, pixel_size: float, seed: int):
        self.L = size * pixel_size
        self.seed = seed
        self.s = min(1.0, self.L / 2048.0)  # shrink macro features in small test scenes
        self.box = shapely.box(0, 0, self.L, self.L)
        self.ground: list[tuple] = []  # (geom, kind0, kind1, stage0, stage1, var, angle)
        self.trees: list[np.ndarray] = []  # rows x, y, r, h, var, e0, e1
        self.bld: list[dict] = []

    def rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *key])

    def add_ground(self, geoms, kind0, kind1=None, stage0=0, stage1=0, var=None, angle=0.0):
        geoms = np.atleast_1d(np.asarray(geoms, dtype=object))
        n = len(geoms)
        if n == 0:
            return
        kind1 = kind0 if kind1 is None else kind1

        def arr(v, dt):
            return np.broadcast_to(np.asarray(v, dtype=dt), (n,)).copy()

        var = self.rng(99, len(self.ground)).uniform(0, 1, n) if var is None else var
        self.ground.append(
            (
                geoms,
                arr(kind0, np.uint8),
                arr(kind1, np.uint8),
                arr(stage0, np.uint8),
                arr(stage1, np.uint8),
                arr(var, np.float32),
                arr(angle, np.float32),
            )
        )

    def add_trees(self, x, y, r, h, var, e0=True, e1=True):
        n = len(x)
        if n == 0:
            return
        e0 = np.broadcast_to(np.asarray(e0, float), (n,))
        e1 = np.broadcast_to(np.asarray(e1, float), (n,))
        self.trees.append(np.stack([x, y, r, h, var, e0, e1], axis=1))

    # ------------------------------------------------------------------ macro land use
    def macro(self):
        L, s = self.L, self.s
        rng = self.rng(1)
        # Town centres: the main one just north of the scene, more in large scenes.
        centres = [(L * rng.uniform(0.55, 0.7), L * rng.uniform(0.9, 1.02), 700 * s)]
        n_extra = int(L * L / 9e6)
        for _ in range(n_extra):
            centres.append((rng.uniform(0, L), rng.uniform(0, L), rng.uniform(350, 650)))
        self.centres = centres
        formal = shapely.union_all(
            [
                _blob(rng, cx, cy, r, n_circles=7, spread=0.55)[0].simplify(8)
                for cx, cy, r in centres
            ]
        )
        # River: enters at the top, leaves at the bottom, meandering.
        x_in, x_out = L * rng.uniform(0.2, 0.35), L * rng.uniform(0.25, 0.45)
        river_line = _wavy_line(
            rng, (x_in, L + 200), (x_out, -200), amp=min(260.0, 0.18 * L), n=160, waves=1.6
        )
        self.river_w = 18 + 10 * s
        river = river_line.buffer(self.river_w / 2, quad_segs=6)
        # A wobble of the banks so the river width varies along its course.
        xy = shapely.get_coordinates(shapely.segmentize(river.exterior, 15.0))
        pts = shapely.points(xy)
        cen = shapely.get_coordinates(
            shapely.line_interpolate_point(river_line, shapely.line_locate_point(river_line, pts))
        )
        wob = 2.5 * np.sin(np.arange(len(xy)) * 0.37 + rng.uniform(0, 6))
        wob += rng.normal(0, 0.5, len(xy))
        v = xy - cen
        v /= np.hypot(v[:, 0], v[:, 1])[:, None] + 1e-9
        river = shapely.make_valid(shapely.Polygon(xy + v * wob[:, None])).buffer(0)
        self.river_line, self.river = river_line, river
        self.formal = formal.difference(river.buffer(25))
        # Ponds.
        ponds = []
        for _ in range(max(1, int(L * L / 2.5e6))):
            px, py = rng.uniform(0.1, 0.9, 2) * L
            g, _ = _blob(rng, px, py, rng.uniform(18, 45) * max(s, 0.5), n_circles=4, spread=0.7)
            if not g.intersects(formal):
                ponds.append(g)
        self.ponds = shapely.union_all(ponds) if ponds else shapely.Polygon()
        # Main roads: radiate from each centre towards the scene edges.
        roads = []
        for k, (cx, cy, _r) in enumerate(centres):
            n_r = 3 if k == 0 else 2
            base = rng.uniform(0, 2 * np.pi)
            for j in range(n_r):
                a = base + 2 * np.pi * j / n_r + rng.uniform(-0.3, 0.3)
                end = (cx + 3 * L * np.cos(a), cy + 3 * L * np.sin(a))
                roads.append(_wavy_line(rng, (cx, cy), end, amp=0.08 * L, n=120, waves=1.0))
        self.main_roads = [r.intersection(self.box.buffer(50)) for r in roads]
        self.main_roads = [r for r in self.main_roads if not r.is_empty]
        self.paved = shapely.union_all([r.buffer(5.0, cap_style="flat") for r in self.main_roads])
        # Districts: Voronoi cells over jittered seeds, assigned land use by rules + chance.
        sp = 280 * max(s, 0.4)
        gx, gy = _jittered_points(rng, (-sp, -sp, L + sp, L + sp), sp, 0.4)
        cells = shapely.get_parts(
            shapely.voronoi_polygons(shapely.multipoints(np.stack([gx, gy], 1)), extend_to=self.box)
        )
        cells = shapely.intersection(cells, self.box)
        cells = cells[~shapely.is_empty(cells) & (shapely.area(cells) > 1)]
        cen = shapely.centroid(cells)
        cxy = shapely.get_coordinates(cen)
        d_river = shapely.distance(cen, river_line)
        u = rng.uniform(0, 1, len(cells))
        kind = np.where(
            u < 0.45, K_FIELD, np.where(u < 0.75, K_BUSH, np.where(u < 0.9, K_BARE, K_WOOD))
        )
        kind = np.where((d_river < 200) & (u < 0.6), K_BUSH, kind)
        self.cells, self.cell_kind, self.cell_xy = cells, kind, cxy
        return self

    # ------------------------------------------------------------------ informal settlements
    def settlements(self):
        L, s = self.L, self.s
        rng = self.rng(2)
        n = max(4, round(L * L / 0.75e6))
        forbidden = shapely.union_all(
            [
                self.formal.buffer(12),
                self.river.buffer(12),
                self.ponds.buffer(10),
                self.paved.buffer(3),
            ]
        )
        # Candidate seeds favour the river banks and the fringe of the formal town.
        cand_x, cand_y = rng.uniform(0.05, 0.95, (2, 4000)) * L
        pts = shapely.points(cand_x, cand_y)
        d_riv = shapely.distance(pts, self.river)
        d_form = shapely.distance(pts, self.formal)
        w = np.exp(-d_riv / (150 * s + 30)) + 1.2 * np.exp(-d_form / (250 * s + 40))
        w *= ~_points_in(forbidden, cand_x, cand_y)
        # balance left and right halves so a left/right split has settlements on both sides
        order = []
        for half in (0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1):
            m = (cand_x < L / 2) == (half == 0)
            ww = w * m
            for j in order:
                ww *= 1 - np.exp(
                    -(((cand_x - cand_x[j]) ** 2 + (cand_y - cand_y[j]) ** 2) / (260 * s + 40) ** 2)
                )
            if ww.sum() <= 0:
                continue
            order.append(int(rng.choice(len(ww), p=ww / ww.sum())))
            if len(order) >= n:
                break
        s21, s24, seeds = [], [], []
        for k, j in enumerate(order):
            cx, cy = cand_x[j], cand_y[j]
            radius = rng.uniform(170, 270) * max(s, 0.7)
            # many small circles grown by a random walk: irregular, lobed outlines
            nc = int(rng.integers(18, 30))
            pts = np.zeros((nc, 2))
            for i in range(1, nc):
                base = pts[rng.integers(0, i)]
                a = rng.uniform(0, 2 * np.pi)
                pts[i] = base + radius * rng.uniform(0.25, 0.45) * np.array([np.cos(a), np.sin(a)])
            pts -= pts.mean(0)
            pts *= radius / max(np.hypot(pts[:, 0], pts[:, 1]).max(), 1.0)
            circles = np.column_stack(
                [cx + pts[:, 0], cy + pts[:, 1], radius * rng.uniform(0.16, 0.32, nc)]
            )
            dist = np.hypot(circles[:, 0] - cx, circles[:, 1] - cy)
            circles = circles[np.argsort(dist)]
            new = k == len(order) - 1 and len(order) >= 3  # the last one appears after date 1
            k21 = 0 if new else max(1, int(round(nc * rng.uniform(0.55, 0.75))))

            def poly(c):
                g = shapely.union_all(
                    shapely.buffer(shapely.points(c[:, 0], c[:, 1]), c[:, 2], quad_segs=10)
                )
                return (
                    g.buffer(12).buffer(-12).difference(forbidden).intersection(self.box.buffer(-2))
                )

            g24 = poly(circles)
            g21 = poly(circles[:k21]).intersection(g24) if k21 else shapely.Polygon()
            s24.append(g24)
            s21.append(g21)
            seeds.append((cx, cy))
        self.s21 = [_clean(g) for g in s21]
        self.s24 = [_clean(g) for g in s24]
        self.sett_union24 = shapely.union_all(self.s24)
        self.sett_union21 = shapely.union_all(self.s21)
        self.sett_seeds = seeds
        return self

    # ------------------------------------------------------------------ dirt tracks
    def tracks(self):
        L = self.L
        rng = self.rng(3)
        lines = []
        road_u = shapely.union_all(self.main_roads) if self.main_roads else None
        for cx, cy in self.sett_seeds:
            # track from the settlement to the nearest main road, and one out into the fields
            if road_u is not None and not road_u.is_empty:
                q = road_u.interpolate(road_u.project(shapely.Point(cx, cy)))
                lines.append(_wavy_line(rng, (cx, cy), (q.x, q.y), amp=25, n=30, waves=1.2))
            a = rng.uniform(0, 2 * np.pi)
            ln = rng.uniform(0.3, 0.7) * L
            lines.append(
                _wavy_line(rng, (cx, cy), (cx + ln * np.cos(a), cy + ln * np.sin(a)), amp=40, n=50)
            )
        for _ in range(max(2, int(L * L / 1.5e6))):
            p0 = rng.uniform(0, L, 2)
            a = rng.uniform(0, 2 * np.pi)
            ln = rng.uniform(0.3, 0.8) * L
            lines.append(
                _wavy_line(rng, p0, p0 + ln * np.array([np.cos(a), np.sin(a)]), amp=60, n=60)
            )
        lines = [ln.intersection(self.box.buffer(20)) for ln in lines]
        lines = [ln for ln in lines if not ln.is_empty]
        widths = rng.uniform(3.0, 5.0, len(lines))
        self.dirt = (
            shapely.union_all(
                [ln.buffer(w / 2, quad_segs=3) for ln, w in zip(lines, widths, strict=True)]
            )
            if lines
            else shapely.Polygon()
        )
        # footpaths through settlements: narrower, added as dirt ground too
        paths = []
        for g in self.s24:
            if g.is_empty:
                continue
            x0, y0, x1, y1 = g.bounds
            for _ in range(2):
                a = rng.uniform(0, np.pi)
                c = np.array([(x0 + x1) / 2, (y0 + y1) / 2]) + rng.uniform(-0.2, 0.2, 2) * (x1 - x0)
                d = np.array([np.cos(a), np.sin(a)]) * max(x1 - x0, y1 - y0)
                paths.append(
                    _wavy_line(rng, c - d, c + d, amp=15, n=40, waves=2).buffer(1.6, quad_segs=2)
                )
        self.footpaths = (
            shapely.union_all(paths).intersection(self.sett_union24) if paths else shapely.Polygon()
        )
        return self

    # ------------------------------------------------------------------ ground features
    def ground_features(self):
        rng = self.rng(4)
        cells, kind = self.cells, self.cell_kind
        # background land use; fields get their own parcels below (background is bush)
        self.add_ground(cells, np.where(kind == K_FIELD, K_BUSH, kind))
        parcels_all, angles_all = [], []
        for c in cells[kind == K_FIELD]:
            x0, y0, x1, y1 = c.bounds
            a = rng.uniform(0, np.pi)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            R = np.hypot(x1 - x0, y1 - y0) / 2 + 10
            # strips of varying width along a rotated axis, each cut into parcels
            u = -R
            recs = []
            while u < R:
                w = rng.uniform(25, 70)
                v = -R
                while v < R:
                    ln = rng.uniform(40, 140)
                    recs.append((u + w / 2, v + ln / 2, w - 2.0, ln - 2.0))
                    v += ln
                u += w
            recs = np.array(recs)
            ca, sa = np.cos(a), np.sin(a)
            px = cx + recs[:, 0] * ca - recs[:, 1] * sa
            py = cy + recs[:, 0] * sa + recs[:, 1] * ca
            rects = _rects(px, py, recs[:, 3], recs[:, 2], np.full(len(px), a + np.pi / 2))
            rects = shapely.intersection(rects, c.buffer(-3))
            rects = rects[(~shapely.is_empty(rects)) & (shapely.area(rects) > 300)]
            parcels_all.append(rects)
            angles_all.append(
                np.full(len(rects), a, np.float32) + rng.choice([0, np.pi / 2], len(rects))
            )
        if parcels_all:
            parcels = np.concatenate(parcels_all)
            angles = np.concatenate(angles_all)
            # avoid the settlements of date 2 (those fields were built over)
            keep = (
                ~shapely.intersects(parcels, self.sett_union24.buffer(-5))
                if not self.sett_union24.is_empty
                else np.ones(len(parcels), bool)
            )
            parcels, angles = parcels[keep], angles[keep]
            n = len(parcels)
            st0 = rng.choice(
                [ST_PLOUGHED, ST_EMERGING, ST_GREEN, ST_MATURE, ST_FALLOW],
                n,
                p=[0.2, 0.2, 0.3, 0.2, 0.1],
            )
            # phenology between dates: most change stage, some re-ploughed
            st1 = rng.choice(
                [ST_PLOUGHED, ST_EMERGING, ST_GREEN, ST_MATURE, ST_FALLOW],
                n,
                p=[0.25, 0.2, 0.25, 0.2, 0.1],
            )
            same = rng.uniform(0, 1, n) < 0.35
            st1 = np.where(same, st0, st1)
            self.add_ground(parcels, K_FIELD, K_FIELD, st0, st1, angle=angles)
            self.parcels = parcels
        else:
            self.parcels = np.array([], dtype=object)
        # formal town: street grid
        self.formal_blocks()
        # informal settlements: trampled yards; date-1 polygons are present on both dates,
        # the growth ring only on date 2.
        ring = [g24.difference(g21) for g21, g24 in zip(self.s21, self.s24, strict=True)]
        self.add_ground([g for g in self.s21 if not g.is_empty], K_YARD_INF)
        self.add_ground([g for g in ring if not g.is_empty], 0, K_YARD_INF)
        # water
        if not self.ponds.is_empty:
            self.add_ground(shapely.get_parts(self.ponds), K_POND)
        self.add_ground([self.river], K_RIVER)
        # roads (dirt, footpaths, formal streets, paved main roads)
        if not self.dirt.is_empty:
            d_out = self.dirt.difference(self.sett_union24)
            d_in = self.dirt.intersection(self.sett_union24)
            self.add_ground([d_out], K_DIRT)
            if not d_in.is_empty:
                self.add_ground([d_in], K_DIRT)
        if not self.footpaths.is_empty:
            fp21 = self.footpaths.intersection(self.sett_union21)
            fp_ring = self.footpaths.difference(self.sett_union21)
            if not fp21.is_empty:
                self.add_ground([fp21], K_DIRT)
            if not fp_ring.is_empty:
                self.add_ground([fp_ring], 0, K_DIRT)
        if len(self.streets):
            self.add_ground(self.streets, self.street_kind)
        self.add_ground([self.paved], K_PAVED)
        return self

    def formal_blocks(self):
        rng = self.rng(5)
        streets, street_kind, blocks, btype = [], [], [], []
        for cx, cy, r in self.centres:
            zone = self.formal.intersection(shapely.Point(cx, cy).buffer(r * 1.4))
            if zone.is_empty:
                continue
            a = rng.uniform(0, np.pi / 2)
            ca, sa = np.cos(a), np.sin(a)
            bu, bv = rng.uniform(90, 130), rng.uniform(55, 75)  # block pitch along u and v
            R = r * 1.5
            us = np.arange(-R, R + bu, bu) + rng.uniform(0, bu)
            vs = np.arange(-R, R + bv, bv) + rng.uniform(0, bv)
            sw = 8.0
            # streets as lines (u = const and v = const)
            for uu in us:
                p0 = (cx + uu * ca + R * sa, cy + uu * sa - R * ca)
                p1 = (cx + uu * ca - R * sa, cy + uu * sa + R * ca)
                streets.append(shapely.LineString([p0, p1]).buffer(sw / 2, cap_style="flat"))
                street_kind.append(K_PAVED if rng.uniform() < 0.5 else K_DIRT)
            for vv in vs:
                p0 = (cx - R * ca - vv * sa, cy - R * sa + vv * ca)
                p1 = (cx + R * ca - vv * sa, cy + R * sa + vv * ca)
                streets.append(shapely.LineString([p0, p1]).buffer(sw / 2, cap_style="flat"))
                street_kind.append(K_PAVED if rng.uniform() < 0.6 else K_DIRT)
            uc, vc = np.meshgrid((us[:-1] + us[1:]) / 2, (vs[:-1] + vs[1:]) / 2)
            uc, vc = uc.ravel(), vc.ravel()
            bx = cx + uc * ca - vc * sa
            by = cy + uc * sa + vc * ca
            rects = _rects(
                bx, by, np.full(len(bx), bu - sw), np.full(len(bx), bv - sw), np.full(len(bx), a)
            )
            blocks.append(
                np.stack(
                    [
                        bx,
                        by,
                        np.full(len(bx), bu - sw),
                        np.full(len(bx), bv - sw),
                        np.full(len(bx), a),
                    ],
                    1,
                )
            )
            btype.append(rects)
        if not blocks:
            self.streets, self.street_kind, self.blocks = (
                np.array([], object),
                np.array([], np.uint8),
                np.zeros((0, 5)),
            )
            return
        streets = shapely.intersection(np.array(streets, dtype=object), self.formal)
        keep = ~shapely.is_empty(streets)
        self.streets = streets[keep]
        self.street_kind = np.array(street_kind, np.uint8)[keep]
        tab = np.concatenate(blocks)
        rects = np.concatenate(btype)
        inter = shapely.intersection(rects, self.formal)
        frac = shapely.area(inter) / shapely.area(rects)
        keep = frac > 0.6
        tab, inter = tab[keep], inter[keep]
        n = len(tab)
        # block types: 0 residential with gardens, 1 compact (no gardens), 2 commercial, 3 park
        bt = rng.choice(4, n, p=[0.45, 0.3, 0.17, 0.08])
        kinds = np.array([K_GARDEN, K_COMPACT, K_LOT, K_PARK], np.uint8)[bt]
        self.add_ground(inter, kinds)
        self.blocks, self.block_type, self.block_geom = tab, bt, inter

    # ------------------------------------------------------------------ buildings
    def buildings(self):
        rng = self.rng(6)
        out = []
        # formal buildings: two rows of plots per block
        for (bx, by, lu, lv, a), bt in zip(self.blocks, self.block_type, strict=True):
            if bt == 3:
                continue
            ca, sa = np.cos(a), np.sin(a)
            if bt == 2:
                pw = rng.uniform(28, 45)
                dmin, dmax = 18, min(30, lv / 2 - 2)
            elif bt == 1:
                pw = rng.uniform(13, 18)
                dmin, dmax = 11, min(16, lv / 2 - 2)
            else:
                pw = rng.uniform(16, 24)
                dmin, dmax = 9, 13
            nplots = max(1, int(lu // pw))
            pw = lu / nplots
            for side in (-1, 1):
                m = nplots
                uc = -lu / 2 + pw * (np.arange(m) + 0.5)
                blen = np.clip(
                    pw - rng.uniform(2, 5, m) * (bt != 1) - rng.uniform(0.5, 1.5, m) * (bt == 1),
                    6,
                    None,
                )
                dep = rng.uniform(dmin, dmax, m)
                setback = rng.uniform(2, 5, m) * (bt != 1) + rng.uniform(0.5, 1.5, m) * (bt == 1)
                vc = side * (lv / 2 - setback - dep / 2)
                x = bx + uc * ca - vc * sa
                y = by + uc * sa + vc * ca
                present = rng.uniform(0, 1, m) < (0.85 if bt != 2 else 0.7)
                roof_p = [0.3, 0.3, 0.18, 0.17, 0.0, 0.05, 0.0, 0.0, 0.0]
                if bt == 2:
                    roof_p = [0.35, 0.0, 0.4, 0.15, 0.0, 0.1, 0.0, 0.0, 0.0]
                roof = rng.choice(9, m, p=roof_p)
                # long axis: along u if plot width > depth
                along_u = blen >= dep
                length = np.where(along_u, blen, dep)
                width = np.where(along_u, dep, blen)
                ang = np.where(along_u, a, a + np.pi / 2)
                h = np.where(bt == 2, rng.uniform(6, 12, m), rng.uniform(3.5, 8, m))
                new = rng.uniform(0, 1, m) < 0.03
                out.append(
                    dict(
                        x=x[present],
                        y=y[present],
                        length=length[present],
                        width=width[present],
                        angle=ang[present],
                        h=h[present],
                        roof=roof[present],
                        gable=np.isin(roof[present], [R_TILE, R_GALV, R_DARK])
                        & (rng.uniform(0, 1, present.sum()) < 0.7),
                        informal=np.zeros(present.sum(), bool),
                        e0=~new[present],
                        e1=np.ones(present.sum(), bool),
                    )
                )
        # informal buildings: jittered grid aligned with a slowly varying local orientation
        for g24, g21 in zip(self.s24, self.s21, strict=True):
            if g24.is_empty:
                continue
            sp = rng.uniform(6.2, 7.4)
            base = rng.uniform(0, np.pi)
            x0, y0, x1, y1 = g24.bounds
            gx, gy = np.meshgrid(np.arange(x0, x1, sp), np.arange(y0, y1, sp))
            # rotate the grid around the bounds centre so each settlement has its own "grain"
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            ca, sa = np.cos(base), np.sin(base)
            span = max(x1 - x0, y1 - y0)
            gu, gv = np.meshgrid(np.arange(-span, span, sp), np.arange(-span, span, sp))
            gu, gv = gu.ravel(), gv.ravel()
            # wobbly rows: offset along v by a slow sine of u (streets of shacks are not straight)
            gv = gv + 2.0 * np.sin(gu / rng.uniform(25, 60) + rng.uniform(0, 6))
            x = cx + gu * ca - gv * sa
            y = cy + gu * sa + gv * ca
            m = len(x)
            L_ = rng.uniform(3.0, 8.0, m) ** 1.0
            W_ = rng.uniform(2.8, 6.0, m)
            ang = base + rng.normal(0, 0.35, m) + rng.choice([0, np.pi / 2], m, p=[0.7, 0.3])
            # shrink each roof so its rotated extent fits the cell minus an alley of 1-2 m
            alley = rng.uniform(0.9, 2.0, m)
            rel = ang - base
            ext_u = np.abs(L_ * np.cos(rel)) + np.abs(W_ * np.sin(rel))
            ext_v = np.abs(L_ * np.sin(rel)) + np.abs(W_ * np.cos(rel))
            f = np.minimum(1.0, (sp - alley) / np.maximum(ext_u, ext_v))
            L_, W_ = L_ * f, W_ * f
            ext_u, ext_v = ext_u * f, ext_v * f
            ju = rng.uniform(-1, 1, m) * (sp - alley - ext_u).clip(0) / 2
            jv = rng.uniform(-1, 1, m) * (sp - alley - ext_v).clip(0) / 2
            x = x + ju * ca - jv * sa
            y = y + ju * sa + jv * ca
            keep = (rng.uniform(0, 1, m) > 0.08) & (np.maximum(L_, W_) >= 2.8)
            x, y, L_, W_, ang = x[keep], y[keep], L_[keep], W_[keep], ang[keep]
            lng = np.maximum(L_, W_)
            wid = np.minimum(L_, W_)
            ang = np.where(L_ >= W_, ang, ang + np.pi / 2)
            geoms = _rects(x, y, lng, wid, ang)
            shapely.prepare(g24)
            inside = shapely.contains(g24, geoms)
            x, y, lng, wid, ang, geoms = (
                x[inside],
                y[inside],
                lng[inside],
                wid[inside],
                ang[inside],
                geoms[inside],
            )
            m = len(x)
            if g21.is_empty:
                e0 = np.zeros(m, bool)
            else:
                shapely.prepare(g21)
                e0 = shapely.contains(g21, geoms) & (rng.uniform(0, 1, m) > 0.08)  # 8 % infill
            roof = np.where(
                e0,
                rng.choice(9, m, p=[0.02, 0.0, 0.14, 0.1, 0.48, 0.2, 0.04, 0.02, 0.0]),
                rng.choice(9, m, p=[0.02, 0.0, 0.35, 0.06, 0.32, 0.17, 0.05, 0.03, 0.0]),
            )
            out.append(
                dict(
                    x=x,
                    y=y,
                    length=lng,
                    width=wid,
                    angle=ang,
                    h=rng.uniform(2.4, 3.4, m),
                    roof=roof,
                    gable=rng.uniform(0, 1, m) < 0.25,
                    informal=np.ones(m, bool),
                    e0=e0,
                    e1=np.ones(m, bool),
                )
            )
        cat = {k: np.concatenate([o[k] for o in out]) for k in out[0]} if out else None
        if cat is None:
            cat = {
                k: np.zeros(0)
                for k in (
                    "x",
                    "y",
                    "length",
                    "width",
                    "angle",
                    "h",
                    "roof",
                    "gable",
                    "informal",
                    "e0",
                    "e1",
                )
            }
        geoms = _rects(cat["x"], cat["y"], cat["length"], cat["width"], cat["angle"])
        # drop buildings on roads / water
        obstacles = shapely.union_all(
            [
                self.paved.buffer(1.5),
                self.river.buffer(3),
                self.ponds.buffer(2),
                self.dirt.buffer(1.0),
                self.footpaths.buffer(0.5),
            ]
            + ([shapely.union_all(self.streets).buffer(1.0)] if len(self.streets) else [])
        )
        shapely.prepare(obstacles)
        shapely.prepare(self.box)
        keep = ~shapely.intersects(obstacles, geoms) & shapely.within(geoms, self.box)
        self.b = {k: v[keep] for k, v in cat.items()}
        self.b_geom = geoms[keep]
        return self

    # ------------------------------------------------------------------ trees
    def trees_layer(self):
        L = self.L
        rng = self.rng(7)
        # riparian strip
        strip = self.river.buffer(40).difference(self.river.buffer(4))
        pond_strip = (
            self.ponds.buffer(20).difference(self.ponds.buffer(3))
            if not self.ponds.is_empty
            else shapely.Polygon()
        )
        x, y = _jittered_points(rng, (0, 0, L, L), 5.5, 0.5)
        kin = _points_in(strip, x, y)
        d = shapely.distance(shapely.points(x[kin], y[kin]), self.river)
        keep = rng.uniform(0, 1, kin.sum()) < 0.75 * np.exp(-d / 25)
        tx, ty = [x[kin][keep]], [y[kin][keep]]
        kin = _points_in(pond_strip, x, y)
        keep = rng.uniform(0, 1, kin.sum()) < 0.35
        tx.append(x[kin][keep])
        ty.append(y[kin][keep])
        # district-level: woodland dense, bush scattered & clumped, bare very sparse
        x, y = _jittered_points(rng, (0, 0, L, L), 7.0, 0.5)
        clump = _fbm_points(x, y, 60.0, self.seed + 11)
        from helpers._scene_render import warp_points

        wdx, wdy = warp_points(x, y, self.seed)
        prob = np.zeros(len(x))
        for kind, p_base in ((K_WOOD, 0.75), (K_BUSH, 0.12), (K_BARE, 0.02), (K_FIELD, 0.0)):
            sel = self.cells[self.cell_kind == kind]
            if len(sel) == 0:
                continue
            zone = shapely.union_all(sel)
            inz = _points_in(zone, x + wdx, y + wdy)
            prob = np.where(inz, p_base * (0.4 + 1.4 * clump), prob)
        keep = rng.uniform(0, 1, len(x)) < prob
        tx.append(x[keep])
        ty.append(y[keep])
        x, y = np.concatenate(tx), np.concatenate(ty)
        r = rng.uniform(2.0, 5.0, len(x))
        # hedgerow trees along some parcel boundaries
        if len(self.parcels):
            bnd = shapely.boundary(self.parcels[rng.uniform(0, 1, len(self.parcels)) < 0.25])
            pts = shapely.get_coordinates(shapely.segmentize(bnd, 9.0))
            pts = pts[rng.uniform(0, 1, len(pts)) < 0.4]
            x = np.concatenate([x, pts[:, 0]])
            y = np.concatenate([y, pts[:, 1]])
            r = np.concatenate([r, rng.uniform(1.8, 3.5, len(pts))])
        # garden trees in residential blocks and parks
        if len(self.blocks):
            for bt, prob_t in ((0, 0.5), (3, 0.6), (1, 0.05)):
                sel = self.block_geom[self.block_type == bt]
                if len(sel) == 0:
                    continue
                zone = shapely.union_all(sel)
                x0, y0, x1, y1 = zone.bounds
                gx, gy = _jittered_points(rng, (x0, y0, x1, y1), 8.0, 0.5)
                k = _points_in(zone, gx, gy) & (rng.uniform(0, 1, len(gx)) < prob_t)
                x = np.concatenate([x, gx[k]])
                y = np.concatenate([y, gy[k]])
                r = np.concatenate([r, rng.uniform(2.0, 4.5, k.sum())])
        # a few trees inside settlements
        if not self.sett_union24.is_empty:
            x0, y0, x1, y1 = self.sett_union24.bounds
            gx, gy = _jittered_points(rng, (x0, y0, x1, y1), 14.0, 0.5)
            k = _points_in(self.sett_union24, gx, gy) & (rng.uniform(0, 1, len(gx)) < 0.05)
            x = np.concatenate([x, gx[k]])
            y = np.concatenate([y, gy[k]])
            r = np.concatenate([r, rng.uniform(2.0, 4.0, k.sum())])
        n = len(x)
        # trees never stand on water, roads or buildings
        pts = shapely.points(x, y)
        blockers = [self.river.buffer(1), self.paved.buffer(1), self.dirt]
        if len(self.streets):
            blockers.append(shapely.union_all(self.streets))
        obst = shapely.union_all(blockers + [self.ponds])
        shapely.prepare(obst)
        ok = ~shapely.intersects(obst, pts)
        if len(self.b_geom):
            tree = shapely.STRtree(self.b_geom)
            hit = tree.query(shapely.buffer(pts, r * 0.6, quad_segs=2), predicate="intersects")
            ok[np.unique(hit[0])] = False
        x, y, r = x[ok], y[ok], r[ok]
        n = len(x)
        # trees in the growth ring of the settlements were cleared before date 2
        ring = (
            self.sett_union24.difference(self.sett_union21.buffer(2))
            if not self.sett_union24.is_empty
            else shapely.Polygon()
        )
        cleared = _points_in(ring, x, y) & (rng.uniform(0, 1, n) < 0.85)
        in21 = _points_in(self.sett_union21, x, y)
        self.add_trees(
            x, y, r, r * rng.uniform(1.4, 2.6, n), rng.uniform(0, 1, n), e0=True, e1=~cleared
        )
        self._tree_in21 = in21
        return self

    # ------------------------------------------------------------------ clouds
    def clouds(self):
        L = self.L
        out, heights = [], []
        for d, (n_per_km2, rmin, rmax) in enumerate(((0.35, 30, 80), (2.2, 35, 120))):
            rng = self.rng(8, d)
            h = 650.0 + 150.0 * d
            off = shadow_vector(d) * h
            pad = np.abs(off).max() + rmax * 3
            # clouds over the scene (at least two on the second date), clouds around it whose
            # shadows may fall inside, and on the second date one whose shadow surely does
            n_in = max(2 * d, rng.poisson(n_per_km2 * L * L / 1e6))
            n_out = rng.poisson(n_per_km2 * ((L + 2 * pad) ** 2 - L * L) / 1e6)
            cx = rng.uniform(0.1, 0.9, n_in) * L
            cy = rng.uniform(0.1, 0.9, n_in) * L
            ox, oy = rng.uniform(-pad, L + pad, (2, 4 * n_out + 8))
            outside = (ox < 0) | (ox > L) | (oy < 0) | (oy > L)
            cx = np.concatenate([cx, ox[outside][:n_out]])
            cy = np.concatenate([cy, oy[outside][:n_out]])
            if d == 1:
                q = rng.uniform(0.3, 0.7, 2) * L - off
                cx, cy = np.append(cx, q[0]), np.append(cy, q[1])
            n = len(cx)
            puffs = []
            for i in range(n):
                rc = rng.uniform(rmin, rmax)
                k = int(rng.integers(4, 10))
                a = rng.uniform(0, 2 * np.pi, k)
                dd = rc * 0.9 * np.sqrt(rng.uniform(0, 1, k))
                puffs.append(
                    np.stack(
                        [
                            cx[i] + dd * np.cos(a),
                            cy[i] + dd * np.sin(a),
                            rc * rng.uniform(0.35, 0.7, k),
                        ],
                        1,
                    )
                )
            out.append(np.concatenate(puffs))
            heights.append(h)
        self.cloud_puffs, self.cloud_h = out, heights
        return self

    def finish(self) -> Layout:
        g = self.ground
        geoms = np.concatenate([t[0] for t in g])
        kind = np.stack([np.concatenate([t[1] for t in g]), np.concatenate([t[2] for t in g])])
        stage = np.stack([np.concatenate([t[3] for t in g]), np.concatenate([t[4] for t in g])])
        var = np.concatenate([t[5] for t in g])
        ang = np.concatenate([t[6] for t in g])
        ok = ~shapely.is_empty(geoms)
        T = np.concatenate(self.trees) if self.trees else np.zeros((0, 7))
        b = self.b
        rng = self.rng(9)
        # nodata: the corner beyond the swath edge on date 1 (a straight diagonal line)
        L = self.L
        nodata = (1.0, -0.55, 0.78 * L)  # x - 0.55 y > 0.78 L  -> lower-right corner
        return Layout(
            extent=L,
            g_geom=geoms[ok],
            g_kind=kind[:, ok],
            g_stage=stage[:, ok],
            g_var=var[ok],
            g_angle=ang[ok],
            t_xy=T[:, :2],
            t_r=T[:, 2],
            t_h=T[:, 3],
            t_var=T[:, 4],
            t_exists=T[:, 5:7].T.astype(bool),
            b_geom=self.b_geom,
            b_xy=np.stack([b["x"], b["y"]], 1),
            b_angle=b["angle"],
            b_len=b["length"],
            b_wid=b["width"],
            b_h=b["h"],
            b_roof=b["roof"].astype(np.uint8),
            b_gable=b["gable"].astype(bool),
            b_var=rng.uniform(0, 1, len(b["x"])),
            b_informal=b["informal"].astype(bool),
            b_exists=np.stack([b["e0"], b["e1"]]).astype(bool),
            settlements=(np.array(self.s21, dtype=object), np.array(self.s24, dtype=object)),
            clouds=tuple(self.cloud_puffs),
            cloud_height=tuple(self.cloud_h),
            nodata_line=nodata,
            n_districts=int(ok[: len(self.cells)].sum()),
        )


def _clean(g):
    g = shapely.make_valid(g)
    parts = [p for p in shapely.get_parts(g) if p.geom_type == "Polygon" and p.area > 400]
    return (
        shapely.MultiPolygon(parts)
        if len(parts) > 1
        else (parts[0] if parts else shapely.Polygon())
    )


def _fbm_points(x, y, scale, seed):
    """Value-noise fBm at scattered points in [0, 1] (used for tree clumping)."""
    from helpers._scene_render import fbm

    return 0.5 + 0.5 * fbm(x, y, scale, seed, octaves=3)


def build_layout(size: int, pixel_size: float, seed: int) -> Layout:
    """Build the complete vector layout of a scene (deterministic in ``size, pixel_size, seed``)."""
    b = _Builder(size, pixel_size, seed)
    b.macro().settlements().tracks().ground_features().buildings().trees_layer().clouds()
    return b.finish()
