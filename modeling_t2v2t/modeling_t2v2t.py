"""T2V2T: text-to-video retrieval with text→video→text fusion and Bypass cross-attention (Kim, Lee, Moon,
CVPR 2023 Workshops), built on VindLU (Cheng et al., CVPR 2023).

- Dual-encoder stage (VTC): a BEiT/ViT video encoder with temporal attention and a BERT text encoder (its first
  `fusion_layer` layers) give normalised embeddings; a text-video score is the mean over frames of the cosine
  between the text and each frame, divided by a learnable temperature.
- Joint encoder (VTM, MLM, reranking): text→video layers with Bypass cross-attention condition the video tokens
  on the caption, then the remaining BERT layers cross-attend to those tokens; a linear head on [CLS] says
  whether text and video match. `fusion_mode` selects T2V2T, naive T2V2T, VindLU-style (video→text only) or
  the dual encoder.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput, logging

from .attention_t2v2t import BypassCrossAttention, DropPath
from .configuration_t2v2t import T2V2TConfig
from .losses_t2v2t import draw_labelled_negatives, mask_tokens, prepare_video_ids, sample_vtm_negatives, vtc_loss
from .modeling_text_encoder import T2V2TTextTransformer, pool_text_states
from .modeling_video_encoder import (
    RelativePositionBias,
    T2V2TVisionEmbeddings,
    T2V2TVisionLayer,
    T2V2TVisionTransformer,
    TemporalAttention,
    frame_table_rows,
    pool_frame_embeds,
)
from .tower_loading import load_tower_configs, load_tower_weights

logger = logging.get_logger(__name__)


@dataclass
class T2V2TOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor`, *optional*, returned with `return_loss=True`): weighted sum of the loss terms.
        loss_vtc, loss_vtm (`torch.FloatTensor`, *optional*): the contrastive and matching losses.
        logits_per_text (`(num_texts, num_videos)`): VTC similarity / temperature. logits_per_video: its transpose.
        text_embeds (`(batch, embed_dim)`): normalised text embeddings.
        video_embeds (`(batch, embed_dim)`): mean over frames of the normalised frame embeddings, L2-normalised
            too with `config.video_pooling="normalized_mean"` (so `text_embeds @ video_embeds.T` is the VTC
            similarity).
        vtm_logits (`(batch, 2)`, *optional*): joint-encoder match logits of the aligned pairs (text i, video i);
            `None` for the dual encoder.
        text_last_hidden_state (`(batch, tokens, hidden)`): text-only features (output of layer `fusion_layer`).
        vision_last_hidden_state (`(batch, frames, 1 + patches, hidden)`): video encoder tokens.
    """

    loss: torch.FloatTensor | None = None
    loss_vtc: torch.FloatTensor | None = None
    loss_vtm: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    logits_per_video: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    vtm_logits: torch.FloatTensor | None = None
    text_last_hidden_state: torch.FloatTensor | None = None
    vision_last_hidden_state: torch.FloatTensor | None = None


@dataclass
class T2V2TForPreTrainingOutput(ModelOutput):
    """`T2V2TOutput` plus `loss_mlm`; `loss = vtc + vtm + mlm` (weighted)."""

    loss: torch.FloatTensor | None = None
    loss_vtc: torch.FloatTensor | None = None
    loss_vtm: torch.FloatTensor | None = None
    loss_mlm: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    logits_per_video: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    vtm_logits: torch.FloatTensor | None = None


class RowSelectableOutput(ModelOutput):
    """A `ModelOutput` of per-row tensors (the cached text and video encodings of every model type) that can be
    indexed by row as a whole."""

    def select(self, index: torch.Tensor):
        """The same encoding for rows `index` (e.g. one query repeated against each candidate video)."""
        return type(self)(**{key: value[index] for key, value in self.items()})


@dataclass
class T2V2TTextEncoding(RowSelectableOutput):
    """Text features to cache for retrieval: `text_embeds` (B, E) for search, `text_states` (B, N, D) for rerank."""

    text_embeds: torch.FloatTensor | None = None
    text_states: torch.FloatTensor | None = None
    attention_mask: torch.LongTensor | None = None


@dataclass
class T2V2TVideoEncoding(RowSelectableOutput):
    """
    Video features to cache for retrieval: `video_embeds` (B, E) for search; `frame_embeds` (B, T, E) the
    normalised per-frame embeddings; `video_tokens` (B, T*L, D) the tokens the joint encoder attends to
    (`None` for the dual encoder). `vision_last_hidden_state` (B, T, L, D) the raw encoder output.

    The joint-encoder cache (`T2V2TModel.build_joint_cache`, `None` until built): the per-video work of every
    pair score, done once per video. `fusion_keys`/`fusion_values` (B, F, M, D): the F fusion layers'
    cross-attention keys/values of the video tokens (M = T*L); `t2v_queries` (B, M, Dv): the text→video layer's
    queries (T2V2T modes); `t2v_bypass_logits` (B, H, M): its bypass slot's scaled logits (T2V2T with bypass).
    """

    video_embeds: torch.FloatTensor | None = None
    frame_embeds: torch.FloatTensor | None = None
    video_tokens: torch.FloatTensor | None = None
    vision_last_hidden_state: torch.FloatTensor | None = None
    fusion_keys: torch.FloatTensor | None = None
    fusion_values: torch.FloatTensor | None = None
    t2v_queries: torch.FloatTensor | None = None
    t2v_bypass_logits: torch.FloatTensor | None = None

    @property
    def has_joint_cache(self) -> bool:
        return self.fusion_keys is not None


@dataclass
class T2V2TPairScores(ModelOutput):
    """
    Joint-encoder scores of (text, video) pairs. `scores` (P,): the reranking score (`config.rerank_score`: the VTM
    log-odds plus the VTC logit by default, or VindLU's VTM match logit alone); `vtm_logits` (P, 2); `bypass_probs`: per text→video layer, (P, heads, T*L) probability that each
    video token took the bypass (`None` unless asked for, or without bypass).
    """

    scores: torch.FloatTensor | None = None
    vtm_logits: torch.FloatTensor | None = None
    bypass_probs: tuple[torch.FloatTensor, ...] | None = None


