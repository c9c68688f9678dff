"""Synthetic CT phantoms in HU for tests and offline use, all seeded.

Every generator returns a float32 array (z, y, x) in HU on a grid of ``shape`` voxels with
``spacing`` (sz, sy, sx) mm, centred on the isocentre, axes in the LPS frame of
docs/conventions.md: x -> patient Left, y -> Posterior, z -> Superior. ``spacing=None`` picks an
isotropic spacing that fits the phantom's nominal field of view (``FIELD_OF_VIEW_MM``) into the
smallest dimension. Generators:

* :func:`head_phantom`, :func:`pelvis_phantom`, :func:`knee_phantom`, :func:`chest_phantom`
  (chest and upper abdomen): procedural anatomy from ellipsoids, cylinders and rib rings with
  bone (cortex and trabecular), soft tissue, fat, air, lungs and small lesions; the seed varies
  sizes, positions, lesions and texture.
* :func:`label_phantom`: the 117-structure TotalSegmentator mask of the ``chest`` sample with a
  HU per structure (``LABEL_HU``), body/fat/air classes from its CT, smooth texture and a smooth
  random elastic deformation. Needs the sample in the cache (:mod:`deepsparse_core.data.samples`).
* :func:`shepp_logan_phantom`: 3D modified Shepp-Logan, intensities in HU, for reference.

Texture is smooth Gaussian noise (about 4 mm correlation) scaled per tissue; a Gaussian blur of
half a voxel mimics partial volume. Values are clipped to [-1024, 3071] HU.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import ndimage

from ..errors import InputError
from .volume import Volume

# Typical HU of tissues (non-contrast CT).
AIR, LUNG, FAT, MARROW, WATER, CSF = -1000.0, -850.0, -100.0, -50.0, 0.0, 8.0
WHITE_MATTER, GREY_MATTER, SOFT, BLOOD, MUSCLE, LIVER = 28.0, 40.0, 40.0, 45.0, 50.0, 60.0
CARTILAGE, TRABECULAR, BONE, CORTICAL = 120.0, 300.0, 700.0, 1100.0

FIELD_OF_VIEW_MM = {"head": 240.0, "pelvis": 420.0, "knee": 200.0, "chest": 420.0,
                    "shepp_logan": 200.0, "labels": 360.0}
_TEXTURE_MM = 4.0  # correlation length of the tissue texture


def _grid_spacing(kind: str, shape, spacing) -> tuple[tuple[int, int, int], tuple[float, ...]]:
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"phantom shape must be 3 positive integers (nz, ny, nx), got {shape}")
    if spacing is None:
        spacing = (FIELD_OF_VIEW_MM[kind] / min(shape),) * 3
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise InputError(f"phantom spacing must be 3 positive mm values, got {spacing}")
    return shape, spacing


def _rotation(rz: float = 0.0, ry: float = 0.0, rx: float = 0.0) -> np.ndarray:
    """Rotation matrix Rz @ Ry @ Rx (radians); columns are the local axes in (x, y, z)."""
    cz, sz, cy, sy, cx, sx = (math.cos(rz), math.sin(rz), math.cos(ry), math.sin(ry),
                              math.cos(rx), math.sin(rx))
    return (np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
            @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
            @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))


class _Canvas:
    """HU and texture-amplitude arrays on a centred grid; later shapes paint over earlier ones."""

    def __init__(self, shape, spacing, background: float = AIR):
        self.shape, self.spacing = shape, spacing
        self.hu = np.full(shape, background, dtype=np.float32)
        self.texture = np.zeros(shape, dtype=np.float32)
        self.axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)]  # z, y, x

    def paint(self, centre, half_extent, inside, hu: float, texture: float = 10.0):
        """Set voxels where ``inside(dx, dy, dz)`` holds, offsets in mm from ``centre`` (x, y, z),
        evaluated only in the box ``centre +- half_extent`` (x, y, z) mm."""
        slices, offsets = [], []
        for axis, c, h in zip(self.axes, centre[::-1], half_extent[::-1]):  # z, y, x
            lo, hi = np.searchsorted(axis, c - h), np.searchsorted(axis, c + h, side="right")
            if lo >= hi:
                return
            slices.append(slice(lo, hi))
            offsets.append(axis[lo:hi] - c)
        dz, dy, dx = offsets
        mask = inside(dx[None, None, :], dy[None, :, None], dz[:, None, None])
        mask = np.broadcast_to(mask, tuple(len(o) for o in offsets))
        self.hu[tuple(slices)][mask] = hu
        self.texture[tuple(slices)][mask] = texture

    def ellipsoid(self, centre, radii, hu, texture=10.0, rot=(0.0, 0.0, 0.0)):
        """Ellipsoid with semi-axes ``radii`` (x, y, z) mm, rotated by ``rot`` = (rz, ry, rx)."""
        R = _rotation(*rot)
        radii = np.asarray(radii, dtype=float)
        half = np.sqrt(((R * radii) ** 2).sum(1))

        def inside(dx, dy, dz):
            q = [(R[0, a] * dx + R[1, a] * dy + R[2, a] * dz) / radii[a] for a in range(3)]
            return q[0] ** 2 + q[1] ** 2 + q[2] ** 2 <= 1.0

        self.paint(centre, half, inside, hu, texture)

    def cylinder(self, centre, radii, half_length, hu, texture=10.0, rot=(0.0, 0.0, 0.0)):
        """Elliptic cylinder, semi-axes ``radii`` (x, y) mm, along local z +- ``half_length``."""
        R = _rotation(*rot)
        ext = np.array([radii[0], radii[1], half_length], dtype=float)
        half = (np.abs(R) * ext).sum(1)

        def inside(dx, dy, dz):
            q = [R[0, a] * dx + R[1, a] * dy + R[2, a] * dz for a in range(3)]
            return ((q[0] / ext[0]) ** 2 + (q[1] / ext[1]) ** 2 <= 1.0) & (np.abs(q[2]) <= ext[2])

        self.paint(centre, half, inside, hu, texture)

    def bone(self, shape: str, centre, radii, cortex_mm: float, *, half_length: float = 0.0,
             inner_hu: float = TRABECULAR, rot=(0.0, 0.0, 0.0)):
        """A bone, ``shape`` "ellipsoid" or "cylinder" (then ``half_length`` mm): a cortical
        shell ``cortex_mm`` thick around a trabecular (or fatty marrow) core."""
        inner = [max(r - cortex_mm, 0.5) for r in radii]
        if shape == "ellipsoid":
            self.ellipsoid(centre, radii, CORTICAL, 60.0, rot)
            self.ellipsoid(centre, inner, inner_hu, 40.0, rot)
        else:
            self.cylinder(centre, radii, half_length, CORTICAL, 60.0, rot)
            self.cylinder(centre, inner, max(half_length - cortex_mm, 0.5), inner_hu, 40.0, rot)

    def random_points(self, where: np.ndarray, count: int, rng) -> list[tuple[float, ...]]:
        """``count`` random (x, y, z) mm points at voxels where ``where`` is True."""
        index = np.flatnonzero(where)
        if index.size == 0:
            return []
        kji = np.unravel_index(rng.choice(index, size=count), self.shape)
        return [tuple(self.axes[a][kji[a][n]] for a in (2, 1, 0)) for n in range(count)]

    def finish(self, rng) -> np.ndarray:
        noise = _smooth_noise(rng, self.shape, self.spacing, _TEXTURE_MM)
        hu = self.hu + self.texture * noise
        hu = ndimage.gaussian_filter(hu, 0.5, mode="nearest", truncate=2.0)
        return np.clip(hu, -1024.0, 3071.0).astype(np.float32)


def _smooth_noise(rng, shape, spacing, correlation_mm: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian noise with about ``correlation_mm`` correlation length."""
    coarse = [max(2, int(math.ceil(n * s / correlation_mm)) + 1) for n, s in zip(shape, spacing)]
    noise = rng.standard_normal(coarse).astype(np.float32)
    # trilinear, corner samples on corners (torch's align_corners=True, which this replaced: no torch here)
    fine = ndimage.zoom(noise, [n / c for n, c in zip(shape, coarse)], order=1)
    return (fine - fine.mean()) / max(float(fine.std()), 1e-6)


