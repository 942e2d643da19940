"""An explanation's configuration as JSON: what a store's manifest records, and its digest (a
resumed run refuses shards of another configuration)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["config_digest", "json_safe"]


def json_safe(value: Any) -> Any:
    """A JSON-serialisable description of an option value (tensors by shape, dtype and digest)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous()
        digest = hashlib.sha1(data.reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()[:16]
        return {"tensor": list(data.shape), "dtype": str(data.dtype), "sha1": digest}
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, torch.nn.Module):
        return {"module": type(value).__name__}
    return repr(value)


def config_digest(config: Mapping[str, Any]) -> str:
    """A short digest of an explanation configuration (JSON-safe mapping)."""
    text = json.dumps(json_safe(config), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]
