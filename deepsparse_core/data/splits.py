"""Train / val / test splits of a training folder: the split lists, their files and the seeded rule.

A training folder holds candidate caches (``*.safetensors``) and optional ``train.txt``, ``val.txt``,
``test.txt`` (one cache file name per line). Without them every cache is training data.
``deepsparse prepare`` splits whole CTs (all pieces and variants of one CT together);
:func:`write_splits` splits the caches of a folder made otherwise. Both use :func:`assign`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..atomic import write_text
from ..errors import InputError

SPLITS = ("train", "val", "test")


def check_fractions(fractions) -> list[float]:
    """Three finite, non-negative split fractions (train, val, test) with a positive sum."""
    try:
        values = [float(f) for f in fractions]
    except (TypeError, ValueError):
        raise InputError(f"split fractions must be 3 numbers (train, val, test), got {fractions!r}") from None
    if len(values) != 3 or not all(math.isfinite(f) and f >= 0 for f in values) or sum(values) <= 0:
        raise InputError(f"split fractions must be 3 non-negative numbers (train, val, test), got {fractions}")
    return values


def split_counts(n: int, fractions) -> tuple[int, int, int]:
    """(train, val, test) counts of ``n`` items: val and test get ``round(n f / sum)`` and at least one
    when their fraction is > 0, as long as one item stays for training (test gives way first)."""
    fractions = check_fractions(fractions)
    total = sum(fractions)
    n_val, n_test = (max(1, round(n * f / total)) if f > 0 else 0 for f in fractions[1:])
    keep = 1 if fractions[0] > 0 else 0
    while n_val + n_test > n - keep and (n_val or n_test):
        if n_test >= n_val and n_test:
            n_test -= 1
        else:
            n_val -= 1
    return n - n_val - n_test, n_val, n_test


def assign(names, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> dict[str, str]:
    """``{name: split}``: the sorted names in a seeded random order, val first, then test, then train."""
    names = sorted(names)
    _, n_val, n_test = split_counts(len(names), fractions)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    split = {n: "val" for n in order[:n_val]}
    split.update({n: "test" for n in order[n_val:n_val + n_test]})
    split.update({n: "train" for n in order[n_val + n_test:]})
    return split


def write_split_lists(folder: str | Path, split_of: dict[str, str]) -> dict[str, list[str]]:
    """Write ``train.txt``, ``val.txt``, ``test.txt`` of ``folder`` from ``{file name: split}``."""
    lists = {s: sorted(n for n, v in split_of.items() if v == s) for s in SPLITS}
    for split, files in lists.items():
        write_text(Path(folder) / f"{split}.txt", "".join(f"{n}\n" for n in files))
    return lists


def cache_files(folder: str | Path) -> list[str]:
    """Names of the candidate cache files (``*.safetensors``) in ``folder``, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"training data folder not found: {folder}")
    return sorted(p.name for p in folder.glob("*.safetensors") if not p.name.startswith("."))


def has_split_files(folder: str | Path) -> bool:
    return any((Path(folder) / f"{s}.txt").exists() for s in SPLITS)


def split_files(folder: str | Path, split: str) -> list[str]:
    """Cache file names of ``split``; without split files, all files are 'train' and the others empty."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    folder = Path(folder)
    names = cache_files(folder)
    if not has_split_files(folder):
        return names if split == "train" else []
    path = folder / f"{split}.txt"
    listed = [line.strip() for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    missing = sorted(set(listed) - set(names))
    if missing:
        raise InputError(f"{path} lists files that are not in {folder}: {', '.join(missing[:5])}")
    return listed


def write_splits(folder: str | Path, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> dict[str, list[str]]:
    """Split the cache files of ``folder`` (seeded, :func:`assign`), write the split files and return
    the lists."""
    names = cache_files(folder)
    if not names:
        raise InputError(f"no candidate cache files (*.safetensors) in {folder}")
    return write_split_lists(folder, assign(names, fractions, seed))


__all__ = ["SPLITS", "check_fractions", "split_counts", "assign", "write_split_lists", "cache_files",
           "has_split_files", "split_files", "write_splits"]
