"""Cross-modal landmark decoder of CMFA (SLPT-style, pre-norm), on fused attention.

One layer, as in the authors' ``Transformer_event.py`` (``normalize_before=True``)::

    x = x + RGBAttn(q=LN1(x) + query_pos, k=rgb + rgb_pos, v=rgb)       # landmark queries -> RGB
    x = x + SelfAttn(q=k=LN2(x) + query_pos, v=LN2(x))                   # landmark <-> landmark
    x = x + EventAttn(q=LN3(x) + query_pos, k=event + event_pos, v=event)  # -> event patch tokens
    x = x + FFN(LN4(x))

The decoder starts from zeros, runs L such layers and returns every layer's output through a shared
final LayerNorm (the authors supervise all layers). Memory tokens are one embedded patch per
landmark, so attention is N x N per head.

Missing modality: when a modality's tokens are absent (input ``None``) or masked out for a sample,
its attention is evaluated as if every memory token were a learned "missing" token ``m``. Because
all values are then equal, the softmax weights do not matter and the attention output is exactly
``W_o (W_v m + b_v) + b_o`` -- computed once per layer instead of attending over N copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import Tensor, nn


@dataclass(frozen=True)
class Memory:
    """Patch tokens of one modality for the decoder.

    Attributes:
        tokens: (B, N, d) embedded patches, or None when the modality is absent for the batch.
        pos: (1, N, d) structure encoding added to the keys.
        missing: (d,) learned token that stands for an absent modality.
        present: (B,) bool, False where a sample's modality is dropped; None = all present.
    """

    tokens: Tensor | None
    pos: Tensor
    missing: Tensor
    present: Tensor | None = None


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v inputs on ``F.scaled_dot_product_attention``.

    Args:
        d_model: Width d.
        num_heads: Heads H (d divisible by H).
        dropout: Attention-weight dropout (training only).
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        """Attend.

        Args:
            query: (B, Nq, d).
            key: (B, Nk, d).
            value: (B, Nk, d).

        Returns:
            (B, Nq, d).
        """
        b, nq, d = query.shape
        q = self._heads(self.q_proj(query))
        k = self._heads(self.k_proj(key))
        v = self._heads(self.v_proj(value))
        p = self.dropout if self.training else 0.0
        o = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.out_proj(o.transpose(1, 2).reshape(b, nq, d))

    def constant_output(self, token: Tensor) -> Tensor:
        """Output when every value equals ``token`` (d,): ``(d,)``, independent of the query."""
        return self.out_proj(self.v_proj(token))


class CrossModalLayer(nn.Module):
    """RGB cross-attention -> self-attention -> event cross-attention -> FFN (pre-norm).

    Args:
        d_model: Width d.
        num_heads: Attention heads.
        ffn_dim: Feed-forward hidden width.
        dropout: Dropout on attention weights and residual branches.
    """

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.rgb_attn = Attention(d_model, num_heads, dropout)
        self.self_attn = Attention(d_model, num_heads, dropout)
        self.event_attn = Attention(d_model, num_heads, dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(4))
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(ffn_dim, d_model),
        )
        self.drop = nn.Dropout(dropout)

    @staticmethod
    def _cross(attn: Attention, x: Tensor, query_pos: Tensor, mem: Memory) -> Tensor:
        if mem.tokens is None:
            return attn.constant_output(mem.missing).expand_as(x)
        out = attn(x + query_pos, mem.tokens + mem.pos, mem.tokens)
        if mem.present is not None:
            out = torch.where(mem.present[:, None, None], out, attn.constant_output(mem.missing))
        return out

    def forward(self, x: Tensor, query_pos: Tensor, rgb: Memory, event: Memory) -> Tensor:
        """One decoder layer.

        Args:
            x: (B, N, d) landmark states.
            query_pos: (1, N, d) landmark queries.
            rgb: RGB patch tokens.
            event: Event patch tokens.

        Returns:
            (B, N, d) updated states.
        """
        n1, n2, n3, n4 = self.norms
        x = x + self.drop(self._cross(self.rgb_attn, n1(x), query_pos, rgb))
        h = n2(x)
        qk = h + query_pos
        x = x + self.drop(self.self_attn(qk, qk, h))
        x = x + self.drop(self._cross(self.event_attn, n3(x), query_pos, event))
        return x + self.drop(self.ffn(n4(x)))


class CrossModalDecoder(nn.Module):
    """L cross-modal layers from a zero state; returns all layers' normalised outputs.

    Args:
        d_model: Width d.
        num_heads: Attention heads.
        num_layers: Layers L.
        ffn_dim: Feed-forward hidden width.
        dropout: Dropout.
    """

    def __init__(
        self, d_model: int, num_heads: int, num_layers: int, ffn_dim: int, dropout: float
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            CrossModalLayer(d_model, num_heads, ffn_dim, dropout) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(self, query_pos: Tensor, rgb: Memory, event: Memory, batch: int) -> Tensor:
        """Decode.

        Args:
            query_pos: (1, N, d) landmark queries.
            rgb: RGB patch tokens.
            event: Event patch tokens.
            batch: Batch size B.

        Returns:
            (B, L, N, d) output of every layer after the final LayerNorm.
        """
        x = query_pos.new_zeros(batch, query_pos.shape[1], query_pos.shape[2])
        outs = []
        for layer in self.layers:
            x = layer(x, query_pos, rgb, event)
            outs.append(self.norm(x))
        return torch.stack(outs, dim=1)