def _lesions(canvas: _Canvas, rng, where: np.ndarray, count: int, radius_mm, hu_choices):
    for centre in canvas.random_points(where, count, rng):
        r = rng.uniform(*radius_mm)
        canvas.ellipsoid(centre, (r, r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.2)),
                         float(rng.choice(hu_choices)), 8.0)


def _start(kind, shape, spacing, seed):
    shape, spacing = _grid_spacing(kind, shape, spacing)
    rng = np.random.default_rng(seed)

    def vary(value, rel=0.06):
        return value * (1.0 + rel * rng.uniform(-1.0, 1.0))

    return _Canvas(shape, spacing), rng, vary


# ----------------------------------------------------------------------------------------------
# Procedural anatomy (mm, LPS: +x left, +y posterior, +z superior; anterior is -y)


def head_phantom(shape=(64, 64, 64), spacing=None, seed: int = 0) -> np.ndarray:
    """Head and upper neck: scalp, skull, grey/white matter, ventricles, orbits, sinuses, jaw."""
    c, rng, vary = _start("head", shape, spacing, seed)
    s = vary(1.0, 0.07)
    a, b, h = vary(72 * s), vary(92 * s), vary(88 * s)  # cranium semi-axes x, y, z
    top = (0, 8 * s, 15 * s)  # cranium centre
    c.cylinder((0, 8 * s, -150 * s), (52 * s, 58 * s), 70, SOFT, 12)  # neck
    c.bone("cylinder", (0, 22 * s, -150 * s), (10, 10), 3, half_length=70)  # cervical spine
    c.cylinder((0, -22 * s, -150 * s), (8, 7), 70, AIR, 0)  # airway
    c.ellipsoid((0, -40 * s, -40 * s), (52 * s, 62 * s, 60 * s), SOFT, 12)  # face
    c.ellipsoid(top, (a, b, h), SOFT, 12)  # scalp
    c.ellipsoid(top, (a - 4, b - 4, h - 4), BONE, 80)  # skull
    c.ellipsoid(top, (a - 10, b - 10, h - 10), GREY_MATTER, 6)
    c.ellipsoid((0, 12 * s, 25 * s), (0.72 * (a - 10), 0.72 * (b - 10), 0.6 * (h - 10)),
                WHITE_MATTER, 6)
    c.ellipsoid((0, 40 * s, -30 * s), (42 * s, 26 * s, 20 * s), GREY_MATTER, 6)  # cerebellum
    for side in (-1, 1):
        c.ellipsoid((side * vary(9), 8 * s, 28 * s), (6, vary(22 * s, 0.15), 11), CSF, 3,
                    rot=(side * 0.2, 0, 0))  # lateral ventricles
        c.ellipsoid((side * 42 * s, 12 * s, -32 * s), (16, 22, 9), CORTICAL, 60,
                    rot=(-side * 0.6, 0, 0))  # petrous bones
        c.ellipsoid((side * 31 * s, -66 * s, -10 * s), (17, 17, 15), FAT, 10)  # orbit
        c.ellipsoid((side * 31 * s, -70 * s, -10 * s), (12, 12, 12), WATER + 10, 4)  # eye
        c.ellipsoid((side * 25 * s, -62 * s, -58 * s), (vary(14), 17, 18), AIR, 0)  # max. sinus
    c.ellipsoid((0, -80 * s, -45 * s), (6, 14, 18), AIR, 0)  # nasal cavity
    c.ellipsoid((0, 8 * s - b + 14, 40 * s), (vary(11, 0.3), 6, 9), AIR, 0)  # frontal sinus
    ring_a, ring_b = 46 * s, 58 * s
    c.paint((0, -20 * s, -92 * s), (ring_a, ring_b, 16),  # mandible: anterior half ring
            lambda dx, dy, dz: (np.abs(np.hypot(dx / ring_a, dy / ring_b) - 0.92) < 0.08)
            & (dy < 0) & (np.abs(dz) < 14), BONE, 60)
    brain = c.hu == GREY_MATTER
    _lesions(c, rng, brain | (c.hu == WHITE_MATTER), int(rng.integers(1, 3)), (3.0, 9.0),
             [15.0, 70.0])  # infarct-like or haemorrhage-like
    return c.finish(rng)


