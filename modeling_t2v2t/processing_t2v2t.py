"""Processor for T2V2T: a BERT tokenizer for the captions and `T2V2TVideoProcessor` for the clips."""

from transformers import AutoTokenizer, BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging

from .video_processing_t2v2t import T2V2TVideoProcessor

logger = logging.get_logger(__name__)


class T2V2TProcessor(ProcessorMixin):
    r"""
    Wraps a `T2V2TVideoProcessor` and a BERT tokenizer into one processor that returns the inputs of `T2V2TModel`:
    `input_ids`, `attention_mask` (captions padded and truncated to `max_length` tokens) and `pixel_values_videos`.

    Args:
        video_processor (`T2V2TVideoProcessor`): samples and normalises the video frames.
        tokenizer (`PreTrainedTokenizerBase`): a BERT (WordPiece) tokenizer.
        max_length (`int`, defaults to 32): caption length in tokens, VindLU's retrieval setting. Saved with the
            processor.

    Example:

    ```python
    >>> import numpy as np
    >>> from transformers import AutoTokenizer
    >>> from modeling_t2v2t import T2V2TProcessor, T2V2TVideoProcessor
    >>> processor = T2V2TProcessor(T2V2TVideoProcessor(), AutoTokenizer.from_pretrained("bert-base-uncased"))
    >>> batch = processor(text=["a dog runs"], videos=[np.zeros((20, 48, 64, 3), dtype=np.uint8)])
    >>> batch["input_ids"].shape, batch["pixel_values_videos"].shape
    (torch.Size([1, 32]), torch.Size([1, 4, 3, 224, 224]))
    ```
    """

    def __init__(self, video_processor, tokenizer, max_length: int = 32):
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
            raise ValueError(f"T2V2TProcessor.max_length={max_length!r} is invalid: must be a positive integer.")
        self.max_length = max_length
        super().__init__(video_processor=video_processor, tokenizer=tokenizer)
        # Words already reported as unknown to the tokenizer: each is warned about once per processor.
        self._reported_unknown_words = set()

    def _warn_unknown_words(self, captions: list[str], input_ids) -> None:
        """Warn (once per word) when captions contain words the tokenizer can only read as its unknown token:
        the model then sees `[UNK]` instead of the word, silently otherwise."""
        unk_id = getattr(self.tokenizer, "unk_token_id", None)
        if unk_id is None:
            return
        rows = input_ids.tolist() if hasattr(input_ids, "tolist") else input_ids
        unknown = []
        for caption, ids in zip(captions, rows):
            if unk_id not in ids:
                continue
            for word in caption.split():  # which words: re-tokenize the words of the affected captions only
                if self.tokenizer.unk_token in self.tokenizer.tokenize(word) and word not in unknown:
                    unknown.append(word)
        new = [word for word in unknown if word not in self._reported_unknown_words]
        if new:
            self._reported_unknown_words.update(new)
            logger.warning("The tokenizer does not know these words and reads them as %s: %s. The model cannot use "
                           "them; rephrase the query with words in its vocabulary.", self.tokenizer.unk_token,
                           ", ".join(repr(word) for word in new))

    def __call__(
        self,
        text: str | list[str] | None = None,
        videos=None,
        padding: bool | str = "max_length",
        truncation: bool = True,
        max_length: int | None = None,
        return_tensors: str | None = "pt",
        **videos_kwargs,
    ) -> BatchFeature:
        """Tokenize `text` (one caption or a list) and/or process `videos` (see `T2V2TVideoProcessor`).

        `max_length` defaults to `self.max_length`; `videos_kwargs` go to the video processor (e.g. `num_frames`).
        An empty or whitespace-only caption raises `ValueError` naming its index. Words the tokenizer reads as its
        unknown token are named in a warning, once per word.
        """
        if text is None and videos is None:
            raise ValueError("T2V2TProcessor needs `text`, `videos` or both.")
        data = {}
        if text is not None:
            captions = [text] if isinstance(text, str) else list(text)
            for index, caption in enumerate(captions):
                if not isinstance(caption, str):
                    raise ValueError(f"text[{index}] must be a string, got {type(caption).__name__}.")
                if not caption.strip():
                    raise ValueError(f"text[{index}] is empty: every caption needs at least one non-space character.")
            encoded = self.tokenizer(
                captions,
                padding=padding,
                truncation=truncation,
                max_length=max_length or self.max_length,
                return_token_type_ids=False,  # the model takes a single segment
                return_tensors=return_tensors,
            )
            self._warn_unknown_words(captions, encoded["input_ids"])
            data.update(encoded)
        if videos is not None:
            data.update(self.video_processor(videos, return_tensors=return_tensors, **videos_kwargs))
        return BatchFeature(data, tensor_type=return_tensors)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values_videos"]

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        # The base class looks the video processor up through AutoVideoProcessor, which knows T2V2T only after
        # registration; load our class directly so `T2V2TProcessor.from_pretrained` works without it.
        video_processor = T2V2TVideoProcessor.from_pretrained(pretrained_model_name_or_path, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs)
        return [video_processor, tokenizer]


__all__ = ["T2V2TProcessor"]
