"""CMFA: cross-modal (RGB + event) face alignment with a sparse local patch transformer.

Follows the authors' released model (iulab-hongik/CMFA-SSMER ``CMFA/model.py``, itself built on
SLPT, Jiahao-UTS/SLPT-master): two backbones give stride-4 feature maps; starting from a mean
shape, each coarse-to-fine stage samples a P x P grid of features in a box of half-width ``h_s``
cells around every landmark (bilinear), embeds each patch into one token (the authors' P x P conv
is a linear map of the flattened patch), runs the cross-modal decoder
(:mod:`facealign_ros.model.transformer`) and regresses, per layer, an offset inside the box:
``landmark = box_min + box_len * offset``. Decoder, embeddings and heads are shared by all stages
(as the authors'); the next stage starts from the previous stage's last-layer landmarks, detached.

Coordinates: landmarks are (x, y) in [0, 1] of the input crop, 0 = left/top edge and 1 = right/
bottom edge of the crop (pixel centre i is at (i + 0.5) / size); features are sampled with
``grid_sample(align_corners=False)`` in the same convention.

Beyond the paper: a per-landmark confidence head (sigmoid of a logit trained to predict
``exp(-error / tau)``, see :mod:`facealign_ros.model.loss`); modality dropout through learned
missing-modality tokens, so one set of weights runs fused, event-only (``rgb=None``) and RGB-only
(``event=None``); warm start from given landmarks running only the finest ``stages`` stages.

Cost (lite): patches are sampled from a ``feature_dim``-channel map that the backbone head already
projected once, so per-landmark work is one small matmul per stage and modality; attention is
N x N per head with fused SDPA; absent modalities cost one vector per layer.
"""

from __future__ import annotations

import math
from typing import TypedDict

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import Tensor, nn

from facealign_ros.model.backbones import build_backbone
from facealign_ros.model.config import CMFAConfig
from facealign_ros.model.transformer import CrossModalDecoder, Memory

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CMFAOutput(TypedDict):
    """What :meth:`CMFA.forward` returns (always all keys).

    Keys:
        landmarks: (B, N, 2) final landmarks in [0, 1] crop coordinates.
        confidence: (B, N) per-landmark confidence in [0, 1] of the final landmarks.
        stage_landmarks: (B, S, L, N, 2) every stage's every decoder layer (S = stages run).
        stage_confidence_logits: (B, S, N) confidence logits of each stage's last layer.
    """

    landmarks: Tensor
    confidence: Tensor
    stage_landmarks: Tensor
    stage_confidence_logits: Tensor


def default_mean_shape(num_points: int) -> np.ndarray:
    """Placeholder start shape: N points on a centred ellipse, (N, 2) float32 in [0, 1].

    Real models store the mean of their training landmarks (see :func:`mean_shape_from`).
    """
    a = np.linspace(0.0, 2.0 * math.pi, num_points, endpoint=False)
    return np.stack([0.5 + 0.3 * np.cos(a), 0.5 + 0.35 * np.sin(a)], axis=1).astype(np.float32)


