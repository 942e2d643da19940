"""The attribution store: atomic, resumable shards plus a manifest (no Lightning needed).

A dataset-scale run (:func:`foxcem.explain_dataset`) writes into one output directory:

* one *shard* per rank and batch, ``shard-<first index>-<digest>.safetensors`` (or ``.pt``), with
  the tensors ``indices`` (B,) int64 (dataset indices), ``attributions`` (B, ...), ``targets``
  (B,) and, when the explainer returns one, ``delta`` (B,); the name is derived from the batch's
  dataset indices, so a resumed run recognises finished work whatever its rank layout;
* ``manifest.json``, written once all ranks have finished: every shard, the explainer and its
  options, the sample count and whether the dataset is complete.

Every file is written to a temporary name in the same directory and renamed (``os.replace``), so
a killed run leaves complete shards and at most a stray ``.tmp`` file (ignored, and removed by the
next finished run) — never a half-written shard under its final name. Multi-node runs need the
output directory on a file system that every node sees.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from foxcem.io.config import config_digest, json_safe

__all__ = [
    "DamagedFileError",
    "ShardInfo",
    "MANIFEST_NAME",
    "load_attributions",
    "read_manifest",
    "scan_shards",
]

#: File name of the manifest in an output directory.
MANIFEST_NAME = "manifest.json"
#: Format tag of the manifest and of every shard's metadata.
FORMAT = "foxcem-attributions"
FORMAT_VERSION = 1
SHARD_PREFIX = "shard-"
SHARD_SUFFIXES = {"safetensors": ".safetensors", "torch": ".pt"}
TMP_SUFFIX = ".tmp"
#: What an unreadable shard is renamed to by a resumed run.
DAMAGED_SUFFIX = ".damaged"

PathLike = Union[str, "os.PathLike[str]"]


# ----------------------------------------------------------------------------------------------
# atomic files, shards and the manifest


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def shard_name(indices: torch.Tensor, file_format: str = "safetensors") -> str:
    """The file name of the shard holding dataset ``indices`` (B,): derived from the indices
    alone (first index and a digest of all of them)."""
    values = np.ascontiguousarray(indices.detach().cpu().numpy().astype("<i8"))
    digest = hashlib.sha1(values.tobytes()).hexdigest()[:16]
    return f"{SHARD_PREFIX}{int(values.min()):09d}-{digest}{SHARD_SUFFIXES[file_format]}"


def save_shard(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
) -> None:
    """Write one shard atomically; the format follows the suffix (``.safetensors`` or ``.pt``)."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    meta = {str(k): str(v) for k, v in metadata.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save

        data = save(tensors, metadata=meta)
    else:
        buffer = io.BytesIO()
        torch.save({"tensors": tensors, "metadata": meta}, buffer)
        data = buffer.getvalue()
    _atomic_write(path, data)


class DamagedFileError(ValueError):
    """A shard or manifest that cannot be read; the message names the file and the remedy."""


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0][:200] if lines else type(exc).__name__) or type(exc).__name__


def load_shard(
    path: PathLike, keys: Optional[Iterable[str]] = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (all, or only ``keys``) and the metadata of one shard.

    Raises:
        DamagedFileError: the file is truncated, garbage or not a shard; the message names it
            and says how to recover.
    """
    path = Path(path)
    try:
        tensors, metadata = _read_shard(path, keys)
        if not isinstance(tensors.get("indices", torch.empty(0)), torch.Tensor):
            raise ValueError("no index tensor")
        return tensors, metadata
    except Exception as exc:
        raise DamagedFileError(
            f"attribution shard {path} is damaged ({_first_line(exc)}): delete it and run "
            "explain_dataset again on the same output directory (resume, the default), which "
            "recomputes only its samples"
        ) from None


def _read_shard(
    path: Path, keys: Optional[Iterable[str]]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    wanted = None if keys is None else set(keys)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            names = [k for k in handle.keys() if wanted is None or k in wanted]
            tensors = {k: handle.get_tensor(k) for k in names}
        return tensors, metadata
    payload = torch.load(path, map_location="cpu", weights_only=True)
    tensors = {k: v for k, v in payload["tensors"].items() if wanted is None or k in wanted}
    return tensors, dict(payload["metadata"])


@dataclass
class ShardInfo:
    """One finished shard: its file, dataset indices (B,) and metadata."""

    path: Path
    indices: torch.Tensor
    metadata: dict[str, str]


def _shard_files(output_dir: Path) -> list[Path]:
    suffixes = tuple(SHARD_SUFFIXES.values())
    if not output_dir.is_dir():
        return []
    return sorted(
        p for p in output_dir.iterdir() if p.name.startswith(SHARD_PREFIX) and p.suffix in suffixes
    )


def scan_shards(output_dir: PathLike, set_aside: bool = False) -> list[ShardInfo]:
    """Every readable shard in ``output_dir`` (temporary files are ignored), sorted by name.

    A file that cannot be read as a shard (it cannot come from this package's atomic writes, but
    a copy may be damaged) is skipped with a warning naming it; its samples count as not done.
    With ``set_aside`` (a resumed run) it is also renamed to ``<name>.damaged``, so that the
    recomputed samples replace it and the finished directory loads.
    """
    shards = []
    for path in _shard_files(Path(output_dir)):
        try:
            tensors, metadata = load_shard(path, keys=("indices",))
            indices = tensors["indices"]
        except DamagedFileError as exc:  # recompute its samples
            note = ""
            if set_aside:
                path.replace(path.with_name(path.name + DAMAGED_SUFFIX))
                note = f"; renamed to {path.name}{DAMAGED_SUFFIX}, its samples are recomputed"
            warnings.warn(f"ignoring unreadable shard {path.name}: {exc}{note}", stacklevel=2)
            continue
        shards.append(ShardInfo(path, indices.long(), metadata))
    return shards


def stray_temporary_files(output_dir: PathLike) -> list[Path]:
    """Temporary files left by an interrupted write in ``output_dir``."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    return sorted(
        p for p in output_dir.iterdir() if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX)
    )


