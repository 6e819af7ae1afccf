"""t2v2t: text-to-video retrieval models (T2V2T and baselines) as Hugging Face transformers models.

Importing this package registers the models with the Auto classes, and registers them for the Auto API in saved
folders: `save_pretrained`/`push_to_hub` write `auto_map` and the code files, so the folder loads with
`trust_remote_code=True` without this package:

```python
>>> import modeling_t2v2t  # registers "t2v2t", "xpool" and "cret"
>>> from transformers import AutoConfig, AutoModel
>>> model = AutoModel.from_config(AutoConfig.for_model("t2v2t"))
```

Files in this folder import each other only relatively, so they can be copied into a Hub repository as custom
code (`trust_remote_code=True`) and loaded where this package is not installed.
"""

from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, AutoProcessor, AutoVideoProcessor

from .configuration_cret import CRETConfig
from .configuration_t2v2t import T2V2TConfig, T2V2TTextConfig, T2V2TVisionConfig
from .configuration_xpool import XPoolConfig
from .modeling_cret import CRETModel, CRETOutput, CRETTextEncoding, CRETVideoEncoding
from .modeling_t2v2t import (
    T2V2TForPreTraining,
    T2V2TModel,
    T2V2TOutput,
    T2V2TPairScores,
    T2V2TPreTrainedModel,
    T2V2TTextEncoding,
    T2V2TVideoEncoding,
)
from .modeling_xpool import XPoolModel, XPoolOutput, XPoolTextEncoding, XPoolVideoEncoding
from .hub import save_hub_folder
from .processing_t2v2t import T2V2TProcessor
from .video_processing_t2v2t import T2V2TVideoProcessor


def _register_auto_classes() -> None:
    # exist_ok: re-importing (e.g. after importlib.reload) must not fail.
    AutoConfig.register(T2V2TConfig.model_type, T2V2TConfig, exist_ok=True)
    AutoModel.register(T2V2TConfig, T2V2TModel, exist_ok=True)
    AutoModelForPreTraining.register(T2V2TConfig, T2V2TForPreTraining, exist_ok=True)
    AutoVideoProcessor.register(T2V2TConfig, T2V2TVideoProcessor, exist_ok=True)
    AutoProcessor.register(T2V2TConfig, T2V2TProcessor, exist_ok=True)
    # The baselines take the same inputs, so they share T2V2T's processors.
    for config_class, model_class in ((XPoolConfig, XPoolModel), (CRETConfig, CRETModel)):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        AutoVideoProcessor.register(config_class, T2V2TVideoProcessor, exist_ok=True)
        AutoProcessor.register(config_class, T2V2TProcessor, exist_ok=True)
    # Class-level registration for the Auto API (transformers' `register_for_auto_class` sets `_auto_class`): every
    # `save_pretrained` -- plain, `push_to_hub`, `Trainer.save_model` -- then writes `auto_map` and copies the code
    # files, so any saved folder loads with `trust_remote_code=True` where this package is not installed.
    for config_class in (T2V2TConfig, XPoolConfig, CRETConfig):
        config_class.register_for_auto_class("AutoConfig")
    for model_class in (T2V2TModel, XPoolModel, CRETModel):
        model_class.register_for_auto_class("AutoModel")
    T2V2TForPreTraining.register_for_auto_class("AutoModelForPreTraining")
    T2V2TVideoProcessor.register_for_auto_class("AutoVideoProcessor")
    T2V2TProcessor.register_for_auto_class("AutoProcessor")


_register_auto_classes()

__all__ = [
    "T2V2TConfig",
    "T2V2TTextConfig",
    "T2V2TVisionConfig",
    "T2V2TPreTrainedModel",
    "T2V2TModel",
    "T2V2TForPreTraining",
    "T2V2TOutput",
    "T2V2TPairScores",
    "T2V2TTextEncoding",
    "T2V2TVideoEncoding",
    "T2V2TProcessor",
    "T2V2TVideoProcessor",
    "XPoolConfig",
    "XPoolModel",
    "XPoolOutput",
    "XPoolTextEncoding",
    "XPoolVideoEncoding",
    "CRETConfig",
    "CRETModel",
    "CRETOutput",
    "CRETTextEncoding",
    "CRETVideoEncoding",
    "save_hub_folder",
]
