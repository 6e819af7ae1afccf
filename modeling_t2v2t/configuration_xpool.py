"""Configuration of X-Pool (Gorti et al., "X-Pool: Cross-Modal Language-Video Attention for Text-Video Retrieval",
CVPR 2022), following its public code.

Two backbones give the frame and text features the pooling works on:

- `backbone="towers"`: this package's towers, the T2V2T video encoder (per-frame pooled features) and a BERT text
  encoder ([CLS]), each projected to `embed_dim`; the same towers T2V2T uses, for a comparison on the same data.
- `backbone="clip"`: a transformers `CLIPModel` (the paper's ViT-B/32), `get_image_features` per frame and
  `get_text_features`; `embed_dim` is CLIP's `projection_dim`.
"""

from transformers import CLIPConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import logging

from .configuration_t2v2t import TEXT_POOLINGS, T2V2TTextConfig, T2V2TVisionConfig
from .validation_t2v2t import ConfigValidator

logger = logging.get_logger(__name__)

XPOOL_BACKBONES = ("towers", "clip")
# X-Pool keeps CLIP's logit scale below ln(100), as CLIP itself does.
LOG_100 = 4.605170185988092
# CLIP's initial logit scale, ln(1 / 0.07).
LOG_INV_007 = 2.6592600369327779


