"""The T2V2T video encoder: a BEiT/ViT image transformer run on every frame, with a TimeSformer-style temporal
attention after each spatial block (VindLU's design).

Module and parameter names mirror transformers' `BeitModel`/`ViTModel` (v5 names: `layers.N.attention.q_proj`,
`layers.N.mlp.fc1`, ...), so an image checkpoint's state dict loads into this encoder key for key; only the
temporal modules are new. With one frame the encoder computes exactly the image model's function (plus the
first temporal position embedding row, zero when started from an image model), whatever the temporal gates: as in
VindLU, temporal attention is the identity on a 1-frame clip.
"""

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from .attention_t2v2t import DropPath, attend
from .configuration_t2v2t import T2V2TVisionConfig


def pool_frame_embeds(frame_embeds: torch.Tensor, pooling: str) -> torch.Tensor:
    """
    The video embedding (B, E) of L2-normalised frame embeddings (B, T, E). `"mean"` (VindLU): their mean, so its
    dot product with a text embedding is the mean of the per-frame cosines. `"normalized_mean"` (CLIP4Clip's meanP):
    that mean L2-normalised, so the dot product is a cosine: two frames showing different halves of a caption
    score as well together as one frame showing all of it.
    """
    pooled = frame_embeds.mean(dim=1)
    if pooling == "mean":
        return pooled
    if pooling == "normalized_mean":
        return F.normalize(pooled, dim=-1)
    raise ValueError(f"video pooling {pooling!r} is invalid: must be 'mean' or 'normalized_mean'.")


def with_frame_differences(pixel_values: torch.Tensor) -> torch.Tensor:
    """(B, T, C, H, W) -> (B, T, 2C, H, W): each frame followed by its difference from the frame before it (zero for
    the first), TSN's RGB difference (Wang et al. 2016)."""
    differences = torch.diff(pixel_values, dim=1, prepend=pixel_values[:, :1])
    return torch.cat([pixel_values, differences], dim=2)


def frame_table_rows(table: torch.Tensor, num_frames: int) -> torch.Tensor:
    """
    (1, T, 1, D) rows of a per-frame table (1, T_table, 1, D) for a T-frame clip, by VindLU's rule for its temporal
    embedding: the first T rows when T is at most the table's size (e.g. a 12-frame model on 4-frame clips), linear
    interpolation of the whole table only when T exceeds it.
    """
    if num_frames <= table.shape[1]:
        return table[:, :num_frames]
    resized = F.interpolate(table[0, :, 0].T[None], size=num_frames, mode="linear", align_corners=False)
    return resized[0].T[None, :, None, :]


