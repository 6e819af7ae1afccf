"""CRET (Ji et al., SIGIR 2022): an embedding-based retrieval model with global and local embeddings, on this
package's towers.

- **GEES** (Gaussian estimation of embedding space): a video's L2-normalised frame embeddings are modelled as a
  Gaussian N(μ, diag σ) (μ their mean, σ their per-dimension variance) and the text-to-video InfoNCE is replaced by
  its closed form under that Gaussian, `E_v[exp(⟨T, v⟩/τ)] = exp(⟨T, μ⟩/τ + ½⟨T, σ T⟩/τ²)`: the logit of (text i,
  video j) is `⟨T_i, μ_j⟩/τ + ½⟨T_i², σ_j⟩/τ²`, which is the paper's L̄_GEES with the temperature applied to the
  sampled embedding. It samples the space between frames densely without sampling frames; with σ = 0 it is
  InfoNCE on μ. We use it in both directions (softmax over videos, as the paper's formula, and over texts), like
  every CLIP-style retrieval loss; the text→video half is the formula itself.
- **CCM** (cross-modal correspondence modelling): `num_centers` learned centre queries are decoded by transformer
  decoder layers over a modality's tokens (video: every frame's patch tokens; text: the word tokens), the SAME
  queries and decoder for both modalities, so centre k of a video and centre k of a caption look for the same kind
  of content. Local embeddings Z^v, Z^t (one per centre, L2-normalised); the local similarity S_l is the mean over
  centres of the cosines ⟨Z^v_k, Z^t_k⟩, and L_CCM is InfoNCE on S_l.
- Training: `L = L_GEES + alpha * L_CCM`. Retrieval: `S = S_g + beta * S_l` with `S_g = cos(μ, T)`; the search
  embeddings are `[μ/|μ| ; sqrt(beta/K) Z^v_1..K]` and `[T ; sqrt(beta/K) Z^t_1..K]`, whose dot product is exactly S,
  so search needs no pairwise model.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput, logging

from .attention_t2v2t import attend, padding_mask_to_bias
from .configuration_cret import CRETConfig
from .losses_t2v2t import prepare_video_ids, vtc_loss
from .modeling_t2v2t import RowSelectableOutput, T2V2TPreTrainedModel
from .modeling_text_encoder import T2V2TTextTransformer, pool_text_states
from .modeling_video_encoder import T2V2TVisionTransformer

logger = logging.get_logger(__name__)


def gees_logits(text_embeds: torch.Tensor, frame_mean: torch.Tensor, frame_var: torch.Tensor,
                temperature: torch.Tensor) -> torch.Tensor:
    """(texts, videos) GEES logits `⟨T_i, μ_j⟩/τ + ½⟨T_i², σ_j⟩/τ²` = log E_{v ~ N(μ_j, diag σ_j)} exp(⟨T_i, v⟩/τ)."""
    return text_embeds @ frame_mean.T / temperature + 0.5 * (text_embeds**2) @ frame_var.T / temperature**2


def gees_loss(text_embeds: torch.Tensor, frame_mean: torch.Tensor, frame_var: torch.Tensor, temperature: torch.Tensor,
              video_ids: torch.Tensor | None = None, gather: bool = True) -> torch.Tensor:
    """
    Symmetric GEES loss with multi-positive targets, gathered across processes like `vtc_loss`.

    The GEES logit is bilinear in augmented vectors: `[T, T²/τ] · [μ, σ/2] / τ`, so this is `vtc_loss` on them
    (same gathering, same multi-positive targets).

    Args:
        text_embeds: (B, E) normalised text embeddings. frame_mean, frame_var: (B, E) mean and per-dimension
            variance of each video's normalised frame embeddings. temperature: scalar tensor.
    """
    text_augmented = torch.cat([text_embeds, text_embeds**2 / temperature], dim=-1)
    video_augmented = torch.cat([frame_mean, frame_var / 2], dim=-1)
    return vtc_loss(text_augmented, video_augmented, temperature, video_ids, gather=gather)


@dataclass
class CRETOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor`, *optional*, returned with `return_loss=True`): `loss_gees + alpha * loss_ccm`.
        loss_gees, loss_ccm (`torch.FloatTensor`, *optional*): the two terms.
        logits_per_text (`(num_texts, num_videos)`): the retrieval score `S = S_g + beta * S_l` (no temperature).
        logits_per_video: its transpose.
        text_embeds, video_embeds (`(batch, retrieval_embed_dim)`): search embeddings, `text_embeds @ video_embeds.T`
            is S.
        local_text_embeds, local_video_embeds (`(batch, num_centers, ccm_hidden_size)`): normalised Z^t, Z^v.
        frame_embeds (`(batch, frames, embed_dim)`): normalised frame embeddings.
    """

    loss: torch.FloatTensor | None = None
    loss_gees: torch.FloatTensor | None = None
    loss_ccm: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    logits_per_video: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    local_text_embeds: torch.FloatTensor | None = None
    local_video_embeds: torch.FloatTensor | None = None
    frame_embeds: torch.FloatTensor | None = None