class T2VFusionLayer(GradientCheckpointingLayer):
    """Text→video layer: `v + DropPath(layer_scale * BypassCA(LN(v), text))`. No FFN on purpose: the bypass must
    be able to leave a video token unchanged, and an FFN applied to every token would move unrelated ones too."""

    def __init__(self, config: T2V2TConfig):
        super().__init__()
        vision, text = config.vision_config, config.text_config
        self.layernorm = nn.LayerNorm(vision.hidden_size, eps=vision.layer_norm_eps)
        self.cross_attention = BypassCrossAttention(
            vision.hidden_size, text.hidden_size, vision.num_attention_heads,
            bypass=config.bypass_mode if config.use_bypass else None,
            dropout=vision.attention_probs_dropout_prob,
        )
        self.layer_scale = nn.Parameter(torch.full((vision.hidden_size,), float(config.t2v_layer_scale_init_value)))
        self.drop_path = DropPath(vision.drop_path_rate)

    def forward(self, video_tokens, text_states, text_mask, output_attentions: bool = False, text_index=None):
        update, *probs = self.cross_attention(self.layernorm(video_tokens), text_states, text_mask, output_attentions,
                                              context_index=text_index)
        return video_tokens + self.drop_path(self.layer_scale * update), *probs


class MLMPredictionHead(nn.Module):
    """BERT's MLM head (`cls.predictions.*` names, as `BertForMaskedLM` and VindLU)."""

    def __init__(self, config):
        super().__init__()
        self.transform = nn.Module()
        self.transform.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.activation = ACT2FN[config.hidden_act]
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.transform.LayerNorm(self.activation(self.transform.dense(hidden_states)))
        return self.decoder(hidden_states) + self.bias


class T2V2TPreTrainedModel(PreTrainedModel):
    config_class = T2V2TConfig
    config: T2V2TConfig
    base_model_prefix = "t2v2t"
    main_input_name = "input_ids"
    input_modalities = ("text", "video")
    supports_gradient_checkpointing = True
    _no_split_modules = ["T2V2TVisionLayer", "T2V2TTextLayer", "T2VFusionLayer"]
    # The model computes its own loss; Trainer must not pass `num_items_in_batch` (doubled DDP losses otherwise).
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        std = self.config.initializer_range
        vision = self.config.vision_config
        if isinstance(module, T2V2TVisionEmbeddings):
            init.trunc_normal_(module.cls_token, std=std)
            if module.position_embeddings is not None:
                init.trunc_normal_(module.position_embeddings, std=std)
            if module.temporal_position_embeddings is not None and vision.temporal_position_init_std > 0:
                init.trunc_normal_(module.temporal_position_embeddings, std=vision.temporal_position_init_std)
            elif module.temporal_position_embeddings is not None:
                init.zeros_(module.temporal_position_embeddings)
        elif isinstance(module, RelativePositionBias):
            init.zeros_(module.relative_position_bias_table)
        elif isinstance(module, T2V2TVisionLayer) and module.lambda_1 is not None:
            init.constant_(module.lambda_1, vision.layer_scale_init_value)
            init.constant_(module.lambda_2, vision.layer_scale_init_value)
        elif isinstance(module, TemporalAttention):
            init.constant_(module.gate, vision.temporal_scale_init_value)
        elif isinstance(module, T2VFusionLayer):
            init.constant_(module.layer_scale, self.config.t2v_layer_scale_init_value)
        elif isinstance(module, BypassCrossAttention) and module.bypass == "null":
            init.normal_(module.null_key, std=std)
            init.zeros_(module.null_value)
        elif isinstance(module, MLMPredictionHead):
            init.zeros_(module.bias)
        elif isinstance(module, T2V2TModel):
            init.constant_(module.temp, self.config.temp)
            for table, std in ((module.fusion_frame_embeddings, self.config.fusion_frame_embedding_init_std),
                               (module.fusion_patch_embeddings, self.config.fusion_patch_embedding_init_std)):
                if table is not None and std > 0:
                    init.trunc_normal_(table, std=std)
                elif table is not None:
                    init.zeros_(table)

    @classmethod
    def from_vision_text_pretrained(
        cls,
        vision_model_name_or_path: str | None,
        text_model_name_or_path: str,
        vision_config_overrides: dict | None = None,
        output_loading_info: bool = False,
        text_config_overrides: dict | None = None,
        **config_kwargs,
    ):
        """
        Initialise from a transformers BEiT or ViT checkpoint and a BERT checkpoint (local folders or Hub ids),
        e.g. `("microsoft/beit-base-patch16-224-pt22k-ft22k", "bert-base-uncased")`. The image and text towers are
        copied weight for weight; temporal attention, cross-attention, text→video layers, projections and heads
        are newly initialised (temporal gates at 0, so the video encoder starts as the image model per frame).
        With `vision_model_name_or_path=None` only the text tower is pretrained: the video tower is built from
        scratch from `vision_config_overrides` (its `T2V2TVisionConfig` fields), for when no image model is at hand.

        Args:
            vision_config_overrides: extra `T2V2TVisionConfig` fields, e.g. `{"num_frames": 12}` (the whole vision
                config when `vision_model_name_or_path` is `None`).
            text_config_overrides: `T2V2TTextConfig` fields to change, e.g. `{"num_hidden_layers": 4}` to keep only
                the checkpoint's first 4 layers (the rest are reported as unused weights).
            output_loading_info: also return `{"missing_keys", "unexpected_keys"}` of the tower copy.
            config_kwargs: `T2V2TConfig` fields (`fusion_mode`, `fusion_layer`, ...).
        """
        vision_config, text_config, vision_state, text_state = load_tower_configs(
            vision_model_name_or_path, text_model_name_or_path, vision_config_overrides or {}, text_config_overrides
        )
        config = cls.config_class(text_config=text_config, vision_config=vision_config, **config_kwargs)
        model = cls(config)
        info = load_tower_weights(model, vision_state, text_state)
        logger.info("Initialised from %s and %s; new (randomly initialised) weights: %s",
                    vision_model_name_or_path or "a from-scratch video tower", text_model_name_or_path,
                    info["missing_keys"])
        return (model, info) if output_loading_info else model


