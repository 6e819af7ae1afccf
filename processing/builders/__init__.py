"""Dataset builders: annotation files of real corpora (and of the built-in synthetic benchmark) to one
`datasets.Dataset` schema (`processing.schema`: one row per video with all its captions).

Every builder returns `(dataset, skip_report)`. A malformed entry, an empty caption (or one with no words once
cleaned, such as "..."), a missing video or a media path outside `video_root` raises
`processing.schema.AnnotationError` naming the annotation file and the entry; with `skip_bad=True` it is counted
in the `SkipReport` and logged instead. A split that ends up with no rows raises `EmptySplitError`, saying how many
entries were read, skipped (and why) or filtered out.

One calling convention where the formats allow it: `split`; the annotation location, `annotation_file` (or
`annotation_dir` for corpora that name their files by split: MSR-VTT, DiDeMo, ActivityNet); `video_root`, the
folder the media paths are relative to (images too, for `cc3m`); `skip_bad`, `check_files`, `allow_outside_root`.
`build(name, **kwargs)` checks the arguments against the builder's signature: a missing or unknown one raises a
`ValueError` naming the builder and listing its arguments.

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
dataset, skipped = build("activitynet", video_root="anet/videos", split="val_1", annotation_dir="anet/captions")
```
"""

import inspect

from .activitynet import build_activitynet
from .common import argument_error
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


# Arguments renamed to the shared convention: named in the error, so that old configs say what to change.
RENAMED = {"webvid": {"csv_file": "annotation_file"}, "cc3m": {"image_root": "video_root"}}


def check_arguments(name: str, kwargs: dict) -> None:
    """
    Raises `ValueError` if `name` is not a registered builder, or `kwargs` lack one of its required arguments or
    hold one it does not take; the message names the builder and lists its arguments. Training scripts call this
    when they read their config, before anything is built.
    """
    if name not in BUILDERS:
        raise ValueError(f"Unknown dataset builder {name!r}; choose one of {sorted(BUILDERS)}.")
    builder = BUILDERS[name]
    parameters = inspect.signature(builder).parameters
    unknown = sorted(set(kwargs) - set(parameters))
    missing = [key for key, parameter in parameters.items()
               if parameter.default is parameter.empty and key not in kwargs]
    problems = []
    if unknown:
        renamed = [f"`{key}` is now `{RENAMED[name][key]}`" for key in unknown if key in RENAMED.get(name, {})]
        problems.append(f"unknown argument(s) {unknown}" + (f" ({'; '.join(renamed)})" if renamed else ""))
    if missing:
        problems.append(f"missing required argument(s) {missing}")
    if problems:
        raise argument_error(builder, " and ".join(problems), name)


def build(name: str, **kwargs):
    """Runs the builder registered as `name` with `kwargs` (checked by `check_arguments`); returns
    `(datasets.Dataset, SkipReport)`."""
    check_arguments(name, kwargs)
    return BUILDERS[name](**kwargs)


__all__ = [
    "BUILDERS",
    "RENAMED",
    "build",
    "build_activitynet",
    "build_cc3m",
    "build_didemo",
    "build_msrvtt",
    "build_synthetic",
    "build_vindlu_json",
    "build_webvid",
    "check_arguments",
]