@dataclass
class CRETTextEncoding(RowSelectableOutput):
    """`text_embeds` (B, D) search embedding; `global_embeds` (B, E) normalised T; `local_embeds` (B, K, C) Z^t."""

    text_embeds: torch.FloatTensor | None = None
    global_embeds: torch.FloatTensor | None = None
    local_embeds: torch.FloatTensor | None = None


@dataclass
class CRETVideoEncoding(RowSelectableOutput):
    """
    `video_embeds` (B, D) search embedding; `frame_embeds` (B, T, E) normalised frame embeddings (μ, σ are their
    mean and variance); `local_embeds` (B, K, C) Z^v.
    """

    video_embeds: torch.FloatTensor | None = None
    frame_embeds: torch.FloatTensor | None = None
    local_embeds: torch.FloatTensor | None = None


class CCMAttention(nn.Module):
    def __init__(self, config: CRETConfig):
        super().__init__()
        width = config.ccm_hidden_size
        self.num_heads = config.ccm_num_attention_heads
        self.dropout = config.ccm_dropout
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.o_proj = nn.Linear(width, width)

    def forward(self, queries, context, bias=None):
        dropout = self.dropout if self.training else 0.0
        out = attend(self.q_proj(queries), self.k_proj(context), self.v_proj(context), self.num_heads, bias, dropout)
        return self.o_proj(out)


class CCMDecoderLayer(GradientCheckpointingLayer):
    """Pre-LN transformer decoder layer: centres self-attend, cross-attend to the tokens, then a feed-forward."""

    def __init__(self, config: CRETConfig):
        super().__init__()
        width, eps = config.ccm_hidden_size, config.layer_norm_eps
        self.self_attn_layer_norm = nn.LayerNorm(width, eps=eps)
        self.self_attn = CCMAttention(config)
        self.cross_attn_layer_norm = nn.LayerNorm(width, eps=eps)
        self.cross_attn = CCMAttention(config)
        self.final_layer_norm = nn.LayerNorm(width, eps=eps)
        self.fc1 = nn.Linear(width, config.ccm_intermediate_size)
        self.activation_fn = ACT2FN["gelu"]
        self.fc2 = nn.Linear(config.ccm_intermediate_size, width)
        self.dropout = nn.Dropout(config.ccm_dropout)

    def forward(self, centers, tokens, token_bias=None):
        normed = self.self_attn_layer_norm(centers)
        centers = centers + self.dropout(self.self_attn(normed, normed))
        centers = centers + self.dropout(self.cross_attn(self.cross_attn_layer_norm(centers), tokens, token_bias))
        return centers + self.dropout(self.fc2(self.activation_fn(self.fc1(self.final_layer_norm(centers)))))


