"""Configuration of CRET (Ji et al., "CRET: Cross-Modal Retrieval Transformer for Efficient Text-Video Retrieval",
SIGIR 2022) on this package's towers (the T2V2T video encoder and a BERT text encoder)."""

from transformers import PreTrainedConfig
from transformers.utils import logging

from .configuration_t2v2t import TEXT_POOLINGS, T2V2TTextConfig, T2V2TVisionConfig
from .validation_t2v2t import ConfigValidator

logger = logging.get_logger(__name__)


class CRETConfig(PreTrainedConfig):
    r"""
    Configuration of a CRET model: global embeddings trained with the Gaussian estimation of embedding space (GEES)
    loss, plus local embeddings from the cross-modal correspondence module (CCM): `num_centers` learned centre
    queries decoded by transformer decoder layers shared between the text and the video side.

    Args:
        text_config (`dict` or `T2V2TTextConfig`): BERT-like text encoder (all layers text-only).
        vision_config (`dict` or `T2V2TVisionConfig`): the video encoder.
        embed_dim (`int`, defaults to 256): size of the global text and frame embeddings.
        text_pooling (`str`, defaults to `"cls"`): the text tower's sentence feature, as `T2V2TConfig.text_pooling`:
            `"cls"` ([CLS]) or `"mean"` (mean over real tokens); the global text embedding's input.
        num_centers (`int`, defaults to 8): centre queries of the CCM, i.e. local embeddings per text or video.
        ccm_hidden_size (`int`, *optional*): width of the CCM decoder and of each local embedding; default
            `embed_dim`.
        ccm_num_layers (`int`, defaults to 2): decoder layers of the CCM.
        ccm_num_attention_heads (`int`, defaults to 4): heads of the CCM's attention.
        ccm_intermediate_size (`int`, *optional*): hidden size of the CCM's feed-forward; default 4 x
            `ccm_hidden_size`.
        ccm_dropout (`float`, defaults to 0.1): dropout in the CCM decoder.
        alpha (`float`, defaults to 1.0): training loss `L = L_GEES + alpha * L_CCM`.
        beta (`float`, defaults to 1.0): retrieval score `S = S_g + beta * S_l`; must be >= 0 because the search
            embeddings carry `sqrt(beta)`.
        temp (`float`, defaults to 0.07): initial temperature of both losses (each has its own, learnable, clamped to
            `[temp_min, temp_max]`).
        gather_distributed (`bool`, defaults to `True`): gather features across processes for both losses.
        layer_norm_eps (`float`, defaults to 1e-6): epsilon of the CCM's LayerNorms.
        initializer_range (`float`, defaults to 0.02): std of the normal init of new weights.

    Example:

    ```python
    >>> from modeling_t2v2t import CRETConfig, CRETModel
    >>> model = CRETModel(CRETConfig(num_centers=8, alpha=1.0, beta=1.0))
    ```
    """

    model_type = "cret"
    sub_configs_defaults = {"text_config": T2V2TTextConfig, "vision_config": T2V2TVisionConfig}

    text_config: dict | T2V2TTextConfig | None = None
    vision_config: dict | T2V2TVisionConfig | None = None
    embed_dim: int = 256
    text_pooling: str = "cls"
    num_centers: int = 8
    ccm_hidden_size: int | None = None
    ccm_num_layers: int = 2
    ccm_num_attention_heads: int = 4
    ccm_intermediate_size: int | None = None
    ccm_dropout: float = 0.1
    alpha: float = 1.0
    beta: float = 1.0
    temp: float = 0.07
    temp_min: float = 0.001
    temp_max: float = 0.5
    gather_distributed: bool = True
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.ccm_hidden_size = self.embed_dim if self.ccm_hidden_size is None else self.ccm_hidden_size
        self.ccm_intermediate_size = (4 * self.ccm_hidden_size if self.ccm_intermediate_size is None
                                      else self.ccm_intermediate_size)
        check = ConfigValidator(self)
        check.one_of("text_pooling", TEXT_POOLINGS)
        check.positive_int("embed_dim", "num_centers", "ccm_hidden_size", "ccm_num_layers", "ccm_num_attention_heads",
                           "ccm_intermediate_size")
        check.divides("ccm_num_attention_heads", "ccm_hidden_size")
        check.probability("ccm_dropout")
        check.number("alpha", 0)
        check.number("beta", 0)
        check.number("temp_max", 0, low_open=True)
        check.number("temp_min", 0, "temp_max", low_open=True, high_open=True)
        check.number("temp", "temp_min", "temp_max")
        check.number("layer_norm_eps", 0, low_open=True)
        check.number("initializer_range", 0, low_open=True)
        check.boolean("gather_distributed")

    @property
    def has_joint_encoder(self) -> bool:
        """CRET is embedding-based: no joint encoder, no reranking."""
        return False

    @property
    def retrieval_embed_dim(self) -> int:
        """Width of `get_text_features`/`get_video_features`: the global part plus one local part per centre."""
        return self.embed_dim + self.num_centers * self.ccm_hidden_size


__all__ = ["CRETConfig"]