def mean_shape_from(landmarks: np.ndarray | Tensor) -> np.ndarray:
    """Mean of training landmarks ``(M, N, 2)`` in [0, 1] crop coords -> ``(N, 2)`` float32."""
    arr = np.asarray(landmarks, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise ValueError(f"landmarks must be (M, N, 2), got {arr.shape}")
    return np.clip(arr.mean(axis=0), 0.0, 1.0).astype(np.float32)


def patch_grid(anchors: Tensor, half: float, unit: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Sampling grid of a P x P patch around each anchor, boxes clamped to the crop (as SLPT).

    Args:
        anchors: (B, N, 2) box centres (x, y) in [0, 1].
        half: Box half-width in normalised units (cells / feature size).
        unit: (P,) grid positions in [0, 1] across the box.

    Returns:
        ``(grid, box_min, box_len)``: (B, N, P*P, 2) grid in grid_sample's [-1, 1] units with x
        varying fastest, (B, N, 2) box corner and (B, N, 2) box side in [0, 1] units.
    """
    b, n = anchors.shape[:2]
    p = unit.shape[0]
    lo = (anchors - half).clamp(0.0, 1.0)
    length = (anchors + half).clamp(0.0, 1.0) - lo
    pts = lo.unsqueeze(2) + length.unsqueeze(2) * unit.view(1, 1, p, 1)  # (B, N, P, 2)
    gx = pts[..., 0].unsqueeze(2).expand(b, n, p, p)
    gy = pts[..., 1].unsqueeze(3).expand(b, n, p, p)
    grid = torch.stack((gx, gy), dim=-1).reshape(b, n, p * p, 2) * 2.0 - 1.0
    return grid, lo, length


def sample_patches(fmap: Tensor, grid: Tensor) -> Tensor:
    """Bilinear samples of ``fmap`` (B, C, H, W) at ``grid`` (B, N, Q, 2) -> (B, N, Q*C)."""
    b, c = fmap.shape[:2]
    n, q = grid.shape[1:3]
    s = F.grid_sample(fmap, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return s.permute(0, 2, 3, 1).reshape(b, n, q * c)


class CMFA(nn.Module):
    """The CMFA network for any :class:`CMFAConfig`.

    Args:
        config: Network configuration.
        mean_shape: (N, 2) start shape in [0, 1]; defaults to :func:`default_mean_shape`.
            Stored as a buffer (and so in checkpoints).
    """

    def __init__(self, config: CMFAConfig, mean_shape: np.ndarray | Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        n, d, p, c = config.num_points, config.d_model, config.patch_size, config.feature_dim
        self.rgb_backbone = build_backbone(config, config.rgb_channels)
        self.event_backbone = build_backbone(config, config.event_channels)
        self.rgb_embed = nn.Linear(p * p * c, d, bias=False)
        self.event_embed = nn.Linear(p * p * c, d, bias=False)
        self.query_pos = nn.Parameter(torch.empty(n, d))
        self.rgb_pos = nn.Parameter(torch.empty(n, d))
        self.event_pos = nn.Parameter(torch.empty(n, d))
        self.rgb_missing = nn.Parameter(torch.empty(d))
        self.event_missing = nn.Parameter(torch.empty(d))
        self.decoder = CrossModalDecoder(
            d, config.num_heads, config.num_layers, config.ffn_dim, config.dropout
        )
        self.offset_head = nn.Linear(d, 2)
        self.confidence_head = nn.Linear(d, 1)
        shape = default_mean_shape(n) if mean_shape is None else mean_shape
        shape_t = torch.as_tensor(np.asarray(shape, dtype=np.float32))
        if shape_t.shape != (n, 2):
            raise ValueError(f"mean_shape must be ({n}, 2), got {tuple(shape_t.shape)}")
        self.register_buffer("mean_shape", shape_t.clone())
        ch = config.rgb_channels
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if ch == 3 else ((0.45,), (0.226,))
        self.register_buffer("rgb_mean", torch.tensor(mean).expand(ch).reshape(1, ch, 1, 1), False)
        self.register_buffer("rgb_std", torch.tensor(std).expand(ch).reshape(1, ch, 1, 1), False)
        self.register_buffer("unit", torch.linspace(0.0, 1.0, p), persistent=False)
        self._reset_head()

    def _reset_head(self) -> None:
        for name, prm in self.named_parameters():
            if name.startswith(("decoder.", "rgb_embed", "event_embed")) and prm.dim() > 1:
                nn.init.xavier_uniform_(prm)
            elif name.startswith("decoder.") and name.endswith(".bias"):
                nn.init.zeros_(prm)
        for prm in (self.query_pos, self.rgb_pos, self.event_pos):
            nn.init.xavier_uniform_(prm)
        for prm in (self.rgb_missing, self.event_missing):
            nn.init.normal_(prm, std=0.02)
        # Start every stage as "stay at the box centre": offset 0.5 of the box (the authors' init
        # is random); small weights keep gradients flowing into the decoder from step one.
        nn.init.normal_(self.offset_head.weight, std=1e-3)
        nn.init.constant_(self.offset_head.bias, 0.5)
        nn.init.normal_(self.confidence_head.weight, std=1e-3)
        nn.init.zeros_(self.confidence_head.bias)

    def _modality_masks(
        self, batch: int, device: torch.device, rgb_on: Tensor | None, ev_on: Tensor | None
    ) -> tuple[Tensor | None, Tensor | None]:
        cfg = self.config
        if not self.training or rgb_on is not None or ev_on is not None:
            return rgb_on, ev_on
        if cfg.p_drop_rgb == 0.0 and cfg.p_drop_event == 0.0:
            return None, None
        u = torch.rand(batch, device=device)
        drop_rgb = u < cfg.p_drop_rgb
        drop_ev = (u >= cfg.p_drop_rgb) & (u < cfg.p_drop_rgb + cfg.p_drop_event)
        return ~drop_rgb, ~drop_ev

    def stage_indices(self, stages: int | None, warm: bool) -> list[int]:
        """Stage indices to run: the first ``stages`` from the mean shape, the last ones if warm."""
        total = self.config.num_stages
        k = total if stages is None else stages
        if not 1 <= k <= total:
            raise ValueError(f"stages must be in [1, {total}], got {stages}")
        return list(range(total - k, total)) if warm else list(range(k))

    def forward(
        self,
        rgb: Tensor | None,
        event: Tensor | None,
        *,
        init_landmarks: Tensor | None = None,
        stages: int | None = None,
        rgb_present: Tensor | None = None,
        event_present: Tensor | None = None,
    ) -> CMFAOutput:
        """Align landmarks on a batch of crops.

        Args:
            rgb: (B, rgb_channels, S, S) RGB/mono crop with values in [0, 1] (normalised
                inside), or None for event-only.
            event: (B, event_channels, S, S) event representation, or None for RGB-only.
            init_landmarks: (B, N, 2) warm-start landmarks in [0, 1] (e.g. the previous frame's,
                in this crop's coordinates); None starts from the mean shape.
            stages: Number of stages to run (default all); with ``init_landmarks`` the finest
                ``stages`` stages run, otherwise the first ``stages``.
            rgb_present: (B,) bool, False to replace a sample's RGB by the missing token. In
                training mode and when both masks are None, masks are drawn with the config's
                modality-dropout probabilities.
            event_present: (B,) bool, the same for events.

        Returns:
            :class:`CMFAOutput`.
        """
        if rgb is None and event is None:
            raise ValueError("CMFA needs at least one of rgb and event")
        batch = event.shape[0] if event is not None else rgb.shape[0]  # type: ignore[union-attr]
        rgb_present, event_present = self._modality_masks(
            batch, self.mean_shape.device, rgb_present, event_present
        )
        return self.decode(
            self.encode_rgb(rgb),
            self.encode_event(event),
            init_landmarks=init_landmarks,
            stages=stages,
            rgb_present=rgb_present,
            event_present=event_present,
        )

    def encode_rgb(self, rgb: Tensor | None) -> Tensor | None:
        """RGB backbone: (B, rgb_channels, S, S) in [0, 1] -> (B, feature_dim, S/4, S/4)."""
        return None if rgb is None else self.rgb_backbone((rgb - self.rgb_mean) / self.rgb_std)

    def encode_event(self, event: Tensor | None) -> Tensor | None:
        """Event backbone: (B, event_channels, S, S) -> (B, feature_dim, S/4, S/4)."""
        return None if event is None else self.event_backbone(event)

    def decode(
        self,
        rgb_map: Tensor | None,
        ev_map: Tensor | None,
        *,
        init_landmarks: Tensor | None = None,
        stages: int | None = None,
        rgb_present: Tensor | None = None,
        event_present: Tensor | None = None,
    ) -> CMFAOutput:
        """The coarse-to-fine stages on backbone feature maps (see :meth:`forward`).

        Args:
            rgb_map: :meth:`encode_rgb` output, or None (RGB absent).
            ev_map: :meth:`encode_event` output, or None (events absent).
            init_landmarks: as in :meth:`forward`.
            stages: as in :meth:`forward`.
            rgb_present: per-sample RGB mask (None: all present); not drawn here.
            event_present: per-sample event mask (None: all present).
        """
        if rgb_map is None and ev_map is None:
            raise ValueError("CMFA needs at least one of rgb and event")
        batch = ev_map.shape[0] if ev_map is not None else rgb_map.shape[0]  # type: ignore[union-attr]
        cfg = self.config
        idx = self.stage_indices(stages, warm=init_landmarks is not None)
        if init_landmarks is None:
            anchors = self.mean_shape.unsqueeze(0).expand(batch, -1, -1)
        else:
            want, got = (batch, cfg.num_points, 2), tuple(init_landmarks.shape)
            if not torch.jit.is_tracing() and got != want:
                raise ValueError(f"init_landmarks must be {want}, got {got}")
            anchors = init_landmarks.detach().to(self.mean_shape.dtype)
        query_pos, rgb_pos, ev_pos = (
            t.unsqueeze(0) for t in (self.query_pos, self.rgb_pos, self.event_pos)
        )

        stage_lms: list[Tensor] = []
        stage_conf: list[Tensor] = []
        for s in idx:
            half = cfg.half_widths[s] / cfg.feature_size
            grid, box_min, box_len = patch_grid(anchors, half, self.unit)
            rgb_tok = None if rgb_map is None else self.rgb_embed(sample_patches(rgb_map, grid))
            ev_tok = None if ev_map is None else self.event_embed(sample_patches(ev_map, grid))
            hidden = self.decoder(
                query_pos,
                Memory(rgb_tok, rgb_pos, self.rgb_missing, rgb_present),
                Memory(ev_tok, ev_pos, self.event_missing, event_present),
                batch,
            )  # (B, L, N, d)
            lms = box_min.unsqueeze(1) + box_len.unsqueeze(1) * self.offset_head(hidden)
            stage_lms.append(lms)
            stage_conf.append(self.confidence_head(hidden[:, -1]).squeeze(-1))
            anchors = lms[:, -1].detach()

        conf_logits = torch.stack(stage_conf, dim=1)
        return CMFAOutput(
            landmarks=stage_lms[-1][:, -1],
            confidence=torch.sigmoid(conf_logits[:, -1]),
            stage_landmarks=torch.stack(stage_lms, dim=1),
            stage_confidence_logits=conf_logits,
        )