class CrossModalCorrespondence(nn.Module):
    """The CCM: learned centre queries and decoder layers, one instance used for both modalities."""

    def __init__(self, config: CRETConfig):
        super().__init__()
        self.centers = nn.Parameter(torch.zeros(config.num_centers, config.ccm_hidden_size))
        self.layers = nn.ModuleList([CCMDecoderLayer(config) for _ in range(config.ccm_num_layers)])
        self.layer_norm = nn.LayerNorm(config.ccm_hidden_size, eps=config.layer_norm_eps)

    def forward(self, tokens: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, C) tokens (already in the CCM width), optional (B, N) 1/0 mask -> (B, K, C) normalised Z."""
        bias = padding_mask_to_bias(token_mask, tokens.dtype) if token_mask is not None else None
        centers = self.centers[None].expand(tokens.shape[0], -1, -1)
        for layer in self.layers:
            centers = layer(centers, tokens, bias)
        return F.normalize(self.layer_norm(centers), dim=-1)


class TokenAdapter(nn.Module):
    """LayerNorm + Linear from a tower's token width to the CCM width (one per modality: their widths differ)."""

    def __init__(self, in_width: int, config: CRETConfig):
        super().__init__()
        self.layer_norm = nn.LayerNorm(in_width, eps=config.layer_norm_eps)
        self.proj = nn.Linear(in_width, config.ccm_hidden_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(self.layer_norm(tokens))


class CRETPreTrainedModel(T2V2TPreTrainedModel):
    """Shares T2V2T's initialisation of the towers and `from_vision_text_pretrained` (BEiT/ViT + BERT)."""

    config_class = CRETConfig
    config: CRETConfig
    base_model_prefix = "cret"
    _no_split_modules = ["T2V2TVisionLayer", "T2V2TTextLayer", "CCMDecoderLayer"]

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, CrossModalCorrespondence):
            init.normal_(module.centers, std=self.config.initializer_range)
        elif isinstance(module, CRETModel):
            init.constant_(module.temp_gees, self.config.temp)
            init.constant_(module.temp_ccm, self.config.temp)


