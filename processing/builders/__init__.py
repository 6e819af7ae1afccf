"""Dataset builders: annotation files of real corpora (and of the built-in synthetic benchmark) to one
`datasets.Dataset` schema (`processing.schema`: one row per video with all its captions).

Every builder returns `(dataset, skip_report)`. A malformed entry, an empty caption or a missing video raises
`processing.schema.AnnotationError` naming the annotation file and the entry; with `skip_bad=True` it is counted
in the `SkipReport` and logged instead.

| name | builder | corpus / format |
|---|---|---|
| `vindlu_json` | `build_vindlu_json` | VindLU / Singularity JSON (any corpus they ship), the synthetic benchmark |
| `msrvtt` | `build_msrvtt` | MSR-VTT: 9k / 7k train, 1k-A test, official splits |
| `didemo` | `build_didemo` | DiDeMo `{train,val,test}_data.json`, paragraph retrieval |
| `activitynet` | `build_activitynet` | ActivityNet Captions `train.json` / `val_1.json` / `val_2.json` |
| `webvid` | `build_webvid` | WebVid-2M/10M results CSV |
| `cc3m` | `build_cc3m` | CC3M-style image-caption data (img2dataset folder or caption/path TSV) |
| `synthetic` | `build_synthetic` | the built-in synthetic benchmark, rendered on first use |

Training scripts choose a builder by name from their config:

```python
from processing.builders import build

dataset, skipped = build("msrvtt", video_root="MSRVTT/videos/all", split="test_1k_a", annotation_dir="msrvtt_data")
```
"""

from .activitynet import build_activitynet
from .didemo import build_didemo
from .msrvtt import build_msrvtt
from .pretraining import build_cc3m, build_webvid
from .synthetic import build_synthetic
from .vindlu import build_vindlu_json

BUILDERS = {
    "vindlu_json": build_vindlu_json,
    "msrvtt": build_msrvtt,
    "didemo": build_didemo,
    "activitynet": build_activitynet,
    "webvid": build_webvid,
    "cc3m": build_cc3m,
    "synthetic": build_synthetic,
}


def build(name: str, **kwargs):
    """Runs the builder registered as `name` with `kwargs`; returns `(datasets.Dataset, SkipReport)`."""
    if name not in BUILDERS:
        raise ValueError(f"Unknown dataset builder {name!r}; choose one of {sorted(BUILDERS)}.")
    return BUILDERS[name](**kwargs)


__all__ = [
    "BUILDERS",
    "build",
    "build_activitynet",
    "build_cc3m",
    "build_didemo",
    "build_msrvtt",
    "build_synthetic",
    "build_vindlu_json",
    "build_webvid",
]
