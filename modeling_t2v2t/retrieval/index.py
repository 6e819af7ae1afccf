"""Inner-product search over an embedding matrix: exact (torch) and approximate (faiss) backends.

Every backend implements `EmbeddingIndex`: `add(embeddings)` appends rows, `search(queries, k)` returns the `k`
highest inner products per query as `(scores, indices)`, both `(Q, k')` tensors with `k' = min(k, len(index))`,
best first. Embeddings are stored as float32; the inner product is the similarity (T2V2T's video embeddings are
means of unit frame embeddings, so their norm is below 1 and must not be re-normalised).

- `ExactIndex`: torch matmul + top-k, block by block over the database, so memory stays bounded (one block of
  scores per query batch) even for 1M x 256. Exact; fine up to ~100k vectors per query, or millions when queries
  come in batches (then it is one large matrix product).
- `FaissIndex`: any faiss index from a factory string (`"IVF4096,Flat"`, `"HNSW32"`, ...) with the inner-product
  metric, built on demand. faiss is optional (`pip install faiss-cpu`) and imported only when this backend is used.
  The default, `"PQ{E/2}x4fs,RFlat"` (4-bit fast-scan product quantisation of every vector, then the best
  `k * k_factor` candidates re-scored with the exact vectors), is the one that kept recall@10 >= 0.95 at 1M random
  256-d vectors in a few ms per query on 2 cores (`benchmarks/search_latency.py`); IVF and HNSW need far more work
  for that recall on unclustered data, though they do well on clustered real embeddings.

Saved indexes are folders: `index.json` (backend and parameters) plus `embeddings.safetensors` (exact, or vectors
a faiss index has not been built on yet) and/or `index.faiss` (`faiss.write_index`). `load_index` reads either.

Example:

```python
>>> import torch
>>> from modeling_t2v2t.retrieval.index import build_index, load_index
>>> database = torch.nn.functional.normalize(torch.randn(1000, 16), dim=-1)
>>> index = build_index(database)  # exact
>>> scores, indices = index.search(database[:3], k=5)
>>> indices[:, 0].tolist()  # each vector is its own nearest neighbour
[0, 1, 2]
>>> index.save("my_index"); len(load_index("my_index"))
1000
```

This file imports only torch, numpy, safetensors, transformers and the standard library (faiss lazily).
"""

import abc
import json
import math
import os
import time
from typing import ClassVar

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers.utils import logging

logger = logging.get_logger(__name__)

INDEX_CONFIG_NAME = "index.json"
EMBEDDINGS_NAME = "embeddings.safetensors"
FAISS_INDEX_NAME = "index.faiss"
# Below this many vectors an exact scan takes well under a millisecond per query and an ANN index only loses recall.
EXACT_SEARCH_BELOW = 4096
# k-means warns below 39 training points per centroid (faiss' own threshold); we wait for that many before training.
MIN_POINTS_PER_CENTROID = 39
_FORMAT_VERSION = 1
DEFAULT_K_FACTOR = 50
# faiss' ParameterSpace names the refinement factor of IndexRefine "k_factor_rf".
_FAISS_PARAMETER_NAMES = {"k_factor": "k_factor_rf"}


