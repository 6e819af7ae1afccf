"""X-Pool (Gorti et al., CVPR 2022): text-conditioned attention pooling of frame embeddings, as in its public code.

A caption attends over a video's frames: with a shared LayerNorm on the text feature t and the frame features F,
`q = Wq·t`, `K = Wk·F`, `V = Wv·F` (identity-initialised weights, zero biases), attention `softmax(K·q/√d)` over the
frames (with `num_attention_heads` > 1, per head on slices of width d, the heads' outputs side by side, as X-Pool's
`MultiHeadedAttention`), `a = LN(out_proj(Vᵀ·attention))`, then `LN(a + Dropout(W·a))`. That gives one
pooled video embedding per (text, video) pair; the score is its cosine with the raw text feature, trained with a
symmetric InfoNCE scaled by CLIP's logit scale (kept at most ln 100 by clamping the parameter, as X-Pool does,
so it keeps its gradient).

The `Dropout` is drawn per (text, video) pair: X-Pool's 0.3 suits pretrained CLIP towers, not from-scratch ones
(see `XPoolConfig.pooling_dropout`).

Since the pooled embedding depends on the text, all-pairs similarity is not one matrix product: K and V depend
only on the video, so `encode_video` caches them and `retrieval_similarity` pools for one chunk of texts at a time
(memory: chunk x videos x embed_dim).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .configuration_xpool import XPoolConfig
from .losses_t2v2t import gather_batches, is_distributed, multi_positive_cross_entropy, prepare_video_ids
from .modeling_t2v2t import RowSelectableOutput, T2V2TPreTrainedModel
from .modeling_text_encoder import T2V2TTextTransformer, pool_text_states
from .modeling_video_encoder import T2V2TVisionTransformer

logger = logging.get_logger(__name__)


@dataclass
class XPoolOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor`, *optional*, returned with `return_loss=True`): symmetric InfoNCE.
        logits_per_text (`(num_texts, num_videos)`): logit scale x cosine(text, video pooled for that text).
        logits_per_video (`(num_videos, num_texts)`): its transpose.
        text_embeds (`(num_texts, embed_dim)`): L2-normalised text features.
        frame_embeds (`(num_videos, frames, embed_dim)`): the frame features the pooling attends over.
    """

    loss: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    logits_per_video: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    frame_embeds: torch.FloatTensor | None = None


@dataclass
class XPoolTextEncoding(RowSelectableOutput):
    """`text_embeds` (B, E) normalised, for candidate search; `text_features` (B, E) raw, the pooling's query."""

    text_embeds: torch.FloatTensor | None = None
    text_features: torch.FloatTensor | None = None


@dataclass
class XPoolVideoEncoding(RowSelectableOutput):
    """
    What a video contributes to any (text, video) score, computed once per video: `frame_keys`/`frame_values`
    (B, T, E) of the pooling attention, and `frame_embeds` (B, T, E) the raw frame features. `video_embeds` (B, E):
    normalised mean of the normalised frame features, a text-independent embedding for candidate search only.
    """

    video_embeds: torch.FloatTensor | None = None
    frame_embeds: torch.FloatTensor | None = None
    frame_keys: torch.FloatTensor | None = None
    frame_values: torch.FloatTensor | None = None


class IdentityInitLinear(nn.Linear):
    """A square `nn.Linear` that `_init_weights` starts as the identity with zero bias (X-Pool's init)."""