def pelvis_phantom(shape=(64, 64, 64), spacing=None, seed: int = 0) -> np.ndarray:
    """Pelvis: fat and muscle, iliac wings, sacrum, hip joints, femora, pubis, bladder, rectum."""
    c, rng, vary = _start("pelvis", shape, spacing, seed)
    s = vary(1.0, 0.07)
    ax, ay = vary(170 * s), vary(120 * s)
    c.cylinder((0, 0, 0), (ax, ay), 400, FAT, 15)
    c.cylinder((0, 5, 0), (ax - vary(22), ay - vary(18)), 400, MUSCLE, 12)
    c.ellipsoid((0, -25 * s, 40 * s), (110 * s, 65 * s, 130 * s), FAT, 15)  # visceral fat
    for side in (-1, 1):
        c.ellipsoid((side * 75 * s, 80 * s, 0), (58 * s, 42 * s, 110 * s), MUSCLE, 12)  # gluteal
        c.cylinder((side * 45 * s, 35 * s, 90 * s), (22 * s, 20 * s), 70, MUSCLE, 12)  # psoas
        c.cylinder((side * 38 * s, 5 * s, 80 * s), (6, 6), 80, BLOOD, 4)  # iliac vessels
    for _ in range(int(rng.integers(6, 12))):  # small bowel loops
        p = (rng.uniform(-70, 70) * s, rng.uniform(-70, 10) * s, rng.uniform(20, 140) * s)
        r = rng.uniform(10, 18)
        c.ellipsoid(p, (r, r * 0.8, r * 1.2), SOFT - 10, 10, rot=(rng.uniform(0, 3), 0, 0))
        if rng.uniform() < 0.4:
            c.ellipsoid(p, (r * 0.5,) * 3, AIR, 0)
    c.ellipsoid((0, -55 * s, -35 * s), (vary(40), vary(35), vary(32)), WATER + 10, 4)  # bladder
    c.cylinder((0, 62 * s, -30 * s), (16, 15), 40, SOFT, 12)  # rectum
    c.ellipsoid((0, 62 * s, -18 * s), (vary(9, 0.3), 8, 12), AIR, 0)  # rectal gas
    c.bone("ellipsoid", (0, 82 * s, 45 * s), (44 * s, 17 * s, 58 * s), 2.5, rot=(0, 0, 0.5))
    for side in (-1, 1):
        c.bone("ellipsoid", (side * 95 * s, 25 * s, 55 * s), (12, 66 * s, 56 * s), 2.5,
               rot=(side * 0.55, 0, 0))  # iliac wing
        head = (side * 92 * s, -5 * s, -30 * s)
        c.bone("ellipsoid", head, (24, 24, 24), 2.5)  # femoral head
        c.bone("cylinder", (side * 110 * s, -5 * s, -50 * s), (13, 13), 3, half_length=28,
               rot=(0, side * 0.8, 0))  # femoral neck
        c.bone("ellipsoid", (side * 128 * s, 2 * s, -62 * s), (17, 20, 22), 2.5)  # trochanter
        c.bone("cylinder", (side * 120 * s, 0, -170 * s), (15, 15), 5, half_length=110,
               inner_hu=MARROW)
        c.bone("ellipsoid", (side * 25 * s, -85 * s, -55 * s), (24, 10, 16), 2.5,
               rot=(-side * 0.4, 0, 0))  # pubis
        c.bone("ellipsoid", (side * 60 * s, 40 * s, -75 * s), (14, 24, 28), 2.5)  # ischium
    bone = c.hu == TRABECULAR
    _lesions(c, rng, bone, int(rng.integers(0, 2)), (3.0, 8.0), [30.0])  # lytic lesion
    _lesions(c, rng, c.hu == MUSCLE, int(rng.integers(1, 3)), (5.0, 12.0), [80.0, 15.0])
    return c.finish(rng)