def build_manifest(
    output_dir: PathLike,
    config: Optional[Mapping[str, Any]] = None,
    expected_num_samples: Optional[int] = None,
    world_size: Optional[int] = None,
) -> dict[str, Any]:
    """Describe every finished shard of ``output_dir`` (see the module docstring)."""
    shards = scan_shards(output_dir)
    entries = []
    all_indices = []
    for shard in shards:
        meta = shard.metadata
        entries.append(
            {
                "file": shard.path.name,
                "num_samples": int(shard.indices.numel()),
                "first_index": int(shard.indices.min()),
                "last_index": int(shard.indices.max()),
                "rank": int(meta.get("rank", -1)),
                "batch_idx": int(meta.get("batch_idx", -1)),
                "config": meta.get("config"),
            }
        )
        all_indices.append(shard.indices)
    indices = torch.cat(all_indices) if all_indices else torch.empty(0, dtype=torch.long)
    unique = torch.unique(indices)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "num_shards": len(entries),
        "num_samples": int(unique.numel()),
        "duplicates": int(indices.numel() - unique.numel()),
        "expected_num_samples": expected_num_samples,
    }
    if expected_num_samples is not None:
        expected = torch.arange(expected_num_samples)
        missing = expected[~torch.isin(expected, unique)]
        manifest["num_missing"] = int(missing.numel())
        manifest["missing_preview"] = missing[:100].tolist()
        manifest["complete"] = bool(missing.numel() == 0)
    else:
        manifest["complete"] = None
    if shards:
        first = shards[0].metadata
        manifest["keys"] = json.loads(first.get("keys", "[]"))
        manifest["attribution_shape"] = json.loads(first.get("attribution_shape", "null"))
        manifest["attribution_dtype"] = first.get("attribution_dtype")
    if config is not None:
        manifest["config"] = json_safe(config)
        manifest["config_digest"] = config_digest(config)
    if world_size is not None:
        manifest["world_size"] = world_size
    manifest["shards"] = entries
    return manifest


def write_manifest(output_dir: PathLike, manifest: Mapping[str, Any]) -> Path:
    """Write ``manifest.json`` atomically; returns its path."""
    path = Path(output_dir) / MANIFEST_NAME
    _atomic_write(path, (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode())
    return path


def read_manifest(output_dir: PathLike) -> dict[str, Any]:
    """The manifest of ``output_dir``.

    Raises:
        FileNotFoundError: if the run has not finished (no manifest yet).
        DamagedFileError: the manifest cannot be read (the message says how to recover).
    """
    path = Path(output_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST_NAME} in {output_dir} (has the run finished?)")
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} manifest")
    except (ValueError, UnicodeDecodeError) as exc:
        raise DamagedFileError(
            f"{path} is damaged ({_first_line(exc)}): run explain_dataset again on the same "
            "output directory (resume, the default); the shards are kept and the manifest "
            "rewritten"
        ) from None
    return manifest


def load_attributions(
    output_dir: PathLike,
    key: str = "attributions",
    require_complete: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge the shards of ``output_dir`` in dataset-index order.

    Args:
        output_dir: the directory :func:`explain_dataset` wrote.
        key: which stored tensor to merge: ``"attributions"`` (default), ``"targets"`` or
            ``"delta"`` (when the explainer returned a convergence delta).
        require_complete: raise unless the manifest says every sample was explained (without
            this, the shards present are merged, also of an unfinished run).

    Returns:
        ``(indices, values)``: ``indices`` (M,) int64 sorted ascending, each dataset index once;
        ``values`` (M, ...) the stored tensors in the same order.

    Raises:
        FileNotFoundError: no shard in ``output_dir`` (or, with ``require_complete``, no manifest).
        RuntimeError: with ``require_complete``, if samples are missing.
        KeyError: if the shards do not hold ``key``.
        DamagedFileError: a shard or the manifest cannot be read (the message names the file
            and says how to recover).
    """
    if require_complete:
        manifest = read_manifest(output_dir)
        if not manifest.get("complete"):
            raise RuntimeError(
                f"{output_dir} is incomplete: {manifest.get('num_missing')} samples missing"
            )
    shards = _shard_files(Path(output_dir))
    if not shards:
        raise FileNotFoundError(f"no attribution shards in {output_dir}")
    indices, values = [], []
    for path in shards:
        tensors, _ = load_shard(path, keys=("indices", key))
        if key not in tensors:
            raise KeyError(f"shard {path.name} holds no {key!r}")
        indices.append(tensors["indices"].long())
        values.append(tensors[key])
    index = torch.cat(indices)
    value = torch.cat(values)
    order = torch.argsort(index, stable=True)
    index, value = index[order], value[order]
    keep = torch.ones_like(index, dtype=torch.bool)
    keep[1:] = index[1:] != index[:-1]  # a sample stored twice (an overlapping rerun): once
    return index[keep], value[keep]