class T2V2TModel(T2V2TPreTrainedModel):
    r"""
    T2V2T for retrieval: VTC + VTM training, embeddings for search, joint-encoder pair scores for reranking.

    Example:

    ```python
    >>> import torch
    >>> from modeling_t2v2t import T2V2TConfig, T2V2TModel
    >>> config = T2V2TConfig(
    ...     text_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
    ...     vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    ...                        image_size=32, patch_size=16, num_frames=2),
    ...     fusion_layer=1, embed_dim=16)
    >>> model = T2V2TModel(config).eval()
    >>> videos = torch.randn(3, 2, 3, 32, 32)  # (batch, frames, channels, height, width)
    >>> input_ids = torch.randint(1000, 2000, (3, 8))
    >>> out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), pixel_values_videos=videos)
    >>> out.logits_per_text.shape
    torch.Size([3, 3])
    ```
    """

    def __init__(self, config: T2V2TConfig):
        super().__init__(config)
        vision, text = config.vision_config, config.text_config
        self.vision_model = T2V2TVisionTransformer(vision)
        text_layers = text.num_hidden_layers if config.has_joint_encoder else config.fusion_layer
        self.text_model = T2V2TTextTransformer(text, config.fusion_layer, vision.hidden_size, num_layers=text_layers)
        self.vision_proj = nn.Linear(vision.hidden_size, config.embed_dim)
        self.text_proj = nn.Linear(text.hidden_size, config.embed_dim)
        self.temp = nn.Parameter(torch.tensor(float(config.temp)))
        if config.has_joint_encoder:
            # BEiT with mean pooling has no final LayerNorm on its tokens; the joint encoder wants normalised ones.
            self.vision_layernorm = (
                nn.LayerNorm(vision.hidden_size, eps=vision.layer_norm_eps) if vision.use_mean_pooling else None
            )
            self.t2v_layers = (
                nn.ModuleList([T2VFusionLayer(config) for _ in range(config.num_t2v_layers)])
                if config.has_t2v_fusion else None
            )
            self.itm_head = nn.Linear(text.hidden_size, 2)
        # A time marker on the joint encoder's video tokens (config.fusion_frame_embedding; None by default).
        self.fusion_frame_embeddings = (
            nn.Parameter(torch.zeros(1, vision.num_frames, 1, vision.hidden_size))
            if config.fusion_frame_embedding else None
        )
        # A place marker on them (config.fusion_patch_embedding): one row per token of a frame ([CLS], patches).
        self.fusion_patch_embeddings = (
            nn.Parameter(torch.zeros(1, 1, vision.num_patches + 1, vision.hidden_size))
            if config.fusion_patch_embedding else None
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_model.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.text_model.embeddings.word_embeddings = value

    @property
    def temperature(self) -> torch.Tensor:
        """
        The VTC temperature, kept in `[temp_min, temp_max]` as VindLU keeps it: VindLU clamps the parameter itself
        in place (`clip_contrastive_temperature`, under `no_grad`) at the start of each forward pass and then uses it
        as it is, so it always gets its gradient. A clamp inside the graph (`clamp(min, max)`) would cut the gradient
        whenever the parameter crossed a bound and could leave it stuck beyond it. So in training the parameter is
        clamped in place before use; outside training it is only read through a clamp.
        """
        low, high = self.config.temp_min, self.config.temp_max
        if self.training and torch.is_grad_enabled():
            if not low <= float(self.temp.detach()) <= high:  # in place only when needed: no version bump otherwise
                with torch.no_grad():
                    self.temp.clamp_(low, high)
            return self.temp
        return self.temp.clamp(low, high)

    # ----- encoders -------------------------------------------------------------------------------------------
    def encode_text(self, input_ids, attention_mask=None, token_type_ids=None) -> T2V2TTextEncoding:
        """Text-only features for search (`text_embeds`) and for the joint encoder (`text_states`)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        states = self.text_model.encode_text(input_ids, attention_mask, token_type_ids)
        sentence = pool_text_states(states, attention_mask, self.config.text_pooling)
        embeds = F.normalize(self.text_proj(sentence), dim=-1)
        return T2V2TTextEncoding(text_embeds=embeds, text_states=states, attention_mask=attention_mask)

    def encode_video(
        self, pixel_values_videos, output_hidden_states: bool = False, joint_cache: bool = False
    ) -> T2V2TVideoEncoding:
        """Video features for search (`video_embeds`) and the tokens the joint encoder attends to; with
        `joint_cache`, also the per-video part of the joint encoder (`build_joint_cache`)."""
        vision = self.vision_model(pixel_values_videos, output_hidden_states=output_hidden_states)
        frame_embeds = F.normalize(self.vision_proj(vision.pooler_output), dim=-1)  # (B, T, E)
        tokens = None
        if self.config.has_joint_encoder:
            last = vision.last_hidden_state
            if self.vision_layernorm is not None:
                last = self.vision_layernorm(last)
            if self.fusion_frame_embeddings is not None:
                last = last + frame_table_rows(self.fusion_frame_embeddings, last.shape[1]).to(last.dtype)
            if self.fusion_patch_embeddings is not None:  # the tower accepts only image_size frames: L rows fit
                last = last + self.fusion_patch_embeddings.to(last.dtype)
            tokens = last.flatten(1, 2)  # (B, T*L, D): every frame's tokens
        encoding = T2V2TVideoEncoding(
            video_embeds=pool_frame_embeds(frame_embeds, self.config.video_pooling), frame_embeds=frame_embeds,
            video_tokens=tokens,
            vision_last_hidden_state=vision.last_hidden_state,
        )
        return self.build_joint_cache(encoding) if joint_cache else encoding

    def get_text_features(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """(B, embed_dim) L2-normalised text embeddings."""
        return self.encode_text(input_ids, attention_mask, token_type_ids).text_embeds

    def get_video_features(self, pixel_values_videos) -> torch.Tensor:
        """
        (B, embed_dim) video embeddings: the mean over frames of L2-normalised frame embeddings. Its dot product
        with a text embedding is exactly the VTC similarity: with `config.video_pooling="mean"` (VindLU) the mean of
        per-frame cosines, its norm at most 1; with `"normalized_mean"` the mean is L2-normalised and the
        similarity is a cosine.
        """
        return self.encode_video(pixel_values_videos).video_embeds

    # ----- joint encoder --------------------------------------------------------------------------------------
    def _require_joint_encoder(self, what: str) -> None:
        if not self.config.has_joint_encoder:
            raise ValueError(f"{what} needs a joint encoder, but this model has fusion_mode='none' (dual encoder).")

    def fuse(self, text_states, attention_mask, video_tokens, output_bypass_probs: bool = False,
             cls_only: bool = False, text_index=None, video_index=None):
        """
        Joint encoding of aligned pairs (text i, video i): text→video layers (T2V2T modes) then the text fusion
        layers. Returns the fused text states (P, N, D) and the per-layer bypass probabilities (or `None`).

        - `cls_only`: the last fusion layer computes the [CLS] row alone, (P, 1, D): the same [CLS] as the full
          computation, and all that VTM reads (with one fusion layer, as in the synthetic configs, it skips most of
          the fusion's work).
        - `text_index` / `video_index` (`(P,)`, *optional*): pair i is text `text_index[i]` and video
          `video_index[i]` of `text_states`/`attention_mask` and `video_tokens`, which then hold each text and
          video once. Work that depends on the text alone (the text→video layers' word keys and values, the first
          fusion layer's self-attention) or, without text→video layers, on the video alone (the fusion layers'
          video keys and values) is done once per text or video and shared by its pairs: VTM's 3B pairs reuse B
          texts and B videos. The same function as indexing the inputs first.
        """
        self._require_joint_encoder("fuse()")
        pairs = text_states.shape[0] if text_index is None else len(text_index)
        videos = video_tokens.shape[0] if video_index is None else len(video_index)
        if pairs != videos:
            raise ValueError(f"fuse() scores aligned pairs: got {pairs} texts and {videos} videos.")
        bypass_probs = [] if output_bypass_probs else None
        if self.t2v_layers is not None:
            if video_index is not None:  # the text→video layers move each pair's video tokens its own way
                video_tokens, video_index = video_tokens[video_index], None
            for layer in self.t2v_layers:
                video_tokens, bypass_prob = layer(video_tokens, text_states, attention_mask, text_index=text_index)
                if output_bypass_probs and bypass_prob is not None:
                    bypass_probs.append(bypass_prob)
        fused = self.text_model.fuse(text_states, attention_mask, video_tokens, cls_only, text_index, video_index)
        return fused, (tuple(bypass_probs) if bypass_probs else None)

    # ----- cached joint encoder (reranking) -------------------------------------------------------------------
    @property
    def supports_joint_cache(self) -> bool:
        """Whether `build_joint_cache` applies: a joint encoder with at most one text→video layer (a second one
        would normalise caption-dependent tokens, so its work is not per-video)."""
        return self.config.has_joint_encoder and (self.t2v_layers is None or len(self.t2v_layers) == 1)

    def build_joint_cache(self, video_encoding: T2V2TVideoEncoding) -> T2V2TVideoEncoding:
        """
        `video_encoding` plus its joint-encoder cache (see `T2V2TVideoEncoding`): everything in a pair score that
        depends on the video alone, in the model's dtype. `score_pairs` reuses it for every caption.
        """
        self._require_joint_encoder("build_joint_cache()")
        if not self.supports_joint_cache:
            raise ValueError(f"build_joint_cache() needs T2V2TConfig.num_t2v_layers <= 1, got "
                             f"num_t2v_layers={self.config.num_t2v_layers}; use score_pairs(use_joint_cache=False).")
        if video_encoding.video_tokens is None:
            raise ValueError("build_joint_cache() needs the encoding's video_tokens (from encode_video).")
        tokens = video_encoding.video_tokens
        keys, values = self.text_model.video_keys_values(tokens)
        fields = dict(video_encoding.items(), fusion_keys=keys, fusion_values=values)
        if self.t2v_layers is not None:
            layer = self.t2v_layers[0]
            queries, bypass_logits = layer.cross_attention.video_queries(layer.layernorm(tokens))
            fields.update(t2v_queries=queries, t2v_bypass_logits=bypass_logits)
        return type(video_encoding)(**fields)

    def _slot_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """
        (F, D, Dv) maps from one text→video head's value vector to the fusion layers' keys (and values): each
        layer's key weight times `diag(layer_scale)` times the text→video output projection. Products of weights
        only, so they are kept until a weight changes (in-place updates bump the tensor version).
        """
        layer = self.t2v_layers[0]
        fusion = self.text_model.encoder.layer[self.text_model.fusion_layer:]
        weights = [layer.layer_scale, layer.cross_attention.o_proj.weight]
        weights += [block.crossattention.self.key.weight for block in fusion]
        weights += [block.crossattention.self.value.weight for block in fusion]
        stamp = tuple((w.data_ptr(), w._version, w.dtype, w.device) for w in weights)
        cached = getattr(self, "_slot_weights_cache", None)
        if not torch.is_grad_enabled() and cached is not None and cached[0] == stamp:
            return cached[1]
        scaled_out = layer.layer_scale[:, None] * layer.cross_attention.o_proj.weight  # diag(s) @ W_o
        maps = (torch.stack([block.crossattention.self.key.weight @ scaled_out for block in fusion]),
                torch.stack([block.crossattention.self.value.weight @ scaled_out for block in fusion]))
        if not torch.is_grad_enabled():
            self._slot_weights_cache = (stamp, maps)
        return maps

    def _fuse_cached(self, text_states, attention_mask, video: T2V2TVideoEncoding, row):
        """[CLS] of the fused states (T, D) of T captions against cached video `row` (an int: one video shared by
        all T captions, its keys/values used once for all) or videos `row[t]` (a (T,) tensor: one video per
        caption, batched), and the bypass probabilities (T, H, M) or `None`. Why this equals `fuse`: see
        `T2V2TTextTransformer.fuse_cached` (and the README section "Exact cached reranking")."""
        length = int(attention_mask.any(dim=0).nonzero().max()) + 1 if bool(attention_mask.any()) else 1
        text_states, attention_mask = text_states[:, :length], attention_mask[:, :length]  # trailing padding
        low_rank, bypass_prob = (), None
        if self.t2v_layers is not None:
            attention = self.t2v_layers[0].cross_attention
            bypass_logits = None if video.t2v_bypass_logits is None else video.t2v_bypass_logits[row]
            probs, slot_values, bypass_prob = attention.mixture(video.t2v_queries[row], bypass_logits,
                                                                text_states, attention_mask)
            captions, heads, tokens, slots = probs.shape
            key_maps, value_maps = self._slot_weights()
            split = (key_maps.shape[0], key_maps.shape[1], heads, attention.head_dim)
            key_slots = torch.einsum("thse,fkhe->fthsk", slot_values, key_maps.view(split))
            value_slots = torch.einsum("thse,fkhe->fthsk", slot_values, value_maps.view(split))
            low_rank = (probs.permute(0, 1, 3, 2).reshape(captions, heads * slots, tokens),
                        key_slots.flatten(2, 3), value_slots.flatten(2, 3))
        fused = self.text_model.fuse_cached(text_states, attention_mask, video.fusion_keys[row],
                                            video.fusion_values[row], *low_rank)
        return fused[:, 0], bypass_prob

    def _score_cached(self, text_encoding, video_encoding, video_index, output_bypass_probs: bool):
        if not video_encoding.has_joint_cache:
            used, video_index = video_index.unique(return_inverse=True)
            video_encoding = self.build_joint_cache(
                T2V2TVideoEncoding(video_tokens=video_encoding.video_tokens[used]))
        states = text_encoding.text_states
        cls = states.new_empty(states.shape[0], states.shape[-1])
        bypass = None
        # Videos with several captions: one call each, its keys/values shared by all of them. Videos with one
        # caption (a query against its candidates): one batched call over all of them.
        videos, counts = video_index.unique(return_counts=True)
        groups = [(video_index == row).nonzero(as_tuple=True)[0] for row in videos[counts > 1].tolist()]
        singles = torch.isin(video_index, videos[counts == 1]).nonzero(as_tuple=True)[0]
        calls = [(pairs, int(video_index[pairs[0]])) for pairs in groups]
        if len(singles):
            calls.append((singles, video_index[singles]))
        for pairs, row in calls:
            cls_rows, bypass_prob = self._fuse_cached(states[pairs], text_encoding.attention_mask[pairs],
                                                      video_encoding, row)
            cls[pairs] = cls_rows
            if output_bypass_probs and bypass_prob is not None:
                if bypass is None:
                    bypass = bypass_prob.new_empty(states.shape[0], *bypass_prob.shape[1:])
                bypass[pairs] = bypass_prob
        return cls, (None if bypass is None else (bypass,))

    def score_pairs(
        self,
        input_ids=None,
        attention_mask=None,
        pixel_values_videos=None,
        text_encoding: T2V2TTextEncoding | None = None,
        video_encoding: T2V2TVideoEncoding | None = None,
        output_bypass_probs: bool = False,
        video_index: torch.LongTensor | None = None,
        use_joint_cache: bool | None = None,
    ) -> T2V2TPairScores:
        """
        Joint-encoder match scores of aligned (text i, video i) pairs, for reranking. Pass raw inputs, or cached
        `encode_text`/`encode_video` results so each video is encoded once; form pairs with their `select(index)`,
        e.g. `score_pairs(text_encoding=text.select(torch.zeros(k, dtype=torch.long)), video_encoding=videos)`
        scores one query against k videos.

        Args:
            video_index (`(P,)`, *optional*): row of `video_encoding` for each text (pair i = text i, video
                `video_index[i]`), so a video scored against many captions is passed, and cached, once.
            use_joint_cache (`bool`, *optional*): the cached, exact fast path (per-video work from
                `build_joint_cache`, built here for the videos used if the encoding lacks it), or `False` for the
                straightforward reference computation (`fuse`). Default: the cached path in eval mode when
                `supports_joint_cache`, the reference in training mode (it applies dropout).
        """
        self._require_joint_encoder("score_pairs()")
        if text_encoding is None:
            if input_ids is None:
                raise ValueError("score_pairs() needs input_ids or text_encoding.")
            text_encoding = self.encode_text(input_ids, attention_mask)
        if video_encoding is None:
            if pixel_values_videos is None:
                raise ValueError("score_pairs() needs pixel_values_videos or video_encoding.")
            video_encoding = self.encode_video(pixel_values_videos)
        num_pairs = text_encoding.text_states.shape[0]
        if video_index is None:
            num_videos = len(next(value for value in video_encoding.values() if value is not None))
            if num_videos != num_pairs:
                raise ValueError(f"score_pairs() scores aligned pairs: got {num_pairs} texts and {num_videos} videos "
                                 "(pass video_index to pair each text with a video row).")
            video_index = torch.arange(num_pairs, device=text_encoding.text_states.device)
        elif video_index.shape != (num_pairs,):
            raise ValueError(f"video_index must hold one video row per text ({num_pairs}), got shape "
                             f"{tuple(video_index.shape)}.")
        if use_joint_cache is None:
            use_joint_cache = self.supports_joint_cache and not self.training
        elif use_joint_cache and not self.supports_joint_cache:
            raise ValueError(f"use_joint_cache=True needs T2V2TConfig.num_t2v_layers <= 1, got "
                             f"num_t2v_layers={self.config.num_t2v_layers}.")
        if use_joint_cache:
            cls, bypass_probs = self._score_cached(text_encoding, video_encoding, video_index, output_bypass_probs)
        else:
            if video_encoding.video_tokens is None:
                raise ValueError("The reference path (use_joint_cache=False) needs the encoding's video_tokens.")
            fused, bypass_probs = self.fuse(text_encoding.text_states, text_encoding.attention_mask,
                                            video_encoding.video_tokens, output_bypass_probs, cls_only=True,
                                            video_index=video_index)
            cls = fused[:, 0]
        logits = self.itm_head(cls)
        if self.config.rerank_score == "vtm":
            scores = logits[:, 1]
        else:
            if video_encoding.video_embeds is None:
                raise ValueError('rerank_score="vtm+vtc" needs the videos\' `video_embeds` in video_encoding (from '
                                 'encode_video); pass them, or use rerank_score="vtm".')
            similarity = (text_encoding.text_embeds * video_encoding.video_embeds[video_index]).sum(-1)
            scores = logits[:, 1] - logits[:, 0] + similarity / self.temperature
        return T2V2TPairScores(scores=scores, vtm_logits=logits, bypass_probs=bypass_probs)

    def text_to_video_attentions(
        self, text_encoding: T2V2TTextEncoding, video_encoding: T2V2TVideoEncoding
    ) -> tuple[tuple[torch.Tensor, torch.Tensor | None], ...]:
        """
        What each video token took in from the words, for visualisation: per text→video layer of aligned pairs
        (text i, video i), `(word_probs, bypass_probs)` with `word_probs` (P, heads, T*L, N) the probability each
        video token (every frame's [CLS] + patches) gives each word and `bypass_probs` (P, heads, T*L) the bypass
        probability (`None` without bypass; with it, words plus bypass sum to 1). Empty for fusion modes without
        text→video layers. Runs only the text→video layers, not the text fusion or the scores.
        """
        self._require_joint_encoder("text_to_video_attentions()")
        video_tokens, layers = video_encoding.video_tokens, []
        for layer in self.t2v_layers or ():
            video_tokens, bypass_prob, word_probs = layer(
                video_tokens, text_encoding.text_states, text_encoding.attention_mask, output_attentions=True
            )
            layers.append((word_probs, bypass_prob))
        return tuple(layers)

    # ----- training -------------------------------------------------------------------------------------------
    def vtm_loss(self, text: T2V2TTextEncoding, video: T2V2TVideoEncoding, similarity, video_ids,
                 labelled_negatives=None, contrast_text: T2V2TTextEncoding | None = None, contrast_pair_index=None):
        """VTM on every positive pair plus one hard negative video per text and one hard negative text per video
        (3B pairs when every pair has a negative in the batch); `labelled_negatives` as in `forward`: with
        `vtm_labelled_negative_mode` "replace" a drawn labelled negative takes the batch negative's place, with
        "add" it is one more negative pair (up to 5B pairs). `contrast_text` (M rows, the captions' padded length)
        and `contrast_pair_index` (M,): each contrast caption is one more negative pair with its pair's video."""
        batch = similarity.shape[0]
        labelled_probability = self.config.vtm_labelled_negative_prob if labelled_negatives is not None else 0.0
        add_labelled = labelled_probability > 0 and self.config.vtm_labelled_negative_mode == "add"
        negative_videos, negative_texts, has_negative = sample_vtm_negatives(
            similarity, video_ids, self.config.vtm_hard_negatives, labelled_negatives,
            0.0 if add_labelled else labelled_probability)
        if not bool(has_negative.all()):
            logger.warning_once("A batch holds a single video: its pairs get no VTM negative (use larger batches).")
        arange = torch.arange(batch, device=similarity.device)
        rows = arange[has_negative]
        text_index = [arange, rows, negative_texts[has_negative]]
        video_index = [arange, negative_videos[has_negative], rows]
        if add_labelled:
            (labelled_videos, with_video), (labelled_texts, with_text) = draw_labelled_negatives(
                labelled_negatives, video_ids, labelled_probability)
            text_index += [arange[with_video], labelled_texts[with_text]]
            video_index += [labelled_videos[with_video], arange[with_text]]
        text_states, text_mask = text.text_states, text.attention_mask
        if contrast_text is not None and len(contrast_pair_index):
            text_index.append(batch + torch.arange(len(contrast_pair_index), device=similarity.device))
            video_index.append(contrast_pair_index)
            text_states = torch.cat([text_states, contrast_text.text_states])
            text_mask = torch.cat([text_mask, contrast_text.attention_mask])
        text_index, video_index = torch.cat(text_index), torch.cat(video_index)
        fused, _ = self.fuse(text_states, text_mask, video.video_tokens, cls_only=True,
                             text_index=text_index, video_index=video_index)
        logits = self.itm_head(fused[:, 0])
        labels = torch.zeros(len(text_index), dtype=torch.long, device=similarity.device)
        labels[:batch] = 1
        return F.cross_entropy(logits.float(), labels), logits[:batch]

    def _check_labelled_negatives(self, labelled_negatives, batch: int) -> None:
        """A clear error for a wrong shape, and one warning when the labels cannot change anything."""
        if tuple(labelled_negatives.shape) != (batch, batch):
            raise ValueError(f"labelled_negatives must be a ({batch}, {batch}) bool tensor for a batch of {batch} "
                             f"pairs, got shape {tuple(labelled_negatives.shape)}.")
        if not self.config.has_joint_encoder or self.config.vtm_labelled_negative_prob == 0:
            logger.warning_once(
                "labelled_negatives were passed but are unused: they choose VTM negatives, and this model has "
                f"{'no joint encoder' if not self.config.has_joint_encoder else 'vtm_labelled_negative_prob 0'}.")

    def _used_contrasts(self, contrast_input_ids, contrast_attention_mask, contrast_pair_index, input_ids,
                        return_loss) -> bool:
        """Whether this forward uses contrast captions; a clear error for inconsistent ones, and one warning when
        they are passed but no loss uses them."""
        given = [value is not None for value in (contrast_input_ids, contrast_attention_mask, contrast_pair_index)]
        if not any(given):
            return False
        if not all(given):
            raise ValueError("Contrast captions need contrast_input_ids, contrast_attention_mask and "
                             "contrast_pair_index together.")
        contrasts, length = contrast_input_ids.shape[0], input_ids.shape[1]
        if tuple(contrast_input_ids.shape) != (contrasts, length) or contrast_attention_mask.shape != \
                contrast_input_ids.shape or tuple(contrast_pair_index.shape) != (contrasts,):
            raise ValueError(f"contrast_input_ids and contrast_attention_mask must be (M, {length}) like input_ids "
                             f"(same padded length) and contrast_pair_index (M,); got {tuple(contrast_input_ids.shape)}, "
                             f"{tuple(contrast_attention_mask.shape)} and {tuple(contrast_pair_index.shape)}.")
        if contrasts and not 0 <= int(contrast_pair_index.min()) <= int(contrast_pair_index.max()) < len(input_ids):
            raise ValueError(f"contrast_pair_index must index the batch's {len(input_ids)} pairs, got values from "
                             f"{int(contrast_pair_index.min())} to {int(contrast_pair_index.max())}.")
        if not (self.config.vtm_contrast_captions or self.config.vtc_contrast_captions):
            logger.warning_once("Contrast captions were passed but are unused: this model has vtm_contrast_captions "
                                "and vtc_contrast_captions both off.")
            return False
        return bool(return_loss) and contrasts > 0

    def _forward_with_encodings(
        self, input_ids, attention_mask, pixel_values_videos, video_ids, token_type_ids, return_loss,
        labelled_negatives=None, contrast_input_ids=None, contrast_attention_mask=None, contrast_pair_index=None,
    ) -> tuple[T2V2TOutput, T2V2TTextEncoding, T2V2TVideoEncoding]:
        if input_ids is None or pixel_values_videos is None:
            raise ValueError("T2V2TModel.forward needs both input_ids and pixel_values_videos.")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        contrast_text = None
        if self._used_contrasts(contrast_input_ids, contrast_attention_mask, contrast_pair_index, input_ids,
                                return_loss):
            # One text pass for captions and contrasts: each row is encoded on its own, so this is the same as two.
            token_types = None if token_type_ids is None else torch.cat(
                [token_type_ids, torch.zeros_like(contrast_input_ids)])
            both = self.encode_text(torch.cat([input_ids, contrast_input_ids]),
                                    torch.cat([attention_mask, contrast_attention_mask.to(attention_mask.dtype)]),
                                    token_types)
            captions = torch.arange(len(input_ids), device=input_ids.device)
            text, contrast_text = both.select(captions), both.select(captions.new_tensor(
                range(len(input_ids), len(both.text_embeds))))
        else:
            text = self.encode_text(input_ids, attention_mask, token_type_ids)
        video = self.encode_video(pixel_values_videos)
        logits_per_text = text.text_embeds @ video.video_embeds.T / self.temperature

        loss = loss_vtc = loss_vtm = vtm_logits = None
        if return_loss:
            if text.text_embeds.shape[0] != video.video_embeds.shape[0]:
                raise ValueError(
                    f"Training takes aligned (caption, video) pairs: got {text.text_embeds.shape[0]} captions and "
                    f"{video.video_embeds.shape[0]} videos."
                )
            ids = prepare_video_ids(video_ids, input_ids.shape[0], input_ids.device)
            if labelled_negatives is not None:
                self._check_labelled_negatives(labelled_negatives, input_ids.shape[0])
            vtc_contrasts = contrast_text is not None and self.config.vtc_contrast_captions
            loss_vtc = vtc_loss(text.text_embeds, video.video_embeds, self.temperature, ids,
                                gather=self.config.gather_distributed,
                                contrast_text_embeds=contrast_text.text_embeds if vtc_contrasts else None,
                                contrast_pair_index=contrast_pair_index if vtc_contrasts else None)
            loss = self.config.vtc_loss_weight * loss_vtc
            if self.config.has_joint_encoder:
                vtm_contrasts = contrast_text is not None and self.config.vtm_contrast_captions
                loss_vtm, vtm_logits = self.vtm_loss(
                    text, video, logits_per_text.detach(), ids, labelled_negatives,
                    contrast_text if vtm_contrasts else None, contrast_pair_index if vtm_contrasts else None)
                loss = loss + self.config.vtm_loss_weight * loss_vtm
        elif self.config.has_joint_encoder and input_ids.shape[0] == pixel_values_videos.shape[0]:
            # Aligned pairs use each video once: a per-video cache would not be reused, so the reference path.
            vtm_logits = self.score_pairs(text_encoding=text, video_encoding=video, use_joint_cache=False).vtm_logits

        output = T2V2TOutput(
            loss=loss, loss_vtc=loss_vtc, loss_vtm=loss_vtm,
            logits_per_text=logits_per_text, logits_per_video=logits_per_text.T,
            text_embeds=text.text_embeds, video_embeds=video.video_embeds, vtm_logits=vtm_logits,
            text_last_hidden_state=text.text_states, vision_last_hidden_state=video.vision_last_hidden_state,
        )
        return output, text, video

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_ids: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        return_loss: bool | None = None,
        return_dict: bool | None = None,
        labelled_negatives: torch.BoolTensor | None = None,
        contrast_input_ids: torch.LongTensor | None = None,
        contrast_attention_mask: torch.Tensor | None = None,
        contrast_pair_index: torch.LongTensor | None = None,
    ) -> T2V2TOutput | tuple:
        r"""
        Args:
            input_ids, attention_mask, token_type_ids: tokenised captions (B_t, N).
            pixel_values_videos (`(B_v, T, C, H, W)`): clips from `T2V2TVideoProcessor`; any T (the temporal
                embedding is interpolated).
            video_ids (`(B,)`, *optional*): integer video id of each pair, so captions of the same video count as
                positives in VTC and are never drawn as VTM negatives. Default: every pair is its own video.
            return_loss (`bool`, *optional*): compute VTC (+ VTM when there is a joint encoder) on aligned pairs.
            labelled_negatives (`(B, B)` bool, *optional*, training only): True at (i, j) when the video of pair j
                is a hard negative of the caption of pair i that the data names (e.g. `VideoTextCollator`'s
                `labelled_negatives`); VTM draws them with probability `config.vtm_labelled_negative_prob`.
            contrast_input_ids, contrast_attention_mask (`(M, N)`, *optional*, training only), contrast_pair_index
                (`(M,)`): contrast captions, each a pair's caption rewritten to be false of its video, padded like
                `input_ids` (e.g. `VideoTextCollator`'s `contrast_captions`); hard negative texts of that pair's
                video in VTM (`config.vtm_contrast_captions`) and/or VTC (`config.vtc_contrast_captions`).
        """
        output, _, _ = self._forward_with_encodings(
            input_ids, attention_mask, pixel_values_videos, video_ids, token_type_ids, return_loss,
            labelled_negatives, contrast_input_ids, contrast_attention_mask, contrast_pair_index,
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()

class T2V2TForPreTraining(T2V2TPreTrainedModel):
    r"""
    T2V2T with VTC + VTM + MLM, for pretraining on video-text and image-text pairs (images: 1-frame videos).
    MLM masks the caption (or takes `mlm_input_ids`/`mlm_labels` from a collator) and predicts the masked words
    through the joint encoder, so the words must be recovered from the video.
    """

    _tied_weights_keys = {"cls.predictions.decoder.weight": "t2v2t.text_model.embeddings.word_embeddings.weight"}

    def __init__(self, config: T2V2TConfig):
        if not config.has_joint_encoder:
            raise ValueError("T2V2TForPreTraining needs a joint encoder for MLM; fusion_mode='none' has none. "
                             "Pretrain a dual encoder with T2V2TModel (VTC only).")
        super().__init__(config)
        self.t2v2t = T2V2TModel(config)
        self.cls = nn.Module()
        self.cls.predictions = MLMPredictionHead(config.text_config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.t2v2t.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Linear:
        return self.cls.predictions.decoder

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.cls.predictions.decoder = value

    def mlm_loss(self, input_ids, attention_mask, video: T2V2TVideoEncoding, mlm_input_ids=None, mlm_labels=None):
        text_config = self.config.text_config
        if mlm_labels is None:
            if text_config.mask_token_id is None:
                raise ValueError("MLM needs text_config.mask_token_id (set it from the tokenizer).")
            special = [i for i in (text_config.pad_token_id, text_config.cls_token_id, text_config.sep_token_id)
                       if i is not None]
            mlm_input_ids, mlm_labels = mask_tokens(input_ids, self.config.mlm_probability,
                                                    text_config.mask_token_id, text_config.vocab_size, special)
        elif mlm_input_ids is None:
            raise ValueError("mlm_labels was given without mlm_input_ids (the masked captions).")
        states = self.t2v2t.text_model.encode_text(mlm_input_ids, attention_mask)
        fused, _ = self.t2v2t.fuse(states, attention_mask, video.video_tokens)
        picked = mlm_labels != -100
        if not bool(picked.any()):  # nothing masked in this batch: a zero loss that keeps the graph
            return fused.sum() * 0.0
        logits = self.cls.predictions(fused[picked])  # the vocabulary head only where it is needed
        return F.cross_entropy(logits.float(), mlm_labels[picked])

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_ids: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        mlm_input_ids: torch.LongTensor | None = None,
        mlm_labels: torch.LongTensor | None = None,
        return_loss: bool | None = None,
        return_dict: bool | None = None,
        labelled_negatives: torch.BoolTensor | None = None,
        contrast_input_ids: torch.LongTensor | None = None,
        contrast_attention_mask: torch.Tensor | None = None,
        contrast_pair_index: torch.LongTensor | None = None,
    ) -> T2V2TForPreTrainingOutput | tuple:
        r"""
        Args: as `T2V2TModel.forward`, plus
            mlm_input_ids, mlm_labels (*optional*): masked captions and their labels (-100 = not masked); when
                omitted, captions are masked here with `config.mlm_probability` (80/10/10).
        """
        if attention_mask is None and input_ids is not None:
            attention_mask = torch.ones_like(input_ids)
        base, _, video = self.t2v2t._forward_with_encodings(
            input_ids, attention_mask, pixel_values_videos, video_ids, token_type_ids, return_loss,
            labelled_negatives, contrast_input_ids, contrast_attention_mask, contrast_pair_index,
        )
        loss, loss_mlm = base.loss, None
        if return_loss:
            loss_mlm = self.mlm_loss(input_ids, attention_mask, video, mlm_input_ids, mlm_labels)
            loss = loss + self.config.mlm_loss_weight * loss_mlm
        output = T2V2TForPreTrainingOutput(
            loss=loss, loss_vtc=base.loss_vtc, loss_vtm=base.loss_vtm, loss_mlm=loss_mlm,
            logits_per_text=base.logits_per_text, logits_per_video=base.logits_per_video,
            text_embeds=base.text_embeds, video_embeds=base.video_embeds, vtm_logits=base.vtm_logits,
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()


__all__ = [
    "T2V2TPreTrainedModel",
    "T2V2TModel",
    "T2V2TForPreTraining",
    "T2V2TOutput",
    "T2V2TForPreTrainingOutput",
    "T2V2TTextEncoding",
    "T2V2TVideoEncoding",
    "T2V2TPairScores",
    "RowSelectableOutput",
]