def knee_phantom(shape=(64, 64, 64), spacing=None, seed: int = 0) -> np.ndarray:
    """Knee: femur and condyles, tibial plateau, patella, fibula, cartilage, fat pad, vessels."""
    c, rng, vary = _start("knee", shape, spacing, seed)
    s = vary(1.0, 0.07)
    c.cylinder((0, 0, 0), (vary(70 * s), vary(65 * s)), 400, FAT, 15)
    c.cylinder((0, 8, 0), (56 * s, 50 * s), 400, MUSCLE, 12)
    c.ellipsoid((0, -5, -3), (42 * s, 32 * s, 10), CARTILAGE, 10)  # articular cartilage
    c.ellipsoid((0, -30 * s, -6), (20 * s, 12 * s, 14), FAT, 12)  # Hoffa fat pad
    if rng.uniform() < 0.5:
        c.ellipsoid((0, -38 * s, 45 * s), (25 * s, 8, 20), WATER + 5, 4)  # effusion
    c.cylinder((0, 38 * s, 0), (4, 4), 400, BLOOD, 4)  # popliteal artery
    c.bone("cylinder", (0, 5 * s, 110 * s), (15 * s, 15 * s), 4.5, half_length=80,
           inner_hu=MARROW)
    c.bone("ellipsoid", (0, 5 * s, 40 * s), (35 * s, 28 * s, 26 * s), 2)  # femoral metaphysis
    gap = vary(3.0, 0.3)
    for side in (-1, 1):
        c.bone("ellipsoid", (side * 20 * s, 8 * s, 18 * s + gap), (22 * s, 30 * s, 22 * s), 2)
    c.cylinder((0, 20 * s, 4 + gap), (7, 14), 10, SOFT + 20, 8)  # cruciate ligaments
    c.bone("ellipsoid", (0, 5 * s, -22 * s), (40 * s, 30 * s, 12 * s), 2)  # tibial plateau
    c.bone("ellipsoid", (0, 3 * s, -42 * s), (30 * s, 24 * s, 24 * s), 2)  # tibial metaphysis
    c.bone("cylinder", (0, 0, -120 * s), (14 * s, 14 * s), 4.5, half_length=80,
           inner_hu=MARROW)
    c.bone("ellipsoid", (0, -48 * s, 22 * s), (20 * s, 9 * s, 22 * s), 2)  # patella
    c.cylinder((0, -46 * s, -18 * s), (10, 4), 24, SOFT + 20, 8)  # patellar tendon
    c.bone("ellipsoid", (32 * s, 20 * s, -42 * s), (9, 9, 11), 1.5)  # fibular head
    c.bone("cylinder", (33 * s, 22 * s, -130 * s), (7, 7), 2.5, half_length=80)  # fibula
    _lesions(c, rng, c.hu == TRABECULAR, int(rng.integers(0, 3)), (2.0, 6.0), [20.0])  # cysts
    return c.finish(rng)