def _as_matrix(embeddings, name: str, dim: int | None = None) -> torch.Tensor:
    """A (N, E) float32 CPU tensor from a tensor or array; a 1-D input is one row."""
    if isinstance(embeddings, np.ndarray):
        embeddings = torch.from_numpy(embeddings)
    if not isinstance(embeddings, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor or a numpy array, got {type(embeddings).__name__}.")
    if embeddings.ndim == 1:
        embeddings = embeddings[None]
    if embeddings.ndim != 2:
        raise ValueError(f"{name} must have shape (N, embed_dim), got {tuple(embeddings.shape)}.")
    if not embeddings.is_floating_point():
        raise ValueError(f"{name} must hold floating-point numbers, got dtype {embeddings.dtype}.")
    if dim is not None and embeddings.shape[1] != dim:
        raise ValueError(f"{name} has embed_dim {embeddings.shape[1]} but the index holds {dim}-d embeddings.")
    embeddings = embeddings.detach().to(device="cpu", dtype=torch.float32).contiguous()
    # A NaN scores NaN against every query and top-k would rank it arbitrarily: refuse it here.
    if not bool(torch.isfinite(embeddings).all()):
        row = int((~torch.isfinite(embeddings)).any(1).nonzero()[0, 0])
        raise ValueError(f"{name} contains NaN or infinite values (first in row {row}).")
    return embeddings


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    return int(k)


def exact_search(queries: torch.Tensor, blocks, k: int, query_batch_size: int = 256):
    """Top-`k` inner products of `queries` (Q, E) over the rows of `blocks` (a list of (B_i, E) tensors, the database
    split into consecutive pieces). Returns `(scores, indices)` of shape (Q, min(k, N)), best first.

    Memory: one (query_batch_size, B_i) score block at a time, never (Q, N).
    """
    total = sum(len(block) for block in blocks)
    k = min(k, total)
    num_queries = queries.shape[0]
    out_scores = torch.empty(num_queries, k, dtype=torch.float32)
    out_indices = torch.empty(num_queries, k, dtype=torch.long)
    for start in range(0, num_queries, query_batch_size):
        query = queries[start : start + query_batch_size]  # (q, E)
        best_scores = best_indices = None
        offset = 0
        for block in blocks:
            scores = query @ block.T  # (q, B)
            top_scores, top_indices = scores.topk(min(k, len(block)), dim=1)
            top_indices += offset
            offset += len(block)
            if best_scores is None:
                best_scores, best_indices = top_scores, top_indices
                continue
            # Merge this block's top-k with the running top-k: the global top-k is within their union.
            merged_scores = torch.cat([best_scores, top_scores], dim=1)
            merged_indices = torch.cat([best_indices, top_indices], dim=1)
            best_scores, order = merged_scores.topk(min(k, merged_scores.shape[1]), dim=1)
            best_indices = merged_indices.gather(1, order)
        out_scores[start : start + len(query)] = best_scores
        out_indices[start : start + len(query)] = best_indices
    return out_scores, out_indices


class EmbeddingIndex(abc.ABC):
    """
    Interface of the search backends: a growing database of `dim`-d float32 rows (row `i` is the `i`-th added
    embedding) searched by inner product.

    - `add(embeddings)`: append (N, dim) rows (a tensor or array; `dim` is fixed by the first call).
    - `search(queries, k) -> (scores, indices)`: queries (Q, dim) (or one (dim,) vector) -> two (Q, min(k, len))
      tensors, float32 scores and int64 row numbers, best first. An approximate backend may return fewer hits for a
      query; the missing places hold index -1 and score -inf.
    - `save(directory)` / `load_index(directory)`; `len(index)`; `dim`; `backend`.
    """

    backend: ClassVar[str]

    def __init__(self, dim: int | None = None):
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise ValueError(f"dim must be a positive integer or None, got {dim!r}.")
        self.dim = dim

    @abc.abstractmethod
    def add(self, embeddings) -> None: ...

    @abc.abstractmethod
    def search(self, queries, k: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    @abc.abstractmethod
    def save(self, directory) -> None: ...

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def params(self) -> dict:
        """The constructor arguments that recreate this index (written to `index.json`)."""

    @classmethod
    def load(cls, directory) -> "EmbeddingIndex":
        """Load any saved index (the backend is read from `index.json`)."""
        return load_index(directory)

    def _prepare_queries(self, queries, k: int) -> tuple[torch.Tensor, int]:
        k = _check_k(k)
        if len(self) == 0:
            raise ValueError(f"The {self.backend} index is empty: add embeddings before searching.")
        return _as_matrix(queries, "queries", self.dim), k

    def _write_config(self, directory: str, **extra) -> None:
        config = {"format_version": _FORMAT_VERSION, "backend": self.backend, "num_embeddings": len(self),
                  "params": self.params(), **extra}
        with open(os.path.join(directory, INDEX_CONFIG_NAME), "w") as file:
            json.dump(config, file, indent=2)

    def __repr__(self) -> str:
        params = ", ".join(f"{key}={value!r}" for key, value in self.params().items())
        return f"{type(self).__name__}({params}, size={len(self)})"


class ExactIndex(EmbeddingIndex):
    """
    Exact inner-product search with torch: `queries @ block.T` and top-k per database block, merged across blocks.

    Rows live in fixed-size float32 blocks of `block_size` rows, so adding never copies the database and a search
    holds at most one `(query_batch_size, block_size)` score matrix (64 MiB with the defaults).

    Args:
        dim (`int`, *optional*): embedding size; taken from the first `add` when omitted.
        block_size (`int`, defaults to 65536): database rows per block (and per score matrix).
        query_batch_size (`int`, defaults to 256): queries scored together against a block.

    Example:

    ```python
    >>> index = ExactIndex(dim=4)
    >>> index.add(torch.eye(4))
    >>> index.search(torch.tensor([[0.0, 0.9, 0.1, 0.0]]), k=2)[1].tolist()
    [[1, 2]]
    ```
    """

    backend = "exact"

    def __init__(self, dim: int | None = None, block_size: int = 65536, query_batch_size: int = 256):
        super().__init__(dim)
        for name, value in (("block_size", block_size), ("query_batch_size", query_batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        self.block_size = block_size
        self.query_batch_size = query_batch_size
        self._blocks: list[torch.Tensor] = []  # each (block_size, dim); only the last one is partly filled
        self._size = 0

    def params(self) -> dict:
        return {"dim": self.dim, "block_size": self.block_size, "query_batch_size": self.query_batch_size}

    def __len__(self) -> int:
        return self._size

    def _filled_blocks(self) -> list[torch.Tensor]:
        last_fill = self._size - (len(self._blocks) - 1) * self.block_size
        return self._blocks[:-1] + [self._blocks[-1][:last_fill]] if self._blocks else []

    @property
    def embeddings(self) -> torch.Tensor:
        """All rows as one (N, dim) tensor (a copy)."""
        if not self._blocks:
            return torch.empty(0, self.dim or 0)
        return torch.cat(self._filled_blocks())

    def add(self, embeddings) -> None:
        embeddings = _as_matrix(embeddings, "embeddings", self.dim)
        self.dim = embeddings.shape[1]
        start = 0
        while start < len(embeddings):
            fill = self._size - (len(self._blocks) - 1) * self.block_size if self._blocks else self.block_size
            if fill == self.block_size:
                self._blocks.append(torch.empty(self.block_size, self.dim))
                fill = 0
            take = min(self.block_size - fill, len(embeddings) - start)
            self._blocks[-1][fill : fill + take] = embeddings[start : start + take]
            self._size += take
            start += take

    def search(self, queries, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        queries, k = self._prepare_queries(queries, k)
        return exact_search(queries, self._filled_blocks(), k, self.query_batch_size)

    def save(self, directory) -> None:
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        save_file({"embeddings": self.embeddings}, os.path.join(directory, EMBEDDINGS_NAME))
        self._write_config(directory)

    @classmethod
    def _from_saved(cls, directory: str, config: dict) -> "ExactIndex":
        index = cls(**config["params"])
        for block in _read_embeddings(os.path.join(directory, EMBEDDINGS_NAME), index.block_size):
            index.add(block)
        return index


def _read_embeddings(path: str, block_size: int):
    """Yield the saved (N, dim) matrix in slices of `block_size` rows (no second full copy in memory)."""
    with safe_open(path, framework="pt") as file:
        rows = file.get_slice("embeddings")
        total = rows.get_shape()[0]
        for start in range(0, total, block_size):
            yield rows[start : start + block_size]


def _import_faiss():
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            "The 'faiss' index backend needs faiss: `pip install faiss-cpu` (or `pip install 't2v2t[faiss]'`), "
            "or use backend='exact'."
        ) from err
    return faiss


def default_factory(dim: int) -> str:
    """The default faiss index: fast-scan PQ over 2-d sub-vectors (1-d for odd `dim`) with exact re-scoring."""
    return f"PQ{dim // 2 if dim % 2 == 0 else dim}x4fs,RFlat"


def ivf_nlist(num_vectors: int) -> int:
    """A usual IVF list count for `num_vectors` vectors: about 4 * sqrt(N), rounded to a multiple of 64."""
    return max(64, int(round(4 * math.sqrt(max(num_vectors, 1)) / 64)) * 64)


class FaissIndex(EmbeddingIndex):
    """
    Approximate inner-product search with faiss (`pip install faiss-cpu`), any index from a factory string built
    with `METRIC_INNER_PRODUCT`: `"HNSW32"` (graph, no training; tune `efSearch`), `"IVF4096,Flat"` (inverted
    lists; tune `nprobe`), `"IVF4096,SQ8"`, `"Flat"` (exact, faiss' BLAS scan), ...

    The faiss index is built on demand: added vectors are held (and searched exactly) until the first `search`,
    `build()` or `save` finds at least `exact_below` of them (and, for an index that needs training such as IVF, at
    least 39 per list, faiss' own minimum for k-means). The index is then trained on those vectors (a random sample
    of at most `max_train_size`) and every vector is added to it; later `add` calls go straight into the index. So
    tiny databases keep exact search, and an IVF is trained on the data rather than on the first small batch.

    Args:
        dim (`int`, *optional*): embedding size; taken from the first `add` when omitted.
        factory (`str`, *optional*): `faiss.index_factory` description; default `default_factory(dim)`,
            `"PQ{dim/2}x4fs,RFlat"` with `k_factor=50`.
        nprobe (`int`, *optional*): IVF lists visited per query (recall vs speed). Settable later.
        efSearch (`int`, *optional*): HNSW candidate list size per query (recall vs speed). Settable later.
        k_factor (`int`, *optional*): for a refined index (`",RFlat"` suffix), re-score `k * k_factor` candidates
            with the exact vectors; default 50 for such an index. Settable later.
        efConstruction (`int`, *optional*): HNSW build-time candidate list size (faiss default 40).
        exact_below (`int`, defaults to 4096): build the faiss index only from this many vectors on.
        max_train_size (`int`, *optional*): train on a random sample of at most this many vectors (k-means cost
            grows with it; faiss itself caps at 256 per list).
        seed (`int`, defaults to 0): seed of that sample.

    Example:

    ```python
    >>> import torch
    >>> database = torch.nn.functional.normalize(torch.randn(20000, 32), dim=-1)
    >>> index = FaissIndex(factory="IVF256,Flat", nprobe=16)
    >>> index.add(database)
    >>> scores, indices = index.search(database[:2], k=10)  # trains the IVF on first use
    >>> indices[:, 0].tolist()
    [0, 1]
    >>> index.nprobe = 64  # more recall, more time
    ```
    """

    backend = "faiss"

    def __init__(
        self,
        dim: int | None = None,
        factory: str | None = None,
        nprobe: int | None = None,
        efSearch: int | None = None,
        k_factor: int | None = None,
        efConstruction: int | None = None,
        exact_below: int = EXACT_SEARCH_BELOW,
        max_train_size: int | None = None,
        seed: int = 0,
    ):
        super().__init__(dim)
        if factory is not None and (not isinstance(factory, str) or not factory.strip()):
            raise ValueError(f"factory must be a faiss index_factory string such as 'HNSW32', got {factory!r}.")
        for name, value in (("nprobe", nprobe), ("efSearch", efSearch), ("k_factor", k_factor),
                            ("efConstruction", efConstruction), ("max_train_size", max_train_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}.")
        if isinstance(exact_below, bool) or not isinstance(exact_below, int) or exact_below < 0:
            raise ValueError(f"exact_below must be a non-negative integer, got {exact_below!r}.")
        self._faiss = _import_faiss()  # fail at construction, not at the first search
        self.factory = factory
        self.efConstruction = efConstruction
        self.exact_below = exact_below
        self.max_train_size = max_train_size
        self.seed = seed
        self._search_params = {"nprobe": nprobe, "efSearch": efSearch, "k_factor": k_factor}
        self.index = None  # the faiss index once built
        self._nlist = None  # IVF list count, known once `dim` is
        self._pending: list[torch.Tensor] = []  # vectors not yet in the faiss index
        self._num_pending = 0
        if dim is not None:
            self._check_factory(dim)

    # ----- parameters -----------------------------------------------------------------------------------------
    def params(self) -> dict:
        return {"dim": self.dim, "factory": self.factory, "nprobe": self.nprobe, "efSearch": self.efSearch,
                "k_factor": self.k_factor, "efConstruction": self.efConstruction, "exact_below": self.exact_below,
                "max_train_size": self.max_train_size, "seed": self.seed}

    @property
    def nprobe(self) -> int | None:
        return self._search_params["nprobe"]

    @nprobe.setter
    def nprobe(self, value: int | None) -> None:
        self._set_search_param("nprobe", value)

    @property
    def efSearch(self) -> int | None:  # noqa: N802 (faiss' name)
        return self._search_params["efSearch"]

    @efSearch.setter
    def efSearch(self, value: int | None) -> None:  # noqa: N802
        self._set_search_param("efSearch", value)

    @property
    def k_factor(self) -> int | None:
        return self._search_params["k_factor"]

    @k_factor.setter
    def k_factor(self, value: int | None) -> None:
        self._set_search_param("k_factor", value)

    def _set_search_param(self, name: str, value) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {value!r}.")
        previous, self._search_params[name] = self._search_params[name], value
        if self.index is not None:
            try:
                self._apply_search_params()
            except ValueError:
                self._search_params[name] = previous  # keep the index usable
                raise

    def _apply_search_params(self) -> None:
        # ParameterSpace reaches the IVF or HNSW inside wrappers (IndexIDMap, refine, pre-transforms).
        space = self._faiss.ParameterSpace()
        for name, value in self._search_params.items():
            if value is None:
                continue
            try:
                space.set_index_parameter(self.index, _FAISS_PARAMETER_NAMES.get(name, name), value)
            except RuntimeError as err:
                raise ValueError(f"{name}={value} does not apply to a faiss '{self.factory}' index: {err}") from err

    def _check_factory(self, dim: int) -> None:
        if self.factory is None:
            self.factory = default_factory(dim)
        try:
            probe = self._faiss.index_factory(dim, self.factory, self._faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as err:
            raise ValueError(f"faiss cannot build index '{self.factory}' for {dim}-d vectors: {err}") from err
        if self.k_factor is None and isinstance(self._faiss.downcast_index(probe), self._faiss.IndexRefine):
            # faiss' default of 1 re-scores only k candidates, which throws most of the refinement's recall away.
            self._search_params["k_factor"] = DEFAULT_K_FACTOR
        ivf = self._faiss.try_extract_index_ivf(probe)
        self._nlist = ivf.nlist if ivf is not None else None

    @property
    def min_build_size(self) -> int:
        """Vectors needed before the faiss index is built (until then, search is exact)."""
        needed = self.exact_below
        if self.dim is not None and self._nlist is not None:
            needed = max(needed, MIN_POINTS_PER_CENTROID * self._nlist)
        return needed

    @property
    def is_built(self) -> bool:
        return self.index is not None

    # ----- data -----------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return (self.index.ntotal if self.index is not None else 0) + self._num_pending

    def add(self, embeddings) -> None:
        embeddings = _as_matrix(embeddings, "embeddings", self.dim)
        if self.dim is None:
            self._check_factory(embeddings.shape[1])
            self.dim = embeddings.shape[1]
        if self.index is not None:
            self.index.add(embeddings.numpy())
            return
        self._pending.append(embeddings)
        self._num_pending += len(embeddings)

    def build(self, force: bool = False) -> bool:
        """Train (if needed) and fill the faiss index with the held vectors; returns whether it is built.

        Without `force`, nothing happens below `min_build_size` vectors. `force=True` builds anyway (an IVF still
        needs at least `nlist` vectors).
        """
        if self.index is not None:
            return True
        if not self._num_pending or (not force and self._num_pending < self.min_build_size):
            return False
        vectors = torch.cat(self._pending).numpy() if len(self._pending) > 1 else self._pending[0].numpy()
        index = self._faiss.index_factory(self.dim, self.factory, self._faiss.METRIC_INNER_PRODUCT)
        if self.efConstruction is not None:
            hnsw = getattr(self._faiss.downcast_index(index), "hnsw", None)
            if hnsw is None:
                raise ValueError(f"efConstruction applies to HNSW indexes, not to '{self.factory}'.")
            hnsw.efConstruction = self.efConstruction
        start = time.perf_counter()
        if not index.is_trained:
            if self._nlist is not None and len(vectors) < self._nlist:
                raise ValueError(f"faiss '{self.factory}' needs at least nlist={self._nlist} vectors to train, got "
                                 f"{len(vectors)}; use a smaller nlist or backend='exact'.")
            train = vectors
            if self.max_train_size is not None and len(vectors) > self.max_train_size:
                rows = np.random.default_rng(self.seed).choice(len(vectors), self.max_train_size, replace=False)
                train = vectors[np.sort(rows)]
            logger.info("Training faiss '%s' on %d of %d vectors.", self.factory, len(train), len(vectors))
            index.train(train)
        logger.info("Adding %d vectors to faiss '%s'.", len(vectors), self.factory)
        index.add(vectors)
        logger.info("Built faiss '%s' over %d vectors in %.1f s.", self.factory, index.ntotal,
                    time.perf_counter() - start)
        self.index = index
        self._pending, self._num_pending = [], 0
        self._apply_search_params()
        return True

    def search(self, queries, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        queries, k = self._prepare_queries(queries, k)
        k = min(k, len(self))
        if not self.build():
            # Too few vectors for an ANN index to pay off: scan them exactly (as one block, not many small adds).
            if len(self._pending) > 1:
                self._pending = [torch.cat(self._pending)]
            return exact_search(queries, self._pending, k)
        scores, indices = self.index.search(queries.numpy(), k)
        scores, indices = torch.from_numpy(scores), torch.from_numpy(indices)
        scores[indices < 0] = -math.inf  # faiss pads missing hits with -1 and -FLT_MAX
        return scores, indices

    def save(self, directory) -> None:
        """Write `index.json`, plus `index.faiss` once built, or the held vectors while not built yet."""
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        for name in (FAISS_INDEX_NAME, EMBEDDINGS_NAME):  # no stale file from an earlier save
            if os.path.exists(os.path.join(directory, name)):
                os.remove(os.path.join(directory, name))
        if self.index is not None:
            self._faiss.write_index(self.index, os.path.join(directory, FAISS_INDEX_NAME))
        elif self._pending:
            save_file({"embeddings": torch.cat(self._pending)}, os.path.join(directory, EMBEDDINGS_NAME))
        self._write_config(directory, built=self.index is not None, faiss_version=self._faiss.__version__)

    @classmethod
    def _from_saved(cls, directory: str, config: dict) -> "FaissIndex":
        index = cls(**config["params"])
        if config.get("built"):
            index.index = index._faiss.read_index(os.path.join(directory, FAISS_INDEX_NAME))
            index._apply_search_params()
        elif config["num_embeddings"]:
            for block in _read_embeddings(os.path.join(directory, EMBEDDINGS_NAME), 65536):
                index.add(block)
        return index


BACKENDS = {"exact": ExactIndex, "faiss": FaissIndex}


def create_index(backend: str = "exact", dim: int | None = None, **params) -> EmbeddingIndex:
    """An empty index of `backend` (`"exact"` or `"faiss"`); `params` go to its constructor."""
    if backend not in BACKENDS:
        raise ValueError(f"Unknown index backend {backend!r}; choose one of {sorted(BACKENDS)}.")
    return BACKENDS[backend](dim=dim, **params)


def build_index(embeddings, backend: str = "exact", factory: str | None = None, **params) -> EmbeddingIndex:
    """
    An index over `embeddings` (N, E), ready to search.

    `backend="faiss"` builds `factory` (default: `default_factory(E)`, see `FaissIndex`) right away, so the build cost is paid here; `params` are `FaissIndex` arguments (`nprobe`,
    `efSearch`, ...). Below `EXACT_SEARCH_BELOW` vectors an ANN index cannot pay off, so an `ExactIndex` is
    returned instead (logged).

    Example:

    ```python
    >>> database = torch.nn.functional.normalize(torch.randn(50000, 64), dim=-1)
    >>> index = build_index(database, backend="faiss", factory="HNSW32", efSearch=128)
    ```
    """
    embeddings = _as_matrix(embeddings, "embeddings")
    if backend == "faiss" and len(embeddings) < params.get("exact_below", EXACT_SEARCH_BELOW):
        logger.info("Only %d embeddings: using exact search instead of faiss.", len(embeddings))
        backend, params = "exact", {}
    if backend == "faiss":
        index = create_index("faiss", dim=embeddings.shape[1], factory=factory, **params)
        index.add(embeddings)
        index.build(force=True)
        return index
    if factory is not None:
        raise ValueError(f"factory={factory!r} is a faiss setting; the exact backend takes none.")
    index = create_index(backend, dim=embeddings.shape[1], **params)
    index.add(embeddings)
    return index


def read_json_object(path: str) -> dict:
    """The JSON object in `path`; a `ValueError` naming the file when it is not valid JSON or not an object."""
    try:
        with open(path) as file:
            value = json.load(file)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}).") from error
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got a {type(value).__name__}.")
    return value


_TYPE_NAMES = {int: "an integer", str: "a string", dict: "an object", list: "a list", bool: "true/false",
               float: "a number", type(None): "null"}


def checked_field(config: dict, key: str, types: tuple, path: str, optional: bool = False):
    """`config[key]` when it is present and one of `types` (a bool is not an int, an int is a float); otherwise a
    `ValueError` naming the file and the field. A missing `optional` field is `None`."""
    if key not in config:
        if optional:
            return None
        raise ValueError(f"{path}: the required field {key!r} is missing.")
    value = config[key]
    matches = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not matches and not (float in types and isinstance(value, int) and not isinstance(value, bool)):
        expected = " or ".join(_TYPE_NAMES.get(kind, kind.__name__) for kind in types)
        raise ValueError(f"{path}: the field {key!r} must be {expected}, got {json.dumps(value)[:80]}.")
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        raise ValueError(f"{path}: the field {key!r} must not be negative, got {value}.")
    return value


def load_index(directory) -> EmbeddingIndex:
    """Load an index written by `EmbeddingIndex.save` (any backend). A malformed `index.json` (not JSON, a
    missing field, a field of the wrong type) raises `ValueError` naming the file and the field."""
    directory = os.fspath(directory)
    path = os.path.join(directory, INDEX_CONFIG_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No saved index in {directory}: {INDEX_CONFIG_NAME} is missing.")
    config = read_json_object(path)
    backend = checked_field(config, "backend", (str,), path)
    checked_field(config, "num_embeddings", (int,), path)
    checked_field(config, "params", (dict,), path)
    checked_field(config, "built", (bool,), path, optional=True)
    if backend not in BACKENDS:
        raise ValueError(f"{path} names unknown index backend {backend!r}; known: {sorted(BACKENDS)}.")
    index = BACKENDS[backend]._from_saved(directory, config)
    if len(index) != config["num_embeddings"]:
        raise ValueError(f"{directory}: index.json says {config['num_embeddings']} embeddings, the files hold "
                         f"{len(index)}.")
    return index


__all__ = [
    "EmbeddingIndex",
    "ExactIndex",
    "FaissIndex",
    "BACKENDS",
    "EXACT_SEARCH_BELOW",
    "build_index",
    "create_index",
    "default_factory",
    "exact_search",
    "ivf_nlist",
    "load_index",
]
