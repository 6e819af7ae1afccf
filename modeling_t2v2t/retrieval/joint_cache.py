"""On-disk store of indexed videos' joint-encoder caches (`T2V2TModel.build_joint_cache`), so `VideoRetriever` can
rerank without decoding a video again.

Each cached field (fusion keys/values, text→video queries, bypass logits, the video embedding) is one flat binary
file of fixed-size rows, appended as videos are indexed and read back by memory-mapping (numpy): only the
candidates' rows are paged in, whatever the index size. `rows.bin` says which index row each slot belongs to (videos
added with `add_embeddings` have none and are decoded at rerank time, as without the store). A hand-written
append-only layout rather than safetensors: safetensors files cannot be appended to, and the index grows with every
`index_videos` call.
"""

import json
import os
import shutil
import tempfile

import numpy as np
import torch
from transformers.utils import logging

logger = logging.get_logger(__name__)

# The encoding fields a cached rerank reads (video_embeds only for rerank_score="vtm+vtc").
FIELDS = ("fusion_keys", "fusion_values", "t2v_queries", "t2v_bypass_logits", "video_embeds")
META_NAME = "joint_cache.json"
_DTYPES = {"float16": np.float16, "float32": np.float32}


class JointCacheStore:
    """
    Append-only, memory-mapped store of per-video joint-encoder caches.

    Args:
        dtype (`str`, defaults to `"float16"`): storage precision (`"float16"` halves the size; `"float32"` keeps
            float32 models' scores bit-for-bit equal to the uncached path).
        directory (`str`, *optional*): where the files live; default a temporary folder, removed with the store.
    """

    def __init__(self, dtype: str = "float16", directory: str | None = None):
        if dtype not in _DTYPES:
            raise ValueError(f"JointCacheStore dtype={dtype!r} is invalid: must be one of {sorted(_DTYPES)}.")
        self.dtype = dtype
        self._tempdir = None
        if directory is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="t2v2t_joint_cache_")
            directory = self._tempdir.name
        self.directory = directory
        self._read_only = False
        self._shapes: dict[str, list[int]] = {}
        self._slot_of_row: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._slot_of_row)

    def __contains__(self, row: int) -> bool:
        return row in self._slot_of_row

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, f"{name}.bin")

    def _make_writable(self) -> None:
        """A loaded store is never modified in place: the first append copies it to a temporary folder."""
        if not self._read_only:
            return
        self._tempdir = tempfile.TemporaryDirectory(prefix="t2v2t_joint_cache_")
        for name in (*self._shapes, "rows"):
            shutil.copyfile(self._path(name), os.path.join(self._tempdir.name, f"{name}.bin"))
        self.directory, self._read_only = self._tempdir.name, False

    def append(self, rows: list[int], encoding) -> None:
        """Store the cache of index rows `rows` from a `T2V2TVideoEncoding` holding one row per video."""
        self._make_writable()
        fields = {name: encoding[name] for name in FIELDS if encoding.get(name) is not None}
        if "fusion_keys" not in fields:
            raise ValueError("JointCacheStore.append() needs an encoding with its joint cache (build_joint_cache).")
        for name, tensor in fields.items():
            shape = list(tensor.shape[1:])
            if self._shapes.setdefault(name, shape) != shape:
                raise ValueError(f"JointCacheStore: field {name} has rows of shape {shape}, the store holds "
                                 f"{self._shapes[name]} (a different model or frame count).")
            if len(tensor) != len(rows):
                raise ValueError(f"JointCacheStore: {len(rows)} rows but field {name} holds {len(tensor)}.")
        if set(fields) != set(self._shapes):
            raise ValueError(f"JointCacheStore: got fields {sorted(fields)}, the store holds {sorted(self._shapes)}.")
        for name, tensor in fields.items():
            with open(self._path(name), "ab") as file:
                file.write(tensor.detach().float().cpu().numpy().astype(_DTYPES[self.dtype]).tobytes())
        with open(self._path("rows"), "ab") as file:
            file.write(np.asarray(rows, dtype=np.int64).tobytes())
        for row in rows:
            self._slot_of_row[row] = len(self._slot_of_row)

    def get(self, rows: list[int], dtype: torch.dtype, device) -> dict[str, torch.Tensor]:
        """The cached fields of index rows `rows` (all in the store), stacked: {field: (len(rows), ...)}."""
        slots = np.asarray([self._slot_of_row[row] for row in rows])
        out = {}
        for name, shape in self._shapes.items():
            array = np.memmap(self._path(name), dtype=_DTYPES[self.dtype], mode="r", shape=(len(self), *shape))
            out[name] = torch.from_numpy(np.ascontiguousarray(array[slots])).to(device=device, dtype=dtype)
        return out

    def save(self, directory: str) -> None:
        """Copy the store to `directory` (files + `joint_cache.json`)."""
        os.makedirs(directory, exist_ok=True)
        if len(self) and os.path.abspath(directory) != os.path.abspath(self.directory):
            for name in (*self._shapes, "rows"):
                shutil.copyfile(self._path(name), os.path.join(directory, f"{name}.bin"))
        with open(os.path.join(directory, META_NAME), "w") as file:
            json.dump({"dtype": self.dtype, "num_videos": len(self), "shapes": self._shapes}, file, indent=2)

    @classmethod
    def load(cls, directory: str) -> "JointCacheStore":
        """Open a saved store read-only (memory-mapped; appends go to a temporary copy)."""
        with open(os.path.join(directory, META_NAME)) as file:
            meta = json.load(file)
        store = cls(meta["dtype"], directory)
        store._read_only = True
        store._shapes = {name: list(shape) for name, shape in meta["shapes"].items()}
        rows = np.fromfile(store._path("rows"), dtype=np.int64)
        if len(rows) != meta["num_videos"]:
            raise ValueError(f"{directory}/rows.bin holds {len(rows)} rows, {META_NAME} says {meta['num_videos']}.")
        for name, shape in store._shapes.items():
            expected = len(rows) * int(np.prod(shape)) * np.dtype(_DTYPES[store.dtype]).itemsize
            if os.path.getsize(store._path(name)) != expected:
                raise ValueError(f"{directory}/{name}.bin has {os.path.getsize(store._path(name))} bytes, expected "
                                 f"{expected} for {len(rows)} videos of shape {shape}: the store is truncated.")
        store._slot_of_row = {int(row): slot for slot, row in enumerate(rows)}
        return store

    def close(self) -> None:
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None


__all__ = ["JointCacheStore"]