def _rib(ra, rb, thick, anterior: bool):
    """Mask function of one rib pair: an elliptic ring (outer semi-axes ``ra``, ``rb`` mm,
    ``thick`` mm) 10 mm high, dropping 0.33 mm per mm towards anterior, with a 32 mm gap for
    the sternum; ``anterior`` selects the costal cartilage part, else the bony part."""
    def inside(dx, dy, dz):
        radial = np.hypot(dx / ra, dy / rb)
        ring = (np.abs(radial - 1 + thick / (2 * rb)) < thick / (2 * rb)) \
            & (np.abs(dz - 0.33 * dy) < 5.0) & (np.abs(dx) > 16)
        front = dy < -0.55 * rb
        return ring & (front if anterior else ~front)
    return inside


def chest_phantom(shape=(64, 64, 64), spacing=None, seed: int = 0) -> np.ndarray:
    """Chest and upper abdomen: lungs with vessels and nodules, heart, aorta, spine, ribs,
    sternum, liver (with lesions), spleen, stomach, kidneys, bowel."""
    c, rng, vary = _start("chest", shape, spacing, seed)
    s = vary(1.0, 0.07)
    ax, ay = vary(165 * s), vary(115 * s)
    c.cylinder((0, 0, 0), (ax, ay), 400, FAT, 15)
    c.cylinder((0, 3, 0), (ax - vary(14), ay - vary(14)), 400, MUSCLE, 12)  # body wall
    c.cylinder((0, 0, 0), (ax - 26, ay - 26), 400, SOFT, 10)  # mediastinum / abdomen
    c.ellipsoid((0, -25 * s, -150 * s), (110 * s, 60 * s, 80 * s), FAT, 15)  # visceral fat
    for side in (-1, 1):
        c.ellipsoid((side * 42 * s, 88 * s, 0), (26 * s, 24 * s, 400), MUSCLE, 12)  # paraspinal
        c.ellipsoid((side * vary(72 * s), 8 * s, 95 * s), (58 * s, 78 * s, vary(125 * s)),
                    LUNG, 40)
    lung = c.hu == LUNG
    for centre in c.random_points(lung, 24, rng):  # pulmonary vessels
        c.cylinder(centre, (2.5, 2.5), rng.uniform(10, 25), BLOOD, 4,
                   rot=tuple(rng.uniform(0, 3, size=3)))
    c.ellipsoid((vary(20), -25 * s, 45 * s), (vary(55 * s), 45 * s, 50 * s), BLOOD, 6,
                rot=(0.5, 0, 0))  # heart
    c.cylinder((15 * s, 38 * s, -20 * s), (12, 12), 140, BLOOD, 4)  # descending aorta
    c.cylinder((5 * s, -10 * s, 110 * s), (14, 14), 30, BLOOD, 4)  # ascending aorta
    c.cylinder((-25 * s, 25 * s, -90 * s), (11, 11), 60, BLOOD, 4)  # inferior vena cava
    c.cylinder((6 * s, 18 * s, 80 * s), (7, 7), 130, SOFT, 8)  # oesophagus
    c.cylinder((0, -5 * s, 175 * s), (12, 12), 50, SOFT, 8)
    c.cylinder((0, -5 * s, 175 * s), (9, 9), 52, AIR, 0)  # trachea
    # Spine: discs, vertebral bodies every ~28 mm, posterior arches, spinal canal.
    c.cylinder((0, 48 * s, 0), (19, 17), 400, CARTILAGE - 40, 10)
    pitch = vary(28.0, 0.05)
    for z in np.arange(-8 * pitch, 8 * pitch, pitch) + rng.uniform(0, pitch):
        c.bone("cylinder", (0, 48 * s, z), (19, 17), 1.5, half_length=pitch / 2 - 3)
        c.bone("ellipsoid", (0, 78 * s, z), (28, 13, pitch / 2 - 4), 1.5)
    c.cylinder((0, 72 * s, 0), (9, 8), 400, SOFT - 5, 6)  # spinal canal
    # Ribs: elliptic rings sloping down anteriorly; cartilage in front, a gap for the sternum.
    ra, rb, thick = ax - 20, ay - 18, 9.0
    for z in np.arange(-30, 215, vary(24.0, 0.05)) * s:
        c.paint((0, 0, z), (ra, rb, 45), _rib(ra, rb, thick, anterior=True), CARTILAGE, 10)
        c.paint((0, 0, z), (ra, rb, 45), _rib(ra, rb, thick, anterior=False), BONE, 60)
    c.bone("ellipsoid", (0, -ay + 24, 105 * s), (14, 7, 75 * s), 1.5)  # sternum
    # Upper abdomen, painted after the lungs: the liver dome pushes up into the right lung.
    c.ellipsoid((-55 * s, -8 * s, -40 * s), (vary(95 * s), 80 * s, vary(75 * s)), LIVER, 8,
                rot=(0.3, 0, 0))
    c.ellipsoid((85 * s, 45 * s, -30 * s), (28 * s, vary(45 * s), 40 * s), MUSCLE, 8,
                rot=(-0.5, 0, 0))  # spleen
    c.ellipsoid((55 * s, -35 * s, -35 * s), (40 * s, 35 * s, 40 * s), SOFT - 15, 10)  # stomach
    c.ellipsoid((55 * s, -55 * s, -12 * s), (vary(24, 0.3), 14, 12), AIR, 0)  # gastric air
    for side in (-1, 1):
        c.ellipsoid((side * 70 * s, 55 * s, -110 * s), (28, 22, 50), SOFT - 5, 8,
                    rot=(side * 0.4, 0, 0))  # kidney
    for _ in range(int(rng.integers(4, 9))):  # bowel loops
        p = (rng.uniform(-80, 80) * s, rng.uniform(-70, 0) * s, rng.uniform(-200, -120) * s)
        r = rng.uniform(10, 18)
        c.ellipsoid(p, (r, r * 0.8, r), SOFT - 10, 10)
        if rng.uniform() < 0.5:
            c.ellipsoid(p, (r * 0.5,) * 3, AIR, 0)
    _lesions(c, rng, c.hu == LUNG, int(rng.integers(1, 4)), (3.0, 8.0), [40.0])  # nodules
    _lesions(c, rng, c.hu == LIVER, int(rng.integers(0, 3)), (5.0, 14.0), [25.0, 100.0])
    return c.finish(rng)


