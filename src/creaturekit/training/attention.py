"""Recording the UNet's cross-attention maps at one resolution, and nothing else.

:func:`install_attention_recorder` gives every cross-attention layer a processor that
computes attention with SDPA as usual, except at the chosen resolution (e.g. 16x16),
where it computes the probabilities explicitly and adds their head average to a running
sum. Only that sum (B, H*W, tokens) is kept, never a list of every layer's maps.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


class AttentionStore:
    """Running sum of head-averaged cross-attention probabilities at one resolution."""

    def __init__(self, resolution: int) -> None:
        self.resolution = resolution
        self.active = True
        self._sum: torch.Tensor | None = None
        self._count = 0

    def reset(self) -> None:
        self._sum, self._count = None, 0

    def add(self, probs: torch.Tensor) -> None:
        self._sum = probs if self._sum is None else self._sum + probs
        self._count += 1

    @property
    def layers(self) -> int:
        """How many layers were recorded since the last reset."""
        return self._count

    def maps(self) -> torch.Tensor:
        """Mean over the recorded layers: (B, resolution**2, tokens)."""
        if self._sum is None:
            raise RuntimeError(
                f"No cross-attention layer ran at {self.resolution}x{self.resolution}; "
                "choose a resolution the UNet has."
            )
        return self._sum / self._count


class RecordingAttnProcessor:
    """A cross-attention processor that records probabilities at the store's resolution."""

    def __init__(self, store: AttentionStore) -> None:
        self.store = store

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **_kwargs: Any,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch, seq, _ = hidden_states.shape
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        heads = attn.heads
        if self.store.active and seq == self.store.resolution**2:
            mask = attn.prepare_attention_mask(attention_mask, context.shape[1], batch)
            q, k, v = (attn.head_to_batch_dim(t) for t in (query, key, value))
            probs = attn.get_attention_scores(q, k, mask)  # (B*heads, seq, tokens)
            self.store.add(probs.view(batch, heads, seq, -1).mean(1))
            out = attn.batch_to_head_dim(torch.bmm(probs, v))
        else:
            mask = None
            if attention_mask is not None:
                mask = attn.prepare_attention_mask(attention_mask, context.shape[1], batch)
                mask = mask.view(batch, heads, -1, mask.shape[-1])
            q, k, v = (
                t.view(batch, -1, heads, t.shape[-1] // heads).transpose(1, 2)
                for t in (query, key, value)
            )
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            out = out.transpose(1, 2).reshape(batch, -1, heads * q.shape[-1]).to(q.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def install_attention_recorder(unet: Any, resolution: int) -> AttentionStore:
    """Give every cross-attention layer of ``unet`` a recording processor; return the store."""
    store = AttentionStore(resolution)
    processors = {}
    for name, processor in unet.attn_processors.items():
        is_cross = name.endswith("attn2.processor")
        processors[name] = RecordingAttnProcessor(store) if is_cross else processor
    unet.set_attn_processor(processors)
    return store


def cross_attention_sides(unet_config: Any, latent_side: int) -> set[int]:
    """The sides of the attention maps of ``unet_config``'s cross-attention layers for
    latents of ``latent_side``: SD 1.5 at 512 px has 64, 32, 16 and 8 (its middle block);
    SDXL at 1024 px has 64 and 32 (no cross-attention at its top level, none lower)."""
    sides = {
        latent_side // 2**level
        for level, kind in enumerate(unet_config.down_block_types)
        if "CrossAttn" in kind
    }
    mid = getattr(unet_config, "mid_block_type", None) or "UNetMidBlock2DCrossAttn"
    if "CrossAttn" in mid:
        sides.add(latent_side // 2 ** (len(unet_config.down_block_types) - 1))
    return sides