class XPoolConfig(PreTrainedConfig):
    r"""
    Configuration of an X-Pool model: text-conditioned attention pooling of frame embeddings.

    Args:
        backbone (`str`, defaults to `"towers"`): `"towers"` (this package's video and text encoders, configured by
            `vision_config`/`text_config`) or `"clip"` (a transformers `CLIPModel` configured by `clip_config`).
        text_config (`dict` or `T2V2TTextConfig`, *optional*): BERT-like text encoder (towers only; all its layers
            are text-only).
        vision_config (`dict` or `T2V2TVisionConfig`, *optional*): video encoder (towers only).
        clip_config (`dict` or `CLIPConfig`, *optional*): the CLIP model (clip only).
        embed_dim (`int`, *optional*): width of the frame/text features the pooling works on. Towers: size of the
            projections, default 256 (T2V2T's VTC size). CLIP: its `projection_dim` (the default; another value
            raises).
        text_pooling (`str`, defaults to `"cls"`): the text tower's sentence feature, as `T2V2TConfig.text_pooling`:
            `"cls"` ([CLS]) or `"mean"` (mean over real tokens); towers only (CLIP has its own pooled text feature).
        num_attention_heads (`int`, defaults to 1): heads of the pooling attention (X-Pool's `num_mha_heads`; 1 is
            its CLIP setting). The synthetic ablation uses 8 on its from-scratch video tower, chosen among 1, 4 and 8
            on validation (`results/xpool_from_scratch.md`).
        pooling_dropout (`float`, defaults to 0.3): dropout of the pooling's residual linear layer (X-Pool's
            `transformer_dropout`), drawn for every (text, video) pair, so it is noise on each score. 0.3 is X-Pool's
            setting for pretrained CLIP towers, whose frame features already tell videos apart. It does not fit
            from-scratch towers: their videos start with nearly equal features (a caption's scores spread by about
            0.01 in cosine over the videos of a batch at initialisation, 0.0003-0.0005 after 25 steps) while the
            noise is about 0.02, and the loss stays at ln(batch). Use 0 there, and train the pooling at a lower
            rate than the towers (`--module_learning_rates '{"pooling.": 1e-5}'`, X-Pool's default `noclip_lr` for
            its new layers): at the towers' 1e-3, Adam's full-size steps on the pooling's tiny early gradients collapse
            every pooled video onto one direction, with or without dropout. Both are needed (measured on the
            synthetic benchmark: `results/xpool_from_scratch.md`).
        logit_scale_init_value (`float`, defaults to ln(1/0.07) = 2.6592): initial log logit scale (CLIP's init),
            towers only: with the CLIP backbone the scale is CLIP's own `logit_scale`, as in X-Pool.
        logit_scale_max (`float`, defaults to ln(100)): the log logit scale is clamped to at most this value.
        similarity_text_chunk_size (`int`, defaults to 32): texts per chunk in `retrieval_similarity` (pooled
            embeddings for all videos are held for one chunk of texts at a time).
        gather_distributed (`bool`, defaults to `True`): gather text and frame features across processes for the
            contrastive loss when distributed.
        layer_norm_eps (`float`, defaults to 1e-5): epsilon of the pooling's LayerNorms (torch's default, as X-Pool).
        initializer_range (`float`, defaults to 0.02): std of the normal init of the towers' new weights.

    Example:

    ```python
    >>> from modeling_t2v2t import XPoolConfig, XPoolModel
    >>> model = XPoolModel(XPoolConfig(backbone="towers", embed_dim=256))
    ```
    """

    model_type = "xpool"
    # Optional: the towers' configs are absent with the CLIP backbone and CLIP's is absent with the towers.
    sub_configs_defaults = {
        "text_config": SubConfigSpec(T2V2TTextConfig, optional=True),
        "vision_config": SubConfigSpec(T2V2TVisionConfig, optional=True),
        "clip_config": SubConfigSpec(CLIPConfig, optional=True),
    }

    backbone: str = "towers"
    text_config: dict | T2V2TTextConfig | None = None
    vision_config: dict | T2V2TVisionConfig | None = None
    clip_config: dict | CLIPConfig | None = None
    embed_dim: int | None = None
    text_pooling: str = "cls"
    num_attention_heads: int = 1
    pooling_dropout: float = 0.3
    logit_scale_init_value: float = LOG_INV_007
    logit_scale_max: float = LOG_100
    similarity_text_chunk_size: int = 32
    gather_distributed: bool = True
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check = ConfigValidator(self)
        check.one_of("backbone", XPOOL_BACKBONES)
        check.one_of("text_pooling", TEXT_POOLINGS)
        if self.backbone == "towers":
            check.require(self.clip_config is None, "clip_config",
                          "must be None with backbone='towers' (set backbone='clip' to use CLIP)", shown="<CLIPConfig>")
            # Defaults as for T2V2T, so `XPoolConfig()` is a complete base-size model.
            self.text_config = self.text_config if self.text_config is not None else T2V2TTextConfig()
            self.vision_config = self.vision_config if self.vision_config is not None else T2V2TVisionConfig()
            self.embed_dim = 256 if self.embed_dim is None else self.embed_dim
        else:
            for field in ("text_config", "vision_config"):
                check.require(getattr(self, field) is None, field,
                              "must be None with backbone='clip' (CLIP's own configs are in clip_config)",
                              shown=f"<{type(getattr(self, field)).__name__}>")
            self.clip_config = self.clip_config if self.clip_config is not None else CLIPConfig()
            projection_dim = self.clip_config.projection_dim
            if self.embed_dim is None:
                self.embed_dim = projection_dim
            check.require(self.embed_dim == projection_dim, "embed_dim",
                          f"must equal clip_config.projection_dim={projection_dim} with backbone='clip'")
        check.positive_int("embed_dim", "num_attention_heads")
        check.divides("num_attention_heads", "embed_dim")
        check.probability("pooling_dropout")
        check.number("logit_scale_max", 0, low_open=True)
        check.number("logit_scale_init_value", high="logit_scale_max")
        check.positive_int("similarity_text_chunk_size")
        check.number("layer_norm_eps", 0, low_open=True)
        check.number("initializer_range", 0, low_open=True)
        check.boolean("gather_distributed")

    @property
    def has_joint_encoder(self) -> bool:
        """X-Pool has no joint encoder to rerank with: its score is already per (text, video) pair."""
        return False

    @property
    def retrieval_embed_dim(self) -> int:
        """Width of `get_text_features`/`get_video_features` (stage-1 search embeddings)."""
        return self.embed_dim


__all__ = ["XPoolConfig", "XPOOL_BACKBONES"]