# ----------------------------------------------------------------------------------------------
# 3D Shepp-Logan

# Modified Shepp-Logan in 3D (Kak & Slaney; parameters as in Schabel's phantom3d), in units of
# half the field of view: semi-axes (a, b, c), centre (x0, y0, z0), in-plane angle phi (deg).
# Intensities are additive HU instead of the original (1, -0.8, -0.2, 0.1): skull +1000 HU,
# brain 40 HU, ventricles 0 HU, small features 60 HU, outside air -1000 HU.
_SHEPP_LOGAN = [
    # HU,    a,      b,     c,     x0,    y0,     z0,   phi
    (2000.0, .6900, .920, .810, 0.00, 0.0000, 0.00, 0.0),
    (-960.0, .6624, .874, .780, 0.00, -.0184, 0.00, 0.0),
    (-40.0, .1100, .310, .220, 0.22, 0.0000, 0.00, -18.0),
    (-40.0, .1600, .410, .280, -.22, 0.0000, 0.00, 18.0),
    (20.0, .2100, .250, .410, 0.00, 0.3500, -.15, 0.0),
    (20.0, .0460, .046, .050, 0.00, 0.1000, 0.25, 0.0),
    (20.0, .0460, .046, .050, 0.00, -.1000, 0.25, 0.0),
    (20.0, .0460, .023, .050, -.08, -.6050, 0.00, 0.0),
    (20.0, .0230, .023, .020, 0.00, -.6060, 0.00, 0.0),
    (20.0, .0230, .046, .020, 0.06, -.6050, 0.00, 0.0),
]