@dataclass
class T2V2TVisionOutput(ModelOutput):
    """
    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch, frames, 1 + patches, hidden)`): last layer's tokens
            (after the final LayerNorm for ViT-style encoders; BEiT with mean pooling has none, as `BeitModel`).
        pooler_output (`torch.FloatTensor` of shape `(batch, frames, hidden)`): per-frame feature: LayerNorm of the
            mean patch token (mean pooling) or the [CLS] token.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): embeddings and each layer's output.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


class PatchEmbeddings(nn.Module):
    """
    Frames -> patch tokens. `patch_embedding="linear"`: BEiT/ViT's projection, one convolution of kernel and stride
    `patch_size`. `"conv_stem"` (Xiao et al. 2021): 3x3 stride-2 convolutions with BatchNorm and ReLU (in `stem`)
    shrink the frame by 2 each, then `projection` patchifies what is left (kernel = stride = patch_size / 2^n;
    Xiao et al. end with a 1x1 convolution because their stem reaches the patch grid, ours may stop short of it to
    stay cheap). The stem's overlapping small kernels see edges and corners that a 16 px linear patch projection
    must learn from scratch, which a tower trained without pretraining cannot afford.
    """

    def __init__(self, config: T2V2TVisionConfig):
        super().__init__()
        channels, stride = config.num_channels * (2 if config.frame_difference_channels else 1), config.patch_size
        self.stem = None
        if config.patch_embedding == "conv_stem":
            layers = []
            for width in config.conv_stem_channels:
                layers += [nn.Conv2d(channels, width, kernel_size=3, stride=2, padding=1, bias=False),
                           nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                channels, stride = width, stride // 2
            self.stem = nn.Sequential(*layers)
        self.projection = nn.Conv2d(channels, config.hidden_size, kernel_size=stride, stride=stride)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.stem is not None:
            pixel_values = self.stem(pixel_values)
        return self.projection(pixel_values).flatten(2).transpose(1, 2)  # (B*T, patches, D)


class T2V2TVisionEmbeddings(nn.Module):
    """[CLS] + patch embeddings, optional absolute position embeddings, and the temporal position embedding."""

    def __init__(self, config: T2V2TVisionConfig):
        super().__init__()
        self.config = config
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.patch_embeddings = PatchEmbeddings(config)
        self.position_embeddings = (
            nn.Parameter(torch.zeros(1, config.num_patches + 1, config.hidden_size))
            if config.use_absolute_position_embeddings
            else None
        )
        self.temporal_position_embeddings = (
            nn.Parameter(torch.zeros(1, config.num_frames, 1, config.hidden_size))
            if config.use_temporal_attention
            else None
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def temporal_embedding(self, num_frames: int) -> torch.Tensor:
        """(1, T, 1, D) temporal embedding for a T-frame clip (`frame_table_rows`)."""
        return frame_table_rows(self.temporal_position_embeddings, num_frames)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        batch, frames = pixel_values.shape[:2]
        if self.config.frame_difference_channels:
            pixel_values = with_frame_differences(pixel_values)
        patches = self.patch_embeddings(pixel_values.flatten(0, 1))
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        embeddings = torch.cat([cls, patches], dim=1)  # (B*T, L, D)
        if self.position_embeddings is not None:
            embeddings = embeddings + self.position_embeddings
        embeddings = embeddings.view(batch, frames, *embeddings.shape[1:])  # (B, T, L, D)
        if self.temporal_position_embeddings is not None:
            embeddings = embeddings + self.temporal_embedding(frames)
        return self.dropout(embeddings)


@functools.lru_cache(maxsize=8)
def relative_position_index(side: int) -> torch.Tensor:
    """(L, L) index into BEiT's bias table for a side x side patch grid plus [CLS] (L = side² + 1).

    Computed, not stored as a buffer: transformers 5 builds models on the meta device and would leave a
    non-persistent buffer uninitialised after `from_pretrained`.
    """
    num_relative_distance = (2 * side - 1) ** 2 + 3
    coords = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (side - 1)  # (P, P, 2), >= 0
    index = torch.zeros((side * side + 1,) * 2, dtype=torch.long)
    index[1:, 1:] = relative[..., 0] * (2 * side - 1) + relative[..., 1]
    index[0, :] = num_relative_distance - 3  # cls -> token
    index[:, 0] = num_relative_distance - 2  # token -> cls
    index[0, 0] = num_relative_distance - 1  # cls -> cls
    return index


class RelativePositionBias(nn.Module):
    """BEiT's learned relative position bias over a fixed patch grid, with three extra entries for [CLS]."""

    def __init__(self, config: T2V2TVisionConfig):
        super().__init__()
        self.side = config.image_size // config.patch_size
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * self.side - 1) ** 2 + 3, config.num_attention_heads)
        )

    def forward(self) -> torch.Tensor:
        index = relative_position_index(self.side).to(self.relative_position_bias_table.device)
        length = index.shape[0]
        bias = self.relative_position_bias_table[index.view(-1)]
        return bias.view(length, length, -1).permute(2, 0, 1)[None]  # (1, H, L, L)


