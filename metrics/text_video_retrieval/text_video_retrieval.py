"""Text-video retrieval metric (R@K, MdR, MnR, both directions) as an `evaluate` module.

Load it offline from this folder: `evaluate.load("metrics/text_video_retrieval")`. The computation is
`modeling_t2v2t.retrieval.metrics.retrieval_metrics`; this file only adapts it to `evaluate`'s inputs.
"""

import datasets
import evaluate
import numpy as np

from modeling_t2v2t.retrieval.metrics import retrieval_metrics


_DESCRIPTION = """
Text-video retrieval metrics from a caption-by-video similarity matrix, the numbers text-video retrieval papers
report: R@K (recall at K, in percent), MdR (median rank) and MnR (mean rank, 1-based), for text->video (every
caption is a query; rank of its ground-truth video among all videos) and video->text (every video is a query; by
default the rank of its best-ranked caption among all captions, so several captions per video are allowed;
v2t_convention="per_video" ranks each video's best caption score among the videos instead, as CLIP4Clip's
multi-sentence evaluation and X-Pool do). Also RSum (R@1 + R@5 +
R@10 per direction) and mean_recall (mean of the six R@1/5/10 values, for model selection).

Ties count with their expectation under random tie-breaking (identical to the usual definition when nothing ties).
A video that no caption refers to stays a text->video distractor and is left out of the video->text queries (a
warning is logged). Similarity rows are stored as float32: two scores equal after float32 rounding tie.

Each prediction is one caption's row of scores over ALL videos, so compute() holds the matrix as Python lists; for
large galleries (thousands of videos) call `modeling_t2v2t.retrieval.metrics.retrieval_metrics` on a tensor directly.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): one row per caption: its similarity to every video (all rows the
        same length, num_videos; higher = more similar; no NaN).
    references (`list` of `int`): the ground-truth video index (0 <= index < num_videos) of each caption.
    recall_at (`tuple` of `int`, defaults to `(1, 5, 10, 50)`): the K of the reported R@K.
    chunk_size (`int`, defaults to 1024): queries compared at a time (bounds intermediate memory).
    v2t_convention (`str`, defaults to `"best_caption"`): multi-caption video->text ranking, `"best_caption"`
        (VindLU) or `"per_video"` (CLIP4Clip multi-sentence, X-Pool).

Returns:
    `dict` of `float`: `t2v_R1`, `t2v_R5`, `t2v_R10`, `t2v_R50`, `t2v_MdR`, `t2v_MnR`, `t2v_RSum`, the same with
    `v2t_`, and `mean_recall`.

Examples:

    >>> metric = evaluate.load("metrics/text_video_retrieval")
    >>> results = metric.compute(
    ...     predictions=[[0.9, 0.1, 0.2], [0.3, 0.5, 0.4], [0.1, 0.9, 0.3]], references=[0, 0, 2], recall_at=(1, 5)
    ... )
    >>> results["t2v_R1"], results["t2v_MdR"]
    (33.33333333333333, 2.0)
"""

_CITATION = """
@article{luo2022clip4clip,
  title={CLIP4Clip: An Empirical Study of CLIP for End to End Video Clip Retrieval and Captioning},
  author={Luo, Huaishao and Ji, Lei and Zhong, Ming and Chen, Yang and Lei, Wen and Duan, Nan and Li, Tianrui},
  journal={Neurocomputing},
  volume={508},
  pages={293--304},
  year={2022}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TextVideoRetrieval(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://arxiv.org/abs/2104.08860"],
        )

    def _compute(self, predictions, references, recall_at=(1, 5, 10, 50), chunk_size=1024,
                 v2t_convention="best_caption"):
        lengths = sorted({len(row) for row in predictions})
        if len(lengths) > 1:
            raise ValueError(f"every prediction row must score all videos; got rows of lengths {lengths}")
        similarity = np.asarray(predictions, dtype=np.float32)  # (num_texts, num_videos)
        text_to_video = np.asarray(references, dtype=np.int64)  # (num_texts,)
        return retrieval_metrics(similarity, text_to_video, recall_at=recall_at, chunk_size=chunk_size,
                                 v2t_convention=v2t_convention)