def shepp_logan_phantom(shape=(64, 64, 64), spacing=None, seed: int = 0) -> np.ndarray:
    """3D modified Shepp-Logan in HU (no texture, no blur; ``seed`` is ignored).

    One phantom unit is half of ``FIELD_OF_VIEW_MM["shepp_logan"]`` (100 mm). The phantom's +y
    (top of the classic image) is anterior, i.e. our -y.
    """
    shape, spacing = _grid_spacing("shepp_logan", shape, spacing)
    unit = FIELD_OF_VIEW_MM["shepp_logan"] / 2
    z, y, x = ((np.arange(n) - (n - 1) / 2) * sp / unit for n, sp in zip(shape, spacing))
    z, y, x = z[:, None, None], -y[None, :, None], x[None, None, :]
    out = np.full(shape, AIR, dtype=np.float32)
    for hu, a, b, c, x0, y0, z0, phi in _SHEPP_LOGAN:
        co, si = math.cos(math.radians(phi)), math.sin(math.radians(phi))
        u, v = (x - x0) * co + (y - y0) * si, -(x - x0) * si + (y - y0) * co
        out += np.float32(hu) * (((u / a) ** 2 + (v / b) ** 2 + ((z - z0) / c) ** 2) <= 1.0)
    return out


# ----------------------------------------------------------------------------------------------
# Label-driven phantom from the chest sample's TotalSegmentator mask

# Extra classes for voxels without an organ label, from the sample CT.
OUTSIDE_AIR, BODY_AIR, BODY_FAT, BODY_SOFT, BODY_BONE = 200, 201, 202, 203, 204

LABEL_HU = {
    1: 50, 2: 35, 3: 35, 4: 10, 5: LIVER, 6: 25, 7: 40, 8: 30, 9: 30,  # abdominal organs
    **{k: LUNG for k in range(10, 15)},  # lung lobes
    15: 40, 16: -950, 17: 90, 18: 30, 19: 30, 20: 0, 21: 10, 22: 40, 23: 5, 24: 5,
    **{k: 450 for k in range(25, 51)},  # sacrum and vertebrae (cortex + spongiosa)
    **{k: BLOOD for k in range(51, 69)},  # heart and vessels
    69: BONE, 70: BONE, 71: 500, 72: 500, 73: BONE, 74: BONE, 75: BONE, 76: BONE,
    77: 500, 78: 500,  # humeri, scapulae, clavicles, femora, hips
    79: 35, **{k: MUSCLE for k in range(80, 90)}, 90: 35, 91: BONE,  # cord, muscles, brain, skull
    **{k: 600 for k in range(92, 116)}, 116: 500, 117: BONE, 118: CARTILAGE,  # ribs, sternum
    OUTSIDE_AIR: AIR, BODY_AIR: -900, BODY_FAT: FAT, BODY_SOFT: SOFT, BODY_BONE: 500,
}
_LABEL_TEXTURE = {**{k: 40.0 for k in range(10, 15)}, OUTSIDE_AIR: 0.0, BODY_AIR: 20.0,
                  BODY_FAT: 15.0, 16: 5.0}
_BONES = set(range(25, 51)) | set(range(69, 79)) | {91, 117} | set(range(92, 117))


