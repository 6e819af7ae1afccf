"""Configuration classes for T2V2T (text-to-video-to-text fusion with Bypass cross-attention).

Three nested configs, as transformers' CLIP/X-CLIP do: a BERT-like text config, a BEiT/ViT-like video config
(with temporal attention) and the parent `T2V2TConfig` holding the fusion and loss settings. Every value is
validated when the config is built (`ConfigValidator`, shared by every config); a bad value raises `ValueError`
naming the field.
"""

from transformers import PreTrainedConfig
from transformers.utils import logging

from .validation_t2v2t import ConfigValidator

logger = logging.get_logger(__name__)

FUSION_MODES = ("t2v2t", "naive_t2v2t", "v2t", "none")
BYPASS_MODES = ("self", "null")
RERANK_SCORES = ("vtm+vtc", "vtm")
TEXT_POOLINGS = ("cls", "mean")
VIDEO_POOLINGS = ("mean", "normalized_mean")
LABELLED_NEGATIVE_MODES = ("replace", "add")
PATCH_EMBEDDINGS = ("linear", "conv_stem")


class T2V2TTextConfig(PreTrainedConfig):
    r"""
    Configuration of the T2V2T text encoder, a BERT encoder whose layers from `T2V2TConfig.fusion_layer` on also
    cross-attend to video tokens. Field names and defaults follow `BertConfig` (bert-base-uncased), so a
    `bert-base-uncased` checkpoint maps onto it one to one.

    Args:
        vocab_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, hidden_act,
        hidden_dropout_prob, attention_probs_dropout_prob, max_position_embeddings, type_vocab_size,
        initializer_range, layer_norm_eps, pad_token_id: as in `BertConfig`.
        cls_token_id, sep_token_id, mask_token_id (`int`): special token ids of the tokenizer; MLM never masks
            [CLS]/[SEP]/[PAD] and writes `mask_token_id` into the masked positions.
    """

    model_type = "t2v2t_text_model"
    base_config_key = "text_config"

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    cls_token_id: int | None = 101
    sep_token_id: int | None = 102
    mask_token_id: int | None = 103

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check = ConfigValidator(self)
        check.positive_int("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                           "intermediate_size", "max_position_embeddings", "type_vocab_size")
        check.divides("num_attention_heads", "hidden_size")
        check.probability("hidden_dropout_prob", "attention_probs_dropout_prob")
        check.number("initializer_range", 0, low_open=True)
        check.number("layer_norm_eps", 0, low_open=True)
        for field in ("pad_token_id", "cls_token_id", "sep_token_id", "mask_token_id"):
            check.integer(field, 0, "vocab_size", high_open=True, optional=True)


class T2V2TVisionConfig(PreTrainedConfig):
    r"""
    Configuration of the T2V2T video encoder: a BEiT/ViT image transformer applied to every frame, with a
    TimeSformer-style temporal attention after each spatial block (`x + scale * DropPath(MHA_time(LN(x)))`, `scale`
    a scalar initialised to `temporal_scale_init_value`, 0 by default so a freshly initialised model equals the
    image model frame by frame; the identity on 1-frame clips) and a learnable temporal position embedding (zero
    init) of `num_frames` rows: shorter clips take its first rows, longer ones a linear interpolation (VindLU's rule).

    The defaults are those of `microsoft/beit-base-patch16-224-pt22k-ft22k` (relative position bias, layer scale
    0.1, mean pooling, no key bias). For a ViT checkpoint set `key_bias=True`, `layer_scale_init_value=0.0`,
    `use_absolute_position_embeddings=True`, `use_relative_position_bias=False`, `use_mean_pooling=False`
    (`T2V2TModel.from_vision_text_pretrained` does this for you).

    Args:
        image_size, patch_size, num_channels, hidden_size, num_hidden_layers, num_attention_heads,
        intermediate_size, hidden_act, hidden_dropout_prob, attention_probs_dropout_prob, layer_norm_eps,
        initializer_range, drop_path_rate, layer_scale_init_value, use_absolute_position_embeddings,
        use_relative_position_bias, use_shared_relative_position_bias, use_mean_pooling: as in `BeitConfig`.
        qkv_bias (`bool`): bias on the query and value projections. key_bias (`bool`): bias on the key
            projection (BEiT has none, ViT has one).
        num_frames (`int`): frames per clip the temporal position embedding is sized for (training frames).
        use_temporal_attention (`bool`): add the temporal attention blocks at all.
        temporal_scale_init_value (`float`): initial value of each temporal block's scalar gate.
        temporal_position_init_std (`float`): standard deviation of the temporal position embedding's truncated
            normal initialisation; 0 (the default) starts it at zero, as VindLU does when it inflates an image model
            (the video model then starts as the image model). It is the only part of the encoder that tells the
            frames' order (unless `frame_difference_channels` is on): everything else is the same for a clip and
            its time-reversed twin. A tower trained from
            scratch has no image function to preserve, and from zero it learns too slowly to matter within a short
            budget (see `results/quickstart_recipe.md`).
        patch_embedding (`str`): how a frame becomes patch tokens. `"linear"` (the default; BEiT, ViT and VindLU):
            one convolution with kernel and stride `patch_size`. `"conv_stem"`: the convolutional stem of Xiao et al.
            2021 ("Early Convolutions Help Transformers See Better"): 3x3 stride-2 convolutions, each with
            BatchNorm and ReLU, then a convolution of kernel and stride the remaining factor; for towers trained
            from scratch (at 800 steps the quickstart's test t2v R@1 rose by 3-7 points with it in two seeds, 6-9
            with lr 1e-3 as well; `results/quickstart_recipe.md`). A pretrained BEiT/ViT checkpoint has a linear
            patch projection, so it cannot start a conv-stem tower.
        conv_stem_channels (`list[int]`): output channels of the stem's 3x3 stride-2 convolutions (`"conv_stem"`
            only); `patch_size` must be divisible by 2 to the power of their number.
        frame_difference_channels (`bool`): if `True`, the patch embedding sees each frame's difference from the
            frame before it (zero for the first frame) as `num_channels` more input channels: TSN's RGB difference
            (Wang et al. 2016), a cheap stand-in for optical flow. A moving object leaves a signed pair of blobs
            whose orientation is its direction of motion, a local pattern that survives mean pooling over
            patches, whereas a frame alone says where the object is but not which way it goes, and mean-pooled
            patch tokens with relative position bias barely say where. For towers trained from scratch (a
            pretrained image checkpoint's patch projection takes colour channels only); default `False` (VindLU).
    """

    model_type = "t2v2t_vision_model"
    base_config_key = "vision_config"

    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    num_frames: int = 4
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    drop_path_rate: float = 0.1
    qkv_bias: bool = True
    key_bias: bool = False
    layer_scale_init_value: float = 0.1
    use_absolute_position_embeddings: bool = False
    use_relative_position_bias: bool = True
    use_shared_relative_position_bias: bool = False
    use_mean_pooling: bool = True
    use_temporal_attention: bool = True
    temporal_scale_init_value: float = 0.0
    temporal_position_init_std: float = 0.0
    patch_embedding: str = "linear"
    conv_stem_channels: list[int] | tuple[int, ...] = (24, 48, 96)
    frame_difference_channels: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check = ConfigValidator(self)
        check.positive_int("image_size", "patch_size", "num_channels", "num_frames", "hidden_size",
                           "num_hidden_layers", "num_attention_heads", "intermediate_size")
        check.divides("patch_size", "image_size")
        check.divides("num_attention_heads", "hidden_size")
        check.probability("hidden_dropout_prob", "attention_probs_dropout_prob", "drop_path_rate")
        check.number("layer_scale_init_value", 0, why="(0 disables layer scale)")
        check.number("temporal_scale_init_value")
        check.number("temporal_position_init_std", 0, why="(0 starts the temporal position embedding at zero)")
        check.one_of("patch_embedding", PATCH_EMBEDDINGS)
        if self.patch_embedding == "conv_stem":
            check.positive_int_list("conv_stem_channels")
            stride = 2 ** len(self.conv_stem_channels)
            check.require(self.patch_size % stride == 0, "patch_size",
                          f"must be divisible by 2**len(conv_stem_channels) = {stride} (each stem convolution "
                          "halves the frame)")
        check.boolean("qkv_bias", "key_bias", "use_absolute_position_embeddings", "use_relative_position_bias",
                      "use_shared_relative_position_bias", "use_mean_pooling", "use_temporal_attention",
                      "frame_difference_channels")
        check.number("initializer_range", 0, low_open=True)
        check.number("layer_norm_eps", 0, low_open=True)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class T2V2TConfig(PreTrainedConfig):
    r"""
    Configuration of a T2V2T model (Kim, Lee, Moon, CVPR 2023 Workshops), built on VindLU.

    Args:
        text_config (`dict` or `T2V2TTextConfig`): the BERT-like text encoder.
        vision_config (`dict` or `T2V2TVisionConfig`): the BEiT/ViT-like video encoder.
        fusion_mode (`str`, defaults to `"t2v2t"`): how text and video are fused for VTM/MLM and reranking:
            `"t2v2t"` text→video layers with Bypass cross-attention, then video→text layers;
            `"naive_t2v2t"` the same with plain cross-attention (the paper's ablation);
            `"v2t"` video→text layers only (VindLU); `"none"` a dual encoder (VTC only, no joint encoder).
        bypass_mode (`str`, defaults to `"self"`): the extra attention slot of Bypass cross-attention. `"self"`: the
            video token itself is an extra key/value, so a patch that matches no word can attend to itself and pass
            through unchanged; `"null"`: a learnable null key per head whose value starts at zero.
            Only used when `fusion_mode="t2v2t"`.
        num_t2v_layers (`int`, defaults to 1): text→video cross-attention layers (T2V2T modes only).
        t2v_layer_scale_init_value (`float`, defaults to 0.1): initial per-channel scale of each text→video update,
            small so a model initialised from VindLU starts close to it.
        fusion_layer (`int`, defaults to 9): index of the first text layer that cross-attends to video; layers
            before it are text-only and give the VTC text feature.
        embed_dim (`int`, defaults to 256): size of the VTC projections.
        text_pooling (`str`, defaults to `"cls"`): which text-only states give the VTC text feature. `"cls"`: the
            [CLS] state, as VindLU (BERT) does; `"mean"`: the mean over the caption's real tokens, as sentence
            encoders trained with mean pooling (e.g. all-MiniLM-L6-v2) were trained to be read.
        video_pooling (`str`, defaults to `"mean"`): how the normalised frame embeddings give the VTC video
            embedding. `"mean"`: their mean, as VindLU, so a text-video score is the mean of the per-frame cosines
            and the embedding's norm (at most 1) shrinks when the frames disagree; `"normalized_mean"`: their mean
            L2-normalised, as CLIP4Clip's mean pooling (meanP), so a score is a cosine and frames showing different
            events of the clip are not penalised for it.
        fusion_frame_embedding (`bool`, defaults to `False`): add a learned per-frame embedding to the video tokens
            the joint encoder reads (not to the VTC video embedding), a time marker on every token of frame t.
            Not in VindLU or T2V2T, whose only frame-order signal is the video tower's temporal position embedding,
            added at its input; telling "X, then Y" from its order twin needs the fusion to bind a clause's place in
            the caption to a frame's place in the clip. Frame counts above the table's size interpolate it, as the
            temporal position embedding does. Needs a joint encoder.
        fusion_frame_embedding_init_std (`float`, defaults to 0.02): standard deviation of its truncated-normal
            initialisation (the tokens it is added to are layer-normalised, about 1 per channel). A model trained
            from scratch on a short budget may need it larger: the synthetic quickstart uses 0.5
            (`results/quickstart_recipe.md`).
        fusion_patch_embedding (`bool`, defaults to `False`): add a learned per-position embedding (one row per
            token of a frame: its [CLS] and each patch, the same for every frame) to the video tokens the joint
            encoder reads (not to the VTC video embedding), a place marker. The video tower's relative position bias
            leaves its output tokens without an absolute position, so without it the joint encoder's cross-attention
            cannot read where in the frame a token lies, nor, with `fusion_frame_embedding`, where an object is in
            the first frame and where in the last: the direction of a movement. Needs a joint encoder. Not in
            VindLU or T2V2T.
        fusion_patch_embedding_init_std (`float`, defaults to 0.02): as `fusion_frame_embedding_init_std`, for it.
        temp (`float`, defaults to 0.07): initial VTC temperature, learnable, clamped to `[temp_min, temp_max]`.
        mlm_probability (`float`, defaults to 0.5): masking ratio of the pretraining MLM loss.
        vtm_hard_negatives (`bool`, defaults to `True`): sample VTM negatives from the VTC similarity (else uniform).
        vtm_labelled_negative_prob (`float`, defaults to 0): how often a training pair whose batch holds one of its
            *labelled* hard negatives (the `labelled_negatives` a collator passes to `forward`, e.g. the same scene
            with its motion reversed or its events swapped) takes that as its VTM negative instead (in [0, 1]).
            Uniform or similarity-weighted draws from a batch rarely hold a clip's temporal twin, which only frame
            order can reject, so VTM would seldom learn order without them.
        vtm_labelled_negative_mode (`str`, defaults to `"replace"`): what a drawn labelled negative does.
            `"replace"`: it takes the place of the pair's batch negative (3B VTM pairs); `"add"`: it is an extra VTM
            pair next to the batch negative (up to 5B pairs), so VTM keeps its batch negatives as well.
        vtm_contrast_captions (`bool`, defaults to `False`): when a batch carries contrast captions (a pair's
            caption rewritten to be false of its video, e.g. its motion reversed; `VideoTextCollator`'s
            `contrast_captions`), each is one more VTM pair (contrast, the pair's video) labelled no-match, as
            NegCLIP (Yuksekgonul et al. 2023) and Verbs in Action (Momeni et al. 2023) add swapped-word captions as
            hard negatives. Not in VindLU or T2V2T.
        vtc_contrast_captions (`bool`, defaults to `False`): each contrast as one more negative text of its
            caption's video (of no other: a contrast may be true of another video of the batch, such as the twin
            with the reversed motion) in VTC's video-to-text direction (NegCLIP's use), local to each process.
        vtc_loss_weight, vtm_loss_weight, mlm_loss_weight (`float`): weights of the loss terms.
        rerank_score (`str`, defaults to `"vtm+vtc"`): the score a reranked pair gets. `"vtm"`: the VTM match logit
            alone (VindLU); `"vtm+vtc"`: the VTM log-odds (match minus no-match logit) plus the VTC logit
            (similarity / temperature), i.e. both heads' evidence, as BLIP adds its similarity to the ITM score, so
            reranking refines the embedding ranking rather than discarding it.
        gather_distributed (`bool`, defaults to `True`): gather VTC features across processes when distributed.
        tie_word_embeddings (`bool`, defaults to `True`): tie the pretraining MLM decoder to the word embeddings.

    Example:

    ```python
    >>> from modeling_t2v2t import T2V2TConfig, T2V2TModel
    >>> config = T2V2TConfig(fusion_mode="t2v2t", bypass_mode="null")
    >>> model = T2V2TModel(config)
    ```
    """

    model_type = "t2v2t"
    sub_configs_defaults = {"text_config": T2V2TTextConfig, "vision_config": T2V2TVisionConfig}

    text_config: dict | T2V2TTextConfig | None = None
    vision_config: dict | T2V2TVisionConfig | None = None
    fusion_mode: str = "t2v2t"
    bypass_mode: str = "self"
    num_t2v_layers: int = 1
    t2v_layer_scale_init_value: float = 0.1
    fusion_layer: int = 9
    embed_dim: int = 256
    text_pooling: str = "cls"
    video_pooling: str = "mean"
    fusion_frame_embedding: bool = False
    fusion_frame_embedding_init_std: float = 0.02
    fusion_patch_embedding: bool = False
    fusion_patch_embedding_init_std: float = 0.02
    temp: float = 0.07
    temp_min: float = 0.001
    temp_max: float = 0.5
    mlm_probability: float = 0.5
    vtm_hard_negatives: bool = True
    vtm_labelled_negative_prob: float = 0.0
    vtm_labelled_negative_mode: str = "replace"
    vtm_contrast_captions: bool = False
    vtc_contrast_captions: bool = False
    vtc_loss_weight: float = 1.0
    vtm_loss_weight: float = 1.0
    mlm_loss_weight: float = 1.0
    gather_distributed: bool = True
    rerank_score: str = "vtm+vtc"
    tie_word_embeddings: bool = True
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check = ConfigValidator(self)
        check.one_of("fusion_mode", FUSION_MODES)
        check.one_of("bypass_mode", BYPASS_MODES)
        check.one_of("rerank_score", RERANK_SCORES)
        check.one_of("text_pooling", TEXT_POOLINGS)
        check.one_of("video_pooling", VIDEO_POOLINGS)
        check.one_of("vtm_labelled_negative_mode", LABELLED_NEGATIVE_MODES)
        check.integer("num_t2v_layers", 1 if self.has_t2v_fusion else 0, why=f"with fusion_mode={self.fusion_mode!r}")
        num_text_layers = self.text_config.num_hidden_layers
        upper = num_text_layers if self.fusion_mode == "none" else num_text_layers - 1
        check.integer("fusion_layer", 0, upper, why=f"for {num_text_layers} text layers and "
                      f"fusion_mode={self.fusion_mode!r} (a joint encoder needs at least one fusion layer)")
        check.positive_int("embed_dim")
        check.number("temp_max", 0, low_open=True)
        check.number("temp_min", 0, "temp_max", low_open=True, high_open=True)
        check.number("temp", "temp_min", "temp_max")
        check.number("mlm_probability", 0, 1, low_open=True, high_open=True)
        check.number("t2v_layer_scale_init_value", 0, low_open=True)
        for field in ("vtc_loss_weight", "vtm_loss_weight", "mlm_loss_weight"):
            check.number(field, 0)
        check.number("initializer_range", 0, low_open=True)
        check.number("vtm_labelled_negative_prob", 0, 1)
        check.boolean("vtm_hard_negatives", "gather_distributed", "tie_word_embeddings", "fusion_frame_embedding",
                      "fusion_patch_embedding", "vtm_contrast_captions", "vtc_contrast_captions")
        check.require(not (self.vtm_contrast_captions and not self.has_joint_encoder), "vtm_contrast_captions",
                      "needs a joint encoder; fusion_mode='none' (dual encoder) has none")
        for marker in ("fusion_frame_embedding", "fusion_patch_embedding"):
            check.number(f"{marker}_init_std", 0)
            check.require(not (getattr(self, marker) and not self.has_joint_encoder), marker,
                          "needs a joint encoder; fusion_mode='none' (dual encoder) has none")

    @property
    def has_t2v_fusion(self) -> bool:
        """Whether the joint encoder conditions video tokens on the text before the video→text layers."""
        return self.fusion_mode in ("t2v2t", "naive_t2v2t")

    @property
    def has_joint_encoder(self) -> bool:
        """Whether the model has fusion layers (VTM, MLM and reranking); `False` for the dual encoder."""
        return self.fusion_mode != "none"

    @property
    def use_bypass(self) -> bool:
        return self.fusion_mode == "t2v2t"


__all__ = ["T2V2TConfig", "T2V2TTextConfig", "T2V2TVisionConfig", "FUSION_MODES", "BYPASS_MODES", "RERANK_SCORES",
           "PATCH_EMBEDDINGS", "TEXT_POOLINGS", "VIDEO_POOLINGS", "LABELLED_NEGATIVE_MODES"]
