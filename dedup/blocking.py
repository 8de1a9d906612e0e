"""Candidate pairs from several blocking passes, without repeats and in bounded chunks.

A pair is a candidate when both records agree on every key of some pass. A pass skips the pairs an
earlier pass already produced (they agree on that pass's keys), so the union has no repeats without
ever holding all pairs to deduplicate them; pairs are produced block size by block size and handed
on in chunks. Blocks larger than ``max_block_size`` (a placeholder phone shared by hundreds) are
skipped: they say nothing about identity.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .normalise import block_column, block_hash, blocking_key
from .spec import Spec


@dataclass
class BlockingStats:
    passes: list[dict] = field(default_factory=list)


def pass_codes(prepared: pd.DataFrame, spec: Spec, parts: int = 1) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per pass, an integer block code per record (-1: the record has no key for this pass), and
    the partition (of ``parts``) of each block: a hash of the block's key, the same in every process."""
    codes_, part_ = [], []
    for p, fields in enumerate(spec.blocking):
        col = block_column(p)
        h = prepared[col].to_numpy(dtype=np.int64) if col in prepared else \
            block_hash(blocking_key(prepared, fields))
        codes, keys = pd.factorize(h)
        codes = codes.astype(np.int64)
        codes[h == 0] = -1  # no key for this pass
        codes_.append(codes)
        if parts > 1:
            part_.append((keys.view(np.uint64) % np.uint64(parts)).astype(np.int64))
    return codes_, part_


def candidate_pairs(prepared: pd.DataFrame, spec: Spec, chunk: int = 1_000_000,
                    only: np.ndarray | None = None, stats: BlockingStats | None = None,
                    part: tuple[int, int] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (i, j) arrays of record positions, i < j, at most about ``chunk`` pairs at a time.

    ``only``: a boolean mask of records whose pairs are wanted (an incremental run's new and
    changed archives); pairs between two other records are not produced.

    ``part``: (k, n) — only the pairs of blocks whose key hashes to partition k of n, in every pass.
    A pair comes from one block of one pass (the first pass it agrees on), so the n partitions
    together give exactly the pairs of the whole run, each once: independent tasks for a cluster.
    """
    k, n = part if part is not None else (0, 1)
    codes, parts = pass_codes(prepared, spec, n)
    buf_i: list[np.ndarray] = []
    buf_j: list[np.ndarray] = []
    size = 0
    for p, code in enumerate(codes):
        produced = 0
        mine = parts[p] == k if n > 1 else None
        for i, j in _pass_pairs(code, spec.max_block_size, only, mine):
            earlier = np.zeros(len(i), dtype=bool)
            for q in range(p):
                cq = codes[q]
                earlier |= (cq[i] == cq[j]) & (cq[i] >= 0)
            i, j = i[~earlier], j[~earlier]
            if only is not None:
                keep = only[i] | only[j]
                i, j = i[keep], j[keep]
            produced += len(i)
            buf_i.append(i)
            buf_j.append(j)
            size += len(i)
            if size >= chunk:
                yield np.concatenate(buf_i), np.concatenate(buf_j)
                buf_i, buf_j, size = [], [], 0
        if stats is not None:
            stats.passes.append({"pass": "+".join(spec.blocking[p]), "pairs": produced})
    if size:
        yield np.concatenate(buf_i), np.concatenate(buf_j)


def _pass_pairs(code: np.ndarray, max_block: int, only: np.ndarray | None, blocks: np.ndarray | None = None):
    """All within-block pairs of one pass, grouped by block size (vectorised per size); ``blocks``:
    which block codes to take (all when None)."""
    members = np.flatnonzero(code >= 0)
    if not len(members):
        return
    order = members[np.argsort(code[members], kind="stable")]
    c = code[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    sizes = np.diff(np.r_[starts, len(c)])
    ok = (sizes >= 2) & (sizes <= max_block)
    if blocks is not None:
        ok &= blocks[c[starts]]
    if only is not None:  # keep blocks that hold at least one wanted record
        has = np.add.reduceat(only[order].astype(np.int64), starts) > 0
        ok &= has
    starts, sizes = starts[ok], sizes[ok]
    for s in np.unique(sizes):
        st = starts[sizes == s]
        a, b = np.triu_indices(s, 1)
        for part in np.array_split(st, max(1, len(st) * len(a) // 2_000_000 + 1)):
            i = order[part[:, None] + a[None, :]].ravel()
            j = order[part[:, None] + b[None, :]].ravel()
            yield np.minimum(i, j), np.maximum(i, j)


def training_pairs(prepared: pd.DataFrame, fields: list[str], cap: int, rng: np.random.Generator,
                   max_block: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Pairs agreeing on ``fields`` for an EM training session, at most about ``cap`` of them
    (whole blocks are sampled, so within-block structure is kept)."""
    codes, _ = pd.factorize(blocking_key(prepared, fields), use_na_sentinel=True)
    counts = np.bincount(codes[codes >= 0]) if (codes >= 0).any() else np.array([], dtype=int)
    pairs_per_block = counts * (counts - 1) // 2
    usable = np.flatnonzero((counts >= 2) & (counts <= max_block))
    order = rng.permutation(usable)
    take = order[np.cumsum(pairs_per_block[order]) <= cap]
    keep = np.isin(codes, take)
    sub = np.where(keep, codes, -1).astype(np.int64)
    left, right = [], []
    for i, j in _pass_pairs(sub, max_block, None):
        left.append(i)
        right.append(j)
    if not left:
        return np.array([], dtype=np.int64), np.array([], dtype=np.int64)
    return np.concatenate(left), np.concatenate(right)