class TextConditionedPooling(nn.Module):
    """X-Pool's pooling module (`Transformer` in its code); names follow that code."""

    def __init__(self, config: XPoolConfig):
        super().__init__()
        width = config.embed_dim
        self.num_heads = config.num_attention_heads
        self.head_dim = width // self.num_heads
        self.layer_norm1 = nn.LayerNorm(width, eps=config.layer_norm_eps)  # shared by text and frames
        self.q_proj = IdentityInitLinear(width, width)
        self.k_proj = IdentityInitLinear(width, width)
        self.v_proj = IdentityInitLinear(width, width)
        self.out_proj = IdentityInitLinear(width, width)
        self.layer_norm2 = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.linear_proj = IdentityInitLinear(width, width)
        self.dropout = nn.Dropout(config.pooling_dropout)
        self.layer_norm3 = nn.LayerNorm(width, eps=config.layer_norm_eps)

    def keys_values(self, frame_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, E) frame features -> keys and values (B, T, E); they do not depend on the text."""
        frames = self.layer_norm1(frame_features)
        return self.k_proj(frames), self.v_proj(frames)

    def forward(self, text_features: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                output_attentions: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Pool every video for every text.

        Args:
            text_features: (Nt, E) raw text features. keys, values: (Nv, T, E) from `keys_values`.
        Returns:
            pooled (Nt, Nv, E), and the attention over frames (Nt, Nv, heads, T) if `output_attentions`.
        """
        num_texts, num_videos, frames = text_features.shape[0], keys.shape[0], keys.shape[1]
        query = self.q_proj(self.layer_norm1(text_features)).view(num_texts, self.num_heads, self.head_dim)
        keys = keys.view(num_videos, frames, self.num_heads, self.head_dim)
        values = values.view(num_videos, frames, self.num_heads, self.head_dim)
        logits = torch.einsum("nhd,vthd->nvht", query, keys) / math.sqrt(self.head_dim)
        attention = logits.softmax(dim=-1)
        attended = torch.einsum("nvht,vthd->nvhd", attention, values).reshape(num_texts, num_videos, -1)
        pooled = self.layer_norm2(self.out_proj(attended))
        pooled = self.layer_norm3(pooled + self.dropout(self.linear_proj(pooled)))
        return pooled, (attention if output_attentions else None)

    def similarity(self, text_features: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """(Nt, Nv) cosine between each raw text feature and every video pooled for that text."""
        pooled, _ = self(text_features, keys, values)
        return torch.einsum("ne,nve->nv", F.normalize(text_features, dim=-1), F.normalize(pooled, dim=-1))


class XPoolPreTrainedModel(T2V2TPreTrainedModel):
    """Shares T2V2T's initialisation of the towers and `from_vision_text_pretrained` (BEiT/ViT + BERT)."""

    config_class = XPoolConfig
    config: XPoolConfig
    base_model_prefix = "xpool"
    _no_split_modules = ["T2V2TVisionLayer", "T2V2TTextLayer", "CLIPEncoderLayer"]

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        # On the Linear itself: transformers skips custom-code modules without parameters of their own.
        if isinstance(module, IdentityInitLinear):
            # X-Pool starts every projection as the identity, so the pooling starts as LayerNorm'd frame averages.
            init.eye_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, XPoolModel) and module.config.backbone == "towers":
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)