class VisionSelfAttention(nn.Module):
    def __init__(self, config: T2V2TVisionConfig):
        super().__init__()
        hidden = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.dropout = config.attention_probs_dropout_prob
        self.q_proj = nn.Linear(hidden, hidden, bias=config.qkv_bias)
        self.k_proj = nn.Linear(hidden, hidden, bias=config.key_bias)
        self.v_proj = nn.Linear(hidden, hidden, bias=config.qkv_bias)
        self.o_proj = nn.Linear(hidden, hidden)

    def forward(self, hidden_states: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        dropout = self.dropout if self.training else 0.0
        out = attend(self.q_proj(hidden_states), self.k_proj(hidden_states), self.v_proj(hidden_states),
                     self.num_heads, bias, dropout)
        return self.o_proj(out)


class VisionMLP(nn.Module):
    def __init__(self, config: T2V2TVisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation_fn = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_fn(self.fc1(hidden_states)))


class TemporalAttention(nn.Module):
    """
    `x + gate * DropPath(MHA over time(LN(x)))` for every token position; `gate` is a learnable scalar. The identity
    on a 1-frame clip (images, 1-frame videos), as VindLU's timesformer block: attending over one frame would still
    add `gate * o_proj(v_proj(LN(x)))`.
    """

    def __init__(self, config: T2V2TVisionConfig, drop_path_rate: float):
        super().__init__()
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = VisionSelfAttention(config)
        self.gate = nn.Parameter(torch.tensor(float(config.temporal_scale_init_value)))
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch, frames, length, width = hidden_states.shape
        if frames == 1:
            return hidden_states
        over_time = hidden_states.transpose(1, 2).reshape(batch * length, frames, width)  # (B*L, T, D)
        update = self.attention(self.norm(over_time)).view(batch, length, frames, width).transpose(1, 2)
        return hidden_states + self.gate * self.drop_path(update)


class T2V2TVisionLayer(GradientCheckpointingLayer):
    """A BEiT/ViT block on each frame, then temporal attention across frames."""

    def __init__(self, config: T2V2TVisionConfig, drop_path_rate: float):
        super().__init__()
        self.attention = VisionSelfAttention(config)
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = VisionMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.drop_path = DropPath(drop_path_rate)
        if config.layer_scale_init_value > 0:
            self.lambda_1 = nn.Parameter(torch.full((config.hidden_size,), float(config.layer_scale_init_value)))
            self.lambda_2 = nn.Parameter(torch.full((config.hidden_size,), float(config.layer_scale_init_value)))
        else:
            self.lambda_1 = self.lambda_2 = None
        self.relative_position_bias = RelativePositionBias(config) if config.use_relative_position_bias else None
        self.temporal_attention = (
            TemporalAttention(config, drop_path_rate) if config.use_temporal_attention else None
        )

    def _scale(self, hidden_states: torch.Tensor, layer_scale: nn.Parameter | None) -> torch.Tensor:
        return hidden_states if layer_scale is None else layer_scale * hidden_states

    def forward(self, hidden_states: torch.Tensor, shared_bias: torch.Tensor | None = None) -> torch.Tensor:
        batch, frames, length, width = hidden_states.shape
        bias = shared_bias
        if self.relative_position_bias is not None:
            own_bias = self.relative_position_bias()
            bias = own_bias if bias is None else bias + own_bias

        x = hidden_states.reshape(batch * frames, length, width)  # frames are independent images here
        attn = self.dropout(self.attention(self.layernorm_before(x), bias))
        x = x + self.drop_path(self._scale(attn, self.lambda_1))
        mlp = self.dropout(self.mlp(self.layernorm_after(x)))
        x = x + self.drop_path(self._scale(mlp, self.lambda_2))
        x = x.view(batch, frames, length, width)

        if self.temporal_attention is not None:
            x = self.temporal_attention(x)
        return x


class MeanPooler(nn.Module):
    def __init__(self, config: T2V2TVisionConfig):
        super().__init__()
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.layernorm(hidden_states[..., 1:, :].mean(-2))


class T2V2TVisionTransformer(nn.Module):
    """Video encoder: `pixel_values_videos` (B, T, C, H, W) -> tokens (B, T, L, D) and frame features (B, T, D)."""

    def __init__(self, config: T2V2TVisionConfig):
        super().__init__()
        self.config = config
        self.embeddings = T2V2TVisionEmbeddings(config)
        self.shared_position_bias = (
            RelativePositionBias(config) if config.use_shared_relative_position_bias else None
        )
        rates = [config.drop_path_rate * i / max(config.num_hidden_layers - 1, 1)
                 for i in range(config.num_hidden_layers)]
        self.layers = nn.ModuleList([T2V2TVisionLayer(config, rate) for rate in rates])
        self.layernorm = (
            nn.Identity() if config.use_mean_pooling else nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        )
        self.pooler = MeanPooler(config) if config.use_mean_pooling else None

    def check_input(self, pixel_values: torch.Tensor) -> None:
        config = self.config
        expected = f"(batch, frames, {config.num_channels}, {config.image_size}, {config.image_size})"
        if pixel_values.ndim != 5:
            raise ValueError(
                f"pixel_values_videos must have shape {expected}, got {tuple(pixel_values.shape)} "
                f"(a 4-d tensor is a single video or a batch of images: add the missing axis)."
            )
        _, frames, channels, height, width = pixel_values.shape
        if frames < 1 or channels != config.num_channels or height != config.image_size or width != config.image_size:
            raise ValueError(
                f"pixel_values_videos must have shape {expected}, got {tuple(pixel_values.shape)}; "
                "the video processor's size must equal vision_config.image_size."
            )

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool = False) -> T2V2TVisionOutput:
        self.check_input(pixel_values)
        hidden_states = self.embeddings(pixel_values.to(self.embeddings.cls_token.dtype))
        shared_bias = self.shared_position_bias() if self.shared_position_bias is not None else None
        all_hidden = (hidden_states,) if output_hidden_states else None
        for layer in self.layers:
            hidden_states = layer(hidden_states, shared_bias)
            if output_hidden_states:
                all_hidden = all_hidden + (hidden_states,)
        last = self.layernorm(hidden_states)
        pooled = self.pooler(last) if self.pooler is not None else last[:, :, 0]
        return T2V2TVisionOutput(last_hidden_state=last, pooler_output=pooled, hidden_states=all_hidden)


__all__ = ["T2V2TVisionTransformer", "T2V2TVisionOutput", "pool_frame_embeds", "frame_table_rows"]
