"""DiCE, Dual-Dimensional Cross-Scale Embedding: the DeepSparse reconstruction network (paper Sec. 3.2).

    projections (B, V, nv, nu), line integrals in mm / projection_scale
      -> ProjectionEncoder: S per-view 2D maps (B, V, C_s, nv/2^s, nu/2^s), finest first
      -> grid_features (views of view_mask_3d): S low-res volumes (B, C_s, M, M, M)    [Eq. 1]
      -> per-scale QuantizationLayer (EMA codebook) [-> DenoiseLayer, finetuning step 2]
      -> CrossScaleDecoder, coarsest scale first: volume (B, decoder_channels, M, M, M)  [Eq. 2-4]
    points (B, N, 3) mm
      -> [2D features, max over the views of view_mask_2d, every scale | trilinear volume feature]
      -> PointDecoder MLP -> attenuation (B, N)                                       [Eq. 5-7]

HyViP (paper Sec. 3.3): the 2D point features come from the n sparse views (``view_mask_2d``) and the
3D volume from the dense set (``view_mask_3d``, up to 24 views in the paper). The geometry is an input, so one model serves any
scanner, detector and number of views; ``angles`` (B, V) gives each sample its own view angles.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GeometryError, InputError
from ..physics.geometry import Geometry
from .config import DiceConfig
from .decoder3d import CrossScaleDecoder
from .denoise import DenoiseLayer
from .encoder import ProjectionEncoder
from .point_decoder import PointDecoder
from .sampling import grid_features, pixel_features, project_to_views, sample_volume
from .vq import CODEBOOK_STATE, QuantizationLayer

GROUPS = ("encoder", "quantization", "decoder3d", "point_decoder", "denoise")


@dataclass
class DiceFeatures:
    """What point decoding needs, computed once per set of projections by ``DiCE.encode``."""

    maps: list[torch.Tensor]        # S per-view 2D maps (B, V, C_s, nv / 2^s, nu / 2^s), finest first
    view_mask: torch.Tensor         # (B, V) bool: the views whose 2D features the points read
    volume: torch.Tensor            # (B, decoder_channels, M, M, M), spans the geometry's grid
    geometry: Geometry
    angles: torch.Tensor | None     # (B, V) radians, or None for geometry.angles
    vq_loss: torch.Tensor           # commitment loss, mean over scales
    quantized: list[torch.Tensor]   # S volumes (B, C_s, M, M, M) fed to the 3D decoder (denoised when on)
    quantized_dense: list[torch.Tensor] | None = None  # denoise targets from the dense views (no grad)
    denoise_loss: torch.Tensor | None = None           # L1 to the targets, mean over scales (Eq. 12)


class DiCE(nn.Module):
    def __init__(self, config: DiceConfig | None = None):
        super().__init__()
        cfg = self.config = config or DiceConfig.paper()
        self.encoder = ProjectionEncoder(cfg)
        self.quantizers = nn.ModuleList(
            QuantizationLayer(ch, cfg.codebook_size, cfg.codebook_decay, cfg.codebook_eps, cfg.commitment_weight,
                              cfg.codebook_restart)
            for ch in cfg.scale_channels)
        self.decoder3d = CrossScaleDecoder(cfg)
        self.point_decoder = PointDecoder(cfg)
        self.denoise = self._denoise_layers() if cfg.denoise else None
        self._frozen: set[str] = set()
        self._statistics_frozen = False

    def _denoise_layers(self) -> nn.ModuleList:
        cfg = self.config
        return nn.ModuleList(DenoiseLayer(ch, cfg.denoise_blocks, cfg.negative_slope) for ch in cfg.scale_channels)

    def enable_denoise(self) -> "DiCE":
        """Add identity-initialized denoise layers (finetuning step 2 starting from a step-1 model)."""
        if self.denoise is None:
            p = next(self.parameters())
            self.denoise = self._denoise_layers().to(device=p.device, dtype=p.dtype)
            self.config = dataclasses.replace(self.config, denoise=True)
        return self

    # ------------------------------------------------------------------ encoding
    def encode(self, projections: torch.Tensor, geometry: Geometry, view_mask_2d: torch.Tensor | None = None,
               view_mask_3d: torch.Tensor | None = None, angles: torch.Tensor | None = None) -> DiceFeatures:
        """Shared per-scan features: 2D maps and the decoded low-resolution volume.

        Args:
            projections: (B, V, nv, nu) line integrals (attenuation [0, 1] x mm) spanning the geometry's
                detector; nv and nu must be multiples of 2^(S-1).
            geometry: scanner and reconstruction grid; ``geometry.angles`` has V angles unless
                ``angles`` is given.
            view_mask_2d: (B, V) bool, the (sparse) views whose 2D features points read; None = all.
            view_mask_3d: (B, V) bool, the views back-projected into the volume; None = view_mask_2d.
                With denoise layers the volume is built from view_mask_2d and refined instead; a given
                view_mask_3d then names the dense views whose quantized features are the denoise target.
            angles: (B, V) per-sample angles in radians overriding ``geometry.angles``.
        """
        mask_2d, mask_3d, angles = self._check_inputs(projections, geometry, view_mask_2d, view_mask_3d, angles)
        maps = self._encode_views(projections, mask_2d | mask_3d)
        m = self.config.volume_resolution

        def quantize(mask):
            out = [q(grid_features(f, geometry, m, mask, angles)) for q, f in zip(self.quantizers, maps)]
            return [o[0] for o in out], torch.stack([o[1] for o in out]).mean()

        dense = denoise_loss = None
        if self.denoise is None:
            quantized, vq_loss = quantize(mask_3d)
        else:  # finetuning step 2 / inference of a step-2 model (Eq. 11)
            noisy, vq_loss = quantize(mask_2d)
            quantized = [layer(q) for layer, q in zip(self.denoise, noisy)]
            if view_mask_3d is not None:
                with torch.no_grad():
                    dense, _ = quantize(mask_3d)
                denoise_loss = torch.stack([F.l1_loss(q, d) for q, d in zip(quantized, dense)]).mean()
        return DiceFeatures(maps=maps, view_mask=mask_2d, volume=self.decoder3d(quantized), geometry=geometry,
                            angles=angles, vq_loss=vq_loss, quantized=quantized, quantized_dense=dense,
                            denoise_loss=denoise_loss)

    def _encode_views(self, projections: torch.Tensor, used: torch.Tensor) -> list[torch.Tensor]:
        """Run the 2D encoder on the used views only (masked views cannot touch BatchNorm statistics);
        the maps of unused views are zeros."""
        b, v, nv, nu = projections.shape
        x = projections[used].unsqueeze(1).to(self._dtype) / self.config.projection_scale  # (P, 1, nv, nu)
        if len(x):
            encoded = self.encoder(x)
        else:  # not one view in the whole batch: nothing to encode
            encoded = [x.new_zeros(0, ch, nv >> s, nu >> s) for s, ch in enumerate(self.config.scale_channels)]
        maps = []
        for f in encoded:
            full = f.new_zeros(b, v, *f.shape[1:])
            full[used] = f
            maps.append(full)
        return maps

    def _check_inputs(self, projections, geometry, view_mask_2d, view_mask_3d, angles):
        if projections.dim() != 4:
            raise InputError("projections must be (batch, views, rows, columns), "
                             f"got shape {tuple(projections.shape)}")
        b, v, nv, nu = projections.shape
        k = self.config.downsampling
        if nv % k or nu % k:
            raise InputError(f"detector size {nv} x {nu} must be a multiple of {k} "
                             f"for {self.config.n_scales} scales")

        def mask(m, name):
            if m is None:
                return torch.ones(b, v, dtype=torch.bool, device=projections.device)
            m = torch.as_tensor(m, device=projections.device)
            if m.shape != (b, v):
                raise InputError(f"{name} must have shape ({b}, {v}), got {tuple(m.shape)}")
            return m.bool()

        mask_2d = mask(view_mask_2d, "view_mask_2d")
        mask_3d = mask_2d if view_mask_3d is None else mask(view_mask_3d, "view_mask_3d")
        if angles is None:
            if geometry.n_views != v:
                raise GeometryError(f"the geometry has {geometry.n_views} angles for {v} projections")
        else:
            angles = torch.as_tensor(angles, device=projections.device)
            angles = angles.expand(b, v) if angles.shape == (v,) else angles
            if angles.shape != (b, v):
                raise GeometryError(f"angles must have shape ({b}, {v}), got {tuple(angles.shape)}")
        return mask_2d, mask_3d, angles

    @property
    def _dtype(self) -> torch.dtype:
        return self.point_decoder.first.weight.dtype

    # ------------------------------------------------------------------ point decoding
    def point_features(self, features: DiceFeatures, points: torch.Tensor) -> torch.Tensor:
        """(N, 3) or (B, N, 3) mm -> (B, N, point_features): S pixel-aligned 2D features (max over the
        views), finest first, then the voxel-aligned 3D feature (paper Eq. 5-6); with ``view_pool``
        "max+mean" then the S means over the views."""
        b = features.volume.shape[0]
        points = points.to(self._dtype)
        uv = project_to_views(features.geometry, points, features.angles, batch=b)  # (B, V, N, 2)
        mean = self.config.view_pool == "max+mean"
        pooled = [pixel_features(maps, uv, features.view_mask, mean=mean) for maps in features.maps]
        batched = points if points.dim() == 3 else points.expand(b, *points.shape)
        volume = sample_volume(features.volume, features.geometry, batched)
        if mean:  # [max of every scale | 3D | mean of every scale]: a "max" model's inputs stay first
            feats = [p[0] for p in pooled] + [volume] + [p[1] for p in pooled]
        else:
            feats = pooled + [volume]
        return torch.cat(feats, dim=1).transpose(1, 2)

    def _predict(self, features: DiceFeatures, points: torch.Tensor) -> torch.Tensor:
        feats = self.point_features(features, points)                          # (B, N, C)
        return self.point_decoder(feats.reshape(-1, feats.shape[-1])).reshape(feats.shape[:2])

    def decode_points(self, features: DiceFeatures, points: torch.Tensor, chunk_size: int = 16384,
                      clamp: bool = True) -> torch.Tensor:
        """Attenuation (B, N) at (N, 3) or (B, N, 3) mm points, ``chunk_size`` points at a time.

        For inference: call in eval mode (under ``torch.no_grad()`` for whole volumes); ``clamp``
        limits the result to [0, 1]. 16384-point chunks stay in CPU caches; use more on a GPU.
        """
        n = points.shape[-2]
        pred = torch.cat([self._predict(features, points[..., i:i + chunk_size, :])
                          for i in range(0, n, chunk_size)], dim=1)
        return pred.clamp(0.0, 1.0) if clamp else pred

    @torch.no_grad()
    def predict_volume(self, projections: torch.Tensor, geometry: Geometry, view_mask: torch.Tensor | None = None,
                    angles: torch.Tensor | None = None, chunk_size: int = 16384) -> torch.Tensor:
        """(B, nz, ny, nx) attenuation in [0, 1] at the geometry's voxel centres (call in eval mode)."""
        features = self.encode(projections, geometry, view_mask, None, angles)
        points = geometry.voxel_centres(dtype=self._dtype, device=projections.device).reshape(-1, 3)
        return self.decode_points(features, points, chunk_size).reshape(-1, *geometry.volume_shape)

    def forward(self, projections: torch.Tensor, geometry: Geometry, points: torch.Tensor,
                view_mask_2d: torch.Tensor | None = None, view_mask_3d: torch.Tensor | None = None,
                angles: torch.Tensor | None = None) -> dict:
        """Training step: see ``encode`` for the arguments; ``points`` (N, 3) or (B, N, 3) mm.

        Returns a dict with 'pred' (B, N) raw attenuation (no clamp: MSE against [0, 1] targets) and
        'vq_loss'; with denoise layers also 'denoise_loss' (None without view_mask_3d),
        'quantized_sparse' (denoised, S volumes) and 'quantized_dense' (targets or None).
        """
        features = self.encode(projections, geometry, view_mask_2d, view_mask_3d, angles)
        out = {"pred": self._predict(features, points), "vq_loss": features.vq_loss}
        if self.denoise is not None:
            out.update(denoise_loss=features.denoise_loss, quantized_sparse=features.quantized,
                       quantized_dense=features.quantized_dense)
        return out

    # ------------------------------------------------------------------ groups, freezing, size
    def group_modules(self) -> dict[str, nn.Module]:
        """The trainable parts by name (paper Table 1 rows): encoder, quantization (codebooks with their
        pre/post convs), decoder3d, point_decoder and, when built, denoise."""
        groups = {"encoder": self.encoder, "quantization": self.quantizers, "decoder3d": self.decoder3d,
                  "point_decoder": self.point_decoder}
        if self.denoise is not None:
            groups["denoise"] = self.denoise
        return groups

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {name: list(m.parameters()) for name, m in self.group_modules().items()}

    def freeze(self, *groups: str) -> "DiCE":
        """Stop training ``groups``: no gradients, and they stay in eval mode through ``train()``, so
        their BatchNorm statistics and codebooks no longer move (step 2: "encoder", "quantization")."""
        modules = self.group_modules()
        for g in groups:
            if g not in modules:
                raise KeyError(f"unknown parameter group {g!r}; choose from {', '.join(modules)}")
            modules[g].requires_grad_(False)
            modules[g].eval()
            self._frozen.add(g)
        return self

    def unfreeze(self, *groups: str) -> "DiCE":
        modules = self.group_modules()
        for g in groups or tuple(self._frozen):
            modules[g].requires_grad_(True)
            modules[g].train(self.training)
            self._frozen.discard(g)
        return self

    def freeze_statistics(self) -> "DiCE":
        """Keep every BatchNorm in eval mode through ``train()``: its running statistics stay those of the
        base model while its scale and shift still learn (finetuning on a few CTs, where batches of 2
        volumes of one region would otherwise rewrite the statistics)."""
        self._statistics_frozen = True
        return self.train(self.training)

    def train(self, mode: bool = True) -> "DiCE":
        super().train(mode)
        modules = self.group_modules()
        for g in self._frozen:
            modules[g].eval()
        if self._statistics_frozen:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def num_parameters(self, include_denoise: bool = True) -> int:
        """Learned numbers, codebook entries and EMA statistics included (the released code stores them
        as nn.Parameter(requires_grad=False), so the paper's 6.0 M / 7.2 M count them)."""
        return sum(_count(m) for g, m in self.group_modules().items() if include_denoise or g != "denoise")

    def codebook_perplexity(self) -> list[float]:
        """Codes in effective use per scale (:meth:`EMAVectorQuantizer.perplexity`), finest first."""
        return [round(q.quantizer.perplexity(), 1) for q in self.quantizers]

    def summary(self) -> str:
        cfg = self.config
        parts = " + ".join(f"{g} {_count(m) / 1e6:.2f} M" for g, m in self.group_modules().items())
        return (f"DiCE S={cfg.n_scales} M={cfg.volume_resolution} channels={list(cfg.scale_channels)} "
                f"codebooks={cfg.codebook_size}: {self.num_parameters() / 1e6:.2f} M parameters ({parts})")


def _count(module: nn.Module) -> int:
    params = sum(p.numel() for p in module.parameters())
    codebooks = sum(b.numel() for name, b in module.named_buffers() if name.rsplit(".", 1)[-1] in CODEBOOK_STATE)
    return params + codebooks