class CRETModel(CRETPreTrainedModel):
    r"""
    CRET for text-to-video retrieval: `forward` returns `L_GEES + alpha * L_CCM` (with `return_loss=True`) and the
    retrieval scores; `get_text_features`/`get_video_features` are search embeddings whose dot product is
    `S = S_g + beta * S_l`.

    Example:

    ```python
    >>> import torch
    >>> from modeling_t2v2t import CRETConfig, CRETModel
    >>> config = CRETConfig(
    ...     text_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
    ...     vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
    ...                        image_size=32, patch_size=16, num_frames=4),
    ...     embed_dim=16, num_centers=4, ccm_num_attention_heads=2)
    >>> model = CRETModel(config).eval()
    >>> input_ids = torch.randint(1000, 2000, (3, 8))
    >>> out = model(input_ids=input_ids, pixel_values_videos=torch.randn(2, 4, 3, 32, 32))
    >>> torch.allclose(out.logits_per_text, out.text_embeds @ out.video_embeds.T)
    True
    ```
    """

    def __init__(self, config: CRETConfig):
        super().__init__(config)
        vision, text = config.vision_config, config.text_config
        self.vision_model = T2V2TVisionTransformer(vision)
        # fusion_layer = number of layers: every layer is text-only (no cross-attention weights).
        self.text_model = T2V2TTextTransformer(text, text.num_hidden_layers, vision.hidden_size)
        self.vision_proj = nn.Linear(vision.hidden_size, config.embed_dim)
        self.text_proj = nn.Linear(text.hidden_size, config.embed_dim)
        self.video_token_adapter = TokenAdapter(vision.hidden_size, config)
        self.text_token_adapter = TokenAdapter(text.hidden_size, config)
        self.ccm = CrossModalCorrespondence(config)  # shared by both modalities
        self.temp_gees = nn.Parameter(torch.tensor(float(config.temp)))
        self.temp_ccm = nn.Parameter(torch.tensor(float(config.temp)))
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_model.embeddings.word_embeddings

    @property
    def temperatures(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(GEES, CCM) temperatures, each clamped to `[temp_min, temp_max]`."""
        low, high = self.config.temp_min, self.config.temp_max
        return self.temp_gees.clamp(low, high), self.temp_ccm.clamp(low, high)

    def _search_embedding(self, global_embeds: torch.Tensor, local_embeds: torch.Tensor) -> torch.Tensor:
        # sqrt(beta / K) on both sides makes the dot product of the local parts beta * mean_k cos(Z^t_k, Z^v_k).
        weight = math.sqrt(self.config.beta / self.config.num_centers)
        return torch.cat([global_embeds, weight * local_embeds.flatten(1)], dim=-1)

    def encode_text(self, input_ids, attention_mask=None, token_type_ids=None) -> CRETTextEncoding:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        states = self.text_model.encode_text(input_ids, attention_mask, token_type_ids)
        sentence = pool_text_states(states, attention_mask, self.config.text_pooling)
        global_embeds = F.normalize(self.text_proj(sentence), dim=-1)
        local_embeds = self.ccm(self.text_token_adapter(states), attention_mask)
        return CRETTextEncoding(text_embeds=self._search_embedding(global_embeds, local_embeds),
                                global_embeds=global_embeds, local_embeds=local_embeds)

    def encode_video(self, pixel_values_videos) -> CRETVideoEncoding:
        vision = self.vision_model(pixel_values_videos)
        frame_embeds = F.normalize(self.vision_proj(vision.pooler_output), dim=-1)  # (B, T, E)
        local_embeds = self.ccm(self.video_token_adapter(vision.last_hidden_state.flatten(1, 2)))  # every patch token
        global_embeds = F.normalize(frame_embeds.mean(dim=1), dim=-1)
        return CRETVideoEncoding(video_embeds=self._search_embedding(global_embeds, local_embeds),
                                 frame_embeds=frame_embeds, local_embeds=local_embeds)

    def get_text_features(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """(B, retrieval_embed_dim) search embeddings `[T ; sqrt(beta/K) Z^t]`."""
        return self.encode_text(input_ids, attention_mask, token_type_ids).text_embeds

    def get_video_features(self, pixel_values_videos) -> torch.Tensor:
        """(B, retrieval_embed_dim) search embeddings `[μ/|μ| ; sqrt(beta/K) Z^v]`; `text @ video.T` is S."""
        return self.encode_video(pixel_values_videos).video_embeds

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_ids: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        return_loss: bool | None = None,
        return_dict: bool | None = None,
    ) -> CRETOutput | tuple:
        r"""
        Args:
            input_ids, attention_mask: tokenised captions (B_t, N).
            pixel_values_videos (`(B_v, T, C, H, W)`): clips from the processor.
            video_ids (`(B,)`, *optional*): integer video id of each pair; captions of the same video are all
                positives in both losses. Default: every pair is its own video.
            return_loss (`bool`, *optional*): compute `L_GEES + alpha * L_CCM` on aligned (caption i, video i) pairs.
        """
        if input_ids is None or pixel_values_videos is None:
            raise ValueError("CRETModel.forward needs both input_ids and pixel_values_videos.")
        text = self.encode_text(input_ids, attention_mask, token_type_ids)
        video = self.encode_video(pixel_values_videos)
        scores = text.text_embeds @ video.video_embeds.T
        loss = loss_gees = loss_ccm = None
        if return_loss:
            if input_ids.shape[0] != pixel_values_videos.shape[0]:
                raise ValueError(f"Training takes aligned (caption, video) pairs: got {input_ids.shape[0]} captions "
                                 f"and {pixel_values_videos.shape[0]} videos.")
            ids = prepare_video_ids(video_ids, input_ids.shape[0], input_ids.device)
            temp_gees, temp_ccm = self.temperatures
            gather = self.config.gather_distributed
            frames = video.frame_embeds.float()
            loss_gees = gees_loss(text.global_embeds.float(), frames.mean(dim=1), frames.var(dim=1, unbiased=False),
                                  temp_gees, ids, gather=gather)
            # Mean over centres of the cosines = dot product of the flattened local embeddings / K.
            scale = math.sqrt(self.config.num_centers)
            loss_ccm = vtc_loss(text.local_embeds.flatten(1).float() / scale,
                                video.local_embeds.flatten(1).float() / scale, temp_ccm, ids, gather=gather)
            loss = loss_gees + self.config.alpha * loss_ccm
        output = CRETOutput(
            loss=loss, loss_gees=loss_gees, loss_ccm=loss_ccm, logits_per_text=scores, logits_per_video=scores.T,
            text_embeds=text.text_embeds, video_embeds=video.video_embeds, local_text_embeds=text.local_embeds,
            local_video_embeds=video.local_embeds, frame_embeds=video.frame_embeds,
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()


__all__ = ["CRETPreTrainedModel", "CRETModel", "CRETOutput", "CRETTextEncoding", "CRETVideoEncoding",
           "CrossModalCorrespondence", "gees_logits", "gees_loss"]