@functools.lru_cache(maxsize=1)
def _chest_classes(labels_path: str, ct_path: str):
    """Class map (uint8 (z, y, x), LPS, in-plane stride 2) of the chest sample, the LPS origin
    (x, y, z) of its voxel [0, 0, 0] and its spacing (x, y, z) mm."""
    from .preprocess import reorient_to_lps
    from .volume_io import read_volume

    labels = reorient_to_lps(read_volume(labels_path, check_hu=False), fill=0.0)
    ct = reorient_to_lps(read_volume(ct_path))
    lab = labels.array[:, ::2, ::2].round().astype(np.uint8)
    nz, ny, nx = ct.shape
    hu = ct.array[:, : ny // 2 * 2, : nx // 2 * 2].reshape(nz, ny // 2, 2, nx // 2, 2).mean((2, 4))
    hu = ndimage.gaussian_filter(hu, 0.7)
    body, count = ndimage.label(hu > -400)
    if count > 1:  # keep the patient, drop the table
        body = body == np.argmax(np.bincount(body.ravel())[1:]) + 1
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    body = ndimage.binary_fill_holes(body > 0, structure=in_plane)
    classes = np.full(hu.shape, OUTSIDE_AIR, np.uint8)
    classes[body] = BODY_SOFT
    classes[body & (hu < -400)] = BODY_AIR
    classes[body & (hu >= -400) & (hu < -20)] = BODY_FAT
    classes[body & (hu > 200)] = BODY_BONE
    classes[lab > 0] = lab[lab > 0]
    spacing_xyz = np.array([2 * ct.spacing[2], 2 * ct.spacing[1], ct.spacing[0]])
    return classes, ct.index_to_lps((0, 0.5, 0.5)), spacing_xyz


def label_phantom(shape=(64, 64, 64), spacing=None, seed: int = 0, *, deform_mm: float = 6.0,
                  download: bool = False) -> np.ndarray:
    """Chest/abdomen CT from the ``chest`` sample's 117-structure mask (HU per ``LABEL_HU``).

    Unlabelled voxels are classed as air, fat, soft tissue or bone from the sample CT (the
    table is removed). The seed draws a small rotation about z (+-4 deg), scaling (+-5 %), a smooth
    elastic displacement of about ``deform_mm`` (40 mm correlation) and the texture. The
    class map is sampled by nearest neighbour at about 1.4 mm in-plane, 2.5 mm axially.
    Raises :class:`DeepSparseError` when the sample is not cached and ``download`` is False.
    """
    from .samples import fetch_sample

    shape, spacing = _grid_spacing("labels", shape, spacing)
    labels = fetch_sample("chest", "labels", download=download)
    ct = fetch_sample("chest", "image", download=download)
    classes, _, step = _chest_classes(str(labels), str(ct))
    rng = np.random.default_rng(seed)

    angle, scale = rng.uniform(-1, 1) * math.radians(4), 1 + 0.05 * rng.uniform(-1, 1, size=3)
    z, y, x = ((np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing))
    displacement = [deform_mm * _smooth_noise(rng, shape, spacing, 40.0) for _ in range(3)]
    px = x[None, None, :] * scale[0] + displacement[0]
    py = y[None, :, None] * scale[1] + displacement[1]
    pz = z[:, None, None] * scale[2] + displacement[2]
    px, py = px * math.cos(angle) - py * math.sin(angle), px * math.sin(angle) + py * math.cos(angle)
    # Phantom (0, 0, 0) -> centre of the class map; then to its voxel indices (i, j, k).
    half = (np.array(classes.shape[::-1]) - 1) / 2
    index = [np.rint(p / step[a] + half[a]).astype(np.int64) for a, p in enumerate((px, py, pz))]
    inside = np.ones(shape, bool)
    for a, i in enumerate(index):
        n = classes.shape[2 - a]
        inside &= (i >= 0) & (i < n)
        np.clip(i, 0, n - 1, out=i)
    sampled = np.where(inside, classes[index[2], index[1], index[0]], OUTSIDE_AIR)

    hu_lut = np.full(256, SOFT, np.float32)
    tex_lut = np.full(256, 10.0, np.float32)
    for label, value in LABEL_HU.items():
        hu_lut[label] = value
        tex_lut[label] = _LABEL_TEXTURE.get(label, 60.0 if label in _BONES else 10.0)
    canvas = _Canvas(shape, spacing)
    canvas.hu, canvas.texture = hu_lut[sampled], tex_lut[sampled]
    return canvas.finish(rng)


# ----------------------------------------------------------------------------------------------

_GENERATORS = {"head": head_phantom, "pelvis": pelvis_phantom, "knee": knee_phantom,
               "chest": chest_phantom, "shepp_logan": shepp_logan_phantom,
               "labels": label_phantom}
PHANTOM_KINDS = tuple(_GENERATORS)


def make_phantom(kind: str, shape=(64, 64, 64), spacing=None, seed: int = 0) -> np.ndarray:
    """HU phantom of ``kind`` (one of ``PHANTOM_KINDS``), float32 (z, y, x)."""
    if kind not in _GENERATORS:
        raise InputError(f"unknown phantom '{kind}', choose one of {', '.join(PHANTOM_KINDS)}")
    return _GENERATORS[kind](shape, spacing, seed)


def phantom_volume(kind: str, shape=(64, 64, 64), spacing=None, seed: int = 0) -> Volume:
    """:func:`make_phantom` as a :class:`Volume` with its centre at LPS (0, 0, 0)."""
    shape, spacing = _grid_spacing(kind, shape, spacing)
    array = make_phantom(kind, shape, spacing, seed)
    origin = -(np.array(shape[::-1]) - 1) / 2 * np.array(spacing[::-1])
    return Volume(array, spacing, tuple(origin))
