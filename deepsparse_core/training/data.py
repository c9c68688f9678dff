"""Training data: a folder of candidate cache files, loaded once, sampled into batches on the device.

A *training set* is a folder of candidate caches (:mod:`deepsparse_core.data.candidates`: K = 200 float16
projections over [0, 180) degrees + the [0, 1] reference volume + the geometry) and optional split
files ``train.txt``, ``val.txt``, ``test.txt`` (:mod:`deepsparse_core.data.splits`). Without split
files every cache is a training volume.

:class:`CandidateSet` reads the chosen caches once into two device tensors (projections
(F, K, nv, nu) and references (F, nz, ny, nx), both float16 as stored, so values are bit-exact to
the files) and :meth:`CandidateSet.batch` builds each training batch by indexing them on the device:
the only per-step host -> device traffic is the random indices. Memory: 200 x 256^2 x 2 bytes = 26 MB
of projections + 33 MB of reference per 256^3 volume, so ~1000 volumes fit in an 80 GB GPU;
for the paper's 8,407 pretraining volumes keep the set on the host (``device="cpu"``, pinned memory)
or shard the folder over processes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.projections_file import load_projections
from ..data.splits import split_files
from ..errors import GeometryError, InputError
from ..physics.geometry import Geometry

POINTS_PER_VOLUME = 10_000  # released train.py --num_points (uniform voxels, without replacement)

# view_sampler(rng) -> (sparse candidate indices (n,), all candidate indices (M,), sparse first)
ViewSampler = Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]


@dataclass
class Batch:
    """One training batch; M view slots per sample, the n sparse views first."""

    projections: torch.Tensor   # (B, M, nv, nu) float32 line integrals (attenuation [0, 1] x mm)
    angles: torch.Tensor        # (B, M) radians
    view_mask_2d: torch.Tensor  # (B, M) bool, the n sparse views (2D point features)
    view_mask_3d: torch.Tensor  # (B, M) bool, all chosen views (3D features); padding slots are False
    points: torch.Tensor        # (B, N, 3) voxel centres (x, y, z) mm
    targets: torch.Tensor       # (B, N) reference attenuation at those voxels
    volumes: np.ndarray         # (B,) indices of the volumes in the set
    n_sparse: np.ndarray        # (B,) n per sample

    def to(self, device: torch.device) -> "Batch":
        """The batch on ``device`` (a no-op when the set already lives there)."""
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return dataclasses.replace(self, projections=move(self.projections), angles=move(self.angles),
                                   view_mask_2d=move(self.view_mask_2d), view_mask_3d=move(self.view_mask_3d),
                                   points=move(self.points), targets=move(self.targets))


class CandidateSet:
    """The volumes of one split, all candidate projections and references resident on ``device``.

    Args:
        folder: training set folder (see the module docstring), or a list of them (their ``split``
            volumes together: e.g. augmented real CTs and phantoms prepared apart).
        split: 'train', 'val' or 'test'.
        device: where the tensors live (keep training data on the GPU).
        edge_quantile: for importance sampling (:meth:`batch` ``edge_fraction``), the voxels whose
            reference gradient magnitude is in the top ``edge_quantile`` of their volume.
        limit: read at most this many volumes (the first in the split list).
    """

    def __init__(self, folder: str | Path | list, split: str = "train", device: str | torch.device = "cpu",
                 edge_quantile: float = 0.1, limit: int | None = None):
        folders = [Path(f) for f in folder] if isinstance(folder, (list, tuple)) else [Path(folder)]
        if not folders:
            raise InputError("give at least one training data folder")
        self.folder, self.split = folders[0] if len(folders) == 1 else ", ".join(map(str, folders)), split
        self.device = torch.device(device)
        self.files = [f / name for f in folders for name in split_files(f, split)][:limit]
        self.names = [p.name if len(folders) == 1 else str(p) for p in self.files]
        self.geometry: Geometry | None = None
        projections, references = [], []
        for path, name in zip(self.files, self.names):
            data = load_projections(path, device="cpu")
            if data.reference is None:
                raise InputError(f"{path} has no reference volume: it is not a candidate cache")
            self._check_geometry(data.geometry, name)
            projections.append(data.projections.to(torch.float16))  # stored as float16: lossless
            references.append(data.reference.to(torch.float16))
        shape = (0, 1, 1, 1)
        self.projections = (torch.stack(projections) if projections else torch.empty(shape)).to(self.device)
        self.references = (torch.stack(references) if references else torch.empty(shape)).to(self.device)
        self.candidate_angles = (torch.tensor(self.geometry.angles, dtype=torch.float32, device=self.device)
                                 if self.geometry else None)
        self._axes = [self.geometry.axis_centres(a, device=self.device) for a in range(3)] if self.geometry else []
        self.edge_quantile = edge_quantile
        self._edges: tuple[torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.names)

    @property
    def n_candidates(self) -> int:
        return self.geometry.n_views

    def _check_geometry(self, geometry: Geometry, name: str) -> None:
        if self.geometry is None:
            self.geometry = geometry
            return
        if geometry.to_dict() != self.geometry.to_dict():
            a, b = self.geometry.to_dict(), geometry.to_dict()
            diff = [k for k in a if a[k] != b[k]]
            raise GeometryError(
                f"all volumes of a training set must share one geometry: {name} differs from {self.names[0]} "
                f"in {', '.join(diff)}; build the caches with the same preset/geometry file")

    def require(self, what: str = "training") -> "CandidateSet":
        if not len(self):
            raise InputError(f"no {self.split} volumes in {self.folder} (needed for {what}); "
                             f"add *.safetensors caches or fix {self.split}.txt")
        return self

    # ------------------------------------------------------------------ sampling
    def batch(self, rng: np.random.Generator, batch_size: int, view_sampler: ViewSampler,
              n_points: int = POINTS_PER_VOLUME, edge_fraction: float = 0.0) -> Batch:
        """A random batch: volumes uniformly with replacement, views from ``view_sampler``, points.

        Points are voxel centres drawn uniformly without replacement (released ``sample_points``:
        ``np.random.choice(n_voxels, 10000, replace=False)``) and the targets are the reference values
        at exactly those voxels: no interpolation. Uniform sampling makes the MSE an unbiased estimate
        of the whole-volume MSE, which is what PSNR reports (-10 log10 MSE), and every voxel, air
        included, is predicted at test time. ``edge_fraction`` > 0 draws that fraction of the points
        uniformly among the volume's edge voxels instead (top ``edge_quantile`` gradient magnitude):
        sharper edges for the same number of points, at the price of a loss biased away from the
        evaluated MSE (ablation option; off by default). Edge voxels may repeat uniform ones.

        Randomness comes only from ``rng`` (numpy), so a batch is a function of the generator state.
        """
        self.require()
        b = batch_size
        volumes = rng.integers(len(self), size=b)
        views = [view_sampler(rng) for _ in range(b)]
        m = max(len(all_idx) for _, all_idx in views)
        index = np.zeros((b, m), dtype=np.int64)
        mask_2d = np.zeros((b, m), dtype=bool)
        mask_3d = np.zeros((b, m), dtype=bool)
        for i, (sparse, all_idx) in enumerate(views):
            index[i, :len(all_idx)] = all_idx
            mask_2d[i, :len(sparse)] = True
            mask_3d[i, :len(all_idx)] = True
        voxels = self._sample_voxels(rng, volumes, n_points, edge_fraction)        # (B, N) flat indices
        dev = self.device
        vol_t = torch.from_numpy(volumes).to(dev)
        index_t = torch.from_numpy(index).to(dev)
        voxels_t = torch.from_numpy(voxels).to(dev)
        projections = self.projections[vol_t[:, None], index_t].float()           # (B, M, nv, nu)
        targets = self.references.flatten(1)[vol_t[:, None], voxels_t].float()    # (B, N)
        return Batch(projections=projections, angles=self.candidate_angles[index_t],
                     view_mask_2d=torch.from_numpy(mask_2d).to(dev), view_mask_3d=torch.from_numpy(mask_3d).to(dev),
                     points=self.voxel_positions(voxels_t), targets=targets, volumes=volumes,
                     n_sparse=np.array([len(s) for s, _ in views]))

    def _sample_voxels(self, rng, volumes, n_points, edge_fraction) -> np.ndarray:
        n_vox = math.prod(self.geometry.volume_shape)
        if not 0 < n_points <= n_vox:
            raise InputError(f"points per volume must be in [1, {n_vox}] for a {self.geometry.volume_shape} grid, "
                             f"got {n_points}")
        if not 0.0 <= edge_fraction <= 1.0:
            raise InputError(f"edge_fraction must be in [0, 1], got {edge_fraction}")
        n_edge = int(round(n_points * edge_fraction))
        uniform = np.stack([rng.choice(n_vox, n_points - n_edge, replace=False) for _ in volumes])
        if not n_edge:
            return uniform
        edges, counts = self.edge_voxels()
        counts = counts.cpu().numpy()
        picks = np.floor(rng.random((len(volumes), n_edge)) * counts[volumes, None]).astype(np.int64)
        edge = edges.cpu().numpy()[volumes[:, None], picks]
        return np.concatenate([uniform, edge], axis=1)

    def edge_voxels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(F, E) flat indices of each volume's top-``edge_quantile`` gradient-magnitude voxels (padded by
        repetition) and (F,) their counts; computed once."""
        if self._edges is None:
            lists = []
            for ref in self.references:
                r = ref.float()
                grad = sum(g.square() for g in torch.gradient(r)).sqrt().flatten()
                k = max(1, int(self.edge_quantile * grad.numel()))
                lists.append(torch.topk(grad, k).indices)
            width = max(len(x) for x in lists)
            padded = torch.stack([x.repeat(math.ceil(width / len(x)))[:width] for x in lists])
            self._edges = padded, torch.tensor([len(x) for x in lists], device=self.device)
        return self._edges

    def voxel_positions(self, flat: torch.Tensor) -> torch.Tensor:
        """(..., ) flat voxel indices of the (nz, ny, nx) grid -> (..., 3) centres (x, y, z) mm."""
        nz, ny, nx = self.geometry.volume_shape
        k, rem = flat // (ny * nx), flat % (ny * nx)
        j, i = rem // nx, rem % nx
        z, y, x = self._axes
        return torch.stack([x[i], y[j], z[k]], dim=-1)

    def volume(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(candidate projections (K, nv, nu) float32, reference (nz, ny, nx) float32) of one volume."""
        return self.projections[index].float(), self.references[index].float()