class XPoolModel(XPoolPreTrainedModel):
    r"""
    X-Pool for text-to-video retrieval. `forward` returns the symmetric InfoNCE loss (with `return_loss=True`) and
    the all-pairs logits; `encode_text`/`encode_video` + `retrieval_similarity` score a gallery with each video
    encoded once; `get_text_features`/`get_video_features` give text-independent embeddings for candidate search.

    Example:

    ```python
    >>> import torch
    >>> from modeling_t2v2t import XPoolConfig, XPoolModel
    >>> config = XPoolConfig(
    ...     text_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
    ...     vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
    ...                        image_size=32, patch_size=16, num_frames=4),
    ...     embed_dim=16)
    >>> model = XPoolModel(config).eval()
    >>> input_ids = torch.randint(1000, 2000, (3, 8))
    >>> out = model(input_ids=input_ids, pixel_values_videos=torch.randn(2, 4, 3, 32, 32))
    >>> out.logits_per_text.shape
    torch.Size([3, 2])
    ```
    """

    def __init__(self, config: XPoolConfig):
        super().__init__(config)
        if config.backbone == "clip":
            self.clip = CLIPModel(config.clip_config)
        else:
            vision, text = config.vision_config, config.text_config
            self.vision_model = T2V2TVisionTransformer(vision)
            # fusion_layer = number of layers: every layer is text-only (no cross-attention weights).
            self.text_model = T2V2TTextTransformer(text, text.num_hidden_layers, vision.hidden_size)
            self.vision_proj = nn.Linear(vision.hidden_size, config.embed_dim)
            self.text_proj = nn.Linear(text.hidden_size, config.embed_dim)
            self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self.pooling = TextConditionedPooling(config)
        self.post_init()

    @classmethod
    def from_clip_pretrained(cls, clip_model_name_or_path: str, **config_kwargs) -> "XPoolModel":
        """
        X-Pool on a transformers `CLIPModel` checkpoint (local folder or Hub id), as in the paper
        (`openai/clip-vit-base-patch32`): CLIP's weights and logit scale are copied, the pooling starts at its
        identity initialisation. `config_kwargs` are other `XPoolConfig` fields (`pooling_dropout`, ...).
        """
        clip = CLIPModel.from_pretrained(clip_model_name_or_path)
        config = cls.config_class(backbone="clip", clip_config=clip.config.to_dict(), **config_kwargs)
        model = cls(config)
        model.clip.load_state_dict(clip.state_dict())
        logger.info("X-Pool on CLIP %s (logit scale %.3f); the pooling is newly initialised.",
                    clip_model_name_or_path, float(model.clip.logit_scale.detach()))
        return model

    def get_input_embeddings(self) -> nn.Embedding:
        if self.config.backbone == "clip":
            return self.clip.get_input_embeddings()
        return self.text_model.embeddings.word_embeddings

    @property
    def logit_scale_value(self) -> torch.Tensor:
        """
        exp(log logit scale), at most exp(`logit_scale_max`): CLIP's own parameter with the CLIP backbone.

        X-Pool's trainer clamps the parameter in place after each optimizer step, so the forward pass uses it
        unclamped and it always gets its gradient. Clamping inside the forward pass instead (`clamp(max=...)`) would
        cut the gradient whenever the parameter sits above the bound, as CLIP's pretrained value (4.6052 > ln 100)
        does. So in training the parameter itself is clamped in place before use (the same sequence as X-Pool's:
        step, clamp, forward); outside training it is only read through a clamp.
        """
        parameter = self.clip.logit_scale if self.config.backbone == "clip" else self.logit_scale
        bound = self.config.logit_scale_max
        if self.training and torch.is_grad_enabled():
            if bool(parameter.detach() > bound):  # in place only when needed: no version bump in the common case
                with torch.no_grad():
                    parameter.clamp_(max=bound)
            return parameter.exp()
        return parameter.clamp(max=bound).exp()

    # ----- features -------------------------------------------------------------------------------------------
    def text_features(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """(B, E) raw text features: CLIP's projected text embedding, or the text tower's projected sentence feature
        (`config.text_pooling`: its [CLS] state, or the mean over real tokens)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if self.config.backbone == "clip":
            return self.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        states = self.text_model.encode_text(input_ids, attention_mask, token_type_ids)
        return self.text_proj(pool_text_states(states, attention_mask, self.config.text_pooling))

    def frame_features(self, pixel_values_videos: torch.Tensor) -> torch.Tensor:
        """(B, T, E) raw frame features: CLIP's projected image embedding of each frame, or the video tower's
        projected per-frame pooled feature."""
        if pixel_values_videos.ndim != 5:
            raise ValueError(f"pixel_values_videos must have shape (batch, frames, channels, height, width), got "
                             f"{tuple(pixel_values_videos.shape)}.")
        if self.config.backbone == "clip":
            batch, frames = pixel_values_videos.shape[:2]
            pixels = pixel_values_videos.flatten(0, 1).to(self.clip.logit_scale.dtype)
            return self.clip.get_image_features(pixel_values=pixels).pooler_output.view(batch, frames, -1)
        return self.vision_proj(self.vision_model(pixel_values_videos).pooler_output)

    def encode_text(self, input_ids, attention_mask=None, token_type_ids=None) -> XPoolTextEncoding:
        features = self.text_features(input_ids, attention_mask, token_type_ids)
        return XPoolTextEncoding(text_embeds=F.normalize(features, dim=-1), text_features=features)

    def encode_video(self, pixel_values_videos) -> XPoolVideoEncoding:
        """Frame features and the pooling's keys/values, cached once per video for scoring against any text."""
        frames = self.frame_features(pixel_values_videos)
        keys, values = self.pooling.keys_values(frames)
        mean = F.normalize(F.normalize(frames, dim=-1).mean(dim=1), dim=-1)
        return XPoolVideoEncoding(video_embeds=mean, frame_embeds=frames, frame_keys=keys, frame_values=values)

    def get_text_features(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """(B, E) L2-normalised text features."""
        return self.encode_text(input_ids, attention_mask, token_type_ids).text_embeds

    def get_video_features(self, pixel_values_videos) -> torch.Tensor:
        """
        (B, E) text-independent video embeddings (normalised mean of the normalised frame features), for a first
        candidate search only: X-Pool's own score pools the frames for each text (`retrieval_similarity`).
        """
        return self.encode_video(pixel_values_videos).video_embeds

    def retrieval_similarity(self, text_encoding: XPoolTextEncoding, video_encoding: XPoolVideoEncoding,
                             text_chunk_size: int | None = None) -> torch.Tensor:
        """
        (num_texts, num_videos) X-Pool cosine similarity of every pair, from cached encodings. Texts are pooled
        against all videos `text_chunk_size` at a time (default `config.similarity_text_chunk_size`), so memory
        holds one (chunk, videos, embed_dim) block, whatever the number of texts.
        """
        chunk = text_chunk_size or self.config.similarity_text_chunk_size
        features = text_encoding.text_features
        keys, values = video_encoding.frame_keys, video_encoding.frame_values
        return torch.cat([self.pooling.similarity(features[start:start + chunk], keys, values)
                          for start in range(0, features.shape[0], chunk)])

    # ----- training -------------------------------------------------------------------------------------------
    def contrastive_loss(self, text_features: torch.Tensor, frame_features: torch.Tensor, video_ids: torch.Tensor,
                         similarity: torch.Tensor | None = None) -> torch.Tensor:
        """
        Symmetric InfoNCE over (text, pooled video) cosines times the logit scale, with multi-positive targets
        (captions with the same `video_ids` are all positives). Distributed, each process scores its texts against
        every process's videos and its videos against every process's texts, pooling for each pair as X-Pool does:
        text and frame features are gathered, not pooled embeddings (these depend on the text). `similarity`: the
        local (B, B) cosines, if already computed.
        """
        gather = self.config.gather_distributed and is_distributed()
        if gather:
            all_text = gather_batches(text_features, with_grad=True)
            all_frames = gather_batches(frame_features, with_grad=True)
            all_ids = gather_batches(video_ids, with_grad=False)
            similarity_t2v = self.pooling.similarity(text_features, *self.pooling.keys_values(all_frames))
            similarity_v2t = self.pooling.similarity(all_text, *self.pooling.keys_values(frame_features)).T
        else:
            if similarity is None:
                similarity = self.pooling.similarity(text_features, *self.pooling.keys_values(frame_features))
            similarity_t2v, similarity_v2t, all_ids = similarity, similarity.T, video_ids
        scale = self.logit_scale_value
        return multi_positive_cross_entropy(scale * similarity_t2v.float(), scale * similarity_v2t.float(), video_ids,
                                            all_ids)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_ids: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        return_loss: bool | None = None,
        return_dict: bool | None = None,
    ) -> XPoolOutput | tuple:
        r"""
        Args:
            input_ids, attention_mask: tokenised captions (B_t, N).
            pixel_values_videos (`(B_v, T, C, H, W)`): clips from the processor.
            video_ids (`(B,)`, *optional*): integer video id of each pair; captions of the same video are all
                positives. Default: every pair is its own video.
            return_loss (`bool`, *optional*): compute the loss on aligned (caption i, video i) pairs.
        """
        if input_ids is None or pixel_values_videos is None:
            raise ValueError("XPoolModel.forward needs both input_ids and pixel_values_videos.")
        text = self.encode_text(input_ids, attention_mask, token_type_ids)
        video = self.encode_video(pixel_values_videos)
        similarity = self.pooling.similarity(text.text_features, video.frame_keys, video.frame_values)
        logits_per_text = self.logit_scale_value * similarity
        loss = None
        if return_loss:
            if input_ids.shape[0] != pixel_values_videos.shape[0]:
                raise ValueError(f"Training takes aligned (caption, video) pairs: got {input_ids.shape[0]} captions "
                                 f"and {pixel_values_videos.shape[0]} videos.")
            ids = prepare_video_ids(video_ids, input_ids.shape[0], input_ids.device)
            loss = self.contrastive_loss(text.text_features, video.frame_embeds, ids, similarity)
        output = XPoolOutput(loss=loss, logits_per_text=logits_per_text, logits_per_video=logits_per_text.T,
                             text_embeds=text.text_embeds, frame_embeds=video.frame_embeds)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()


__all__ = ["XPoolPreTrainedModel", "XPoolModel", "XPoolOutput", "XPoolTextEncoding", "XPoolVideoEncoding",
           "TextConditionedPooling"]
