"""Files in and out, free of Lightning: the attribution store and its dataset wrapper."""

from foxcem.io.datasets import IndexedDataset
from foxcem.io.shards import MANIFEST_NAME, ShardInfo, load_attributions, read_manifest, scan_shards

__all__ = [
    "IndexedDataset",
    "MANIFEST_NAME",
    "ShardInfo",
    "load_attributions",
    "read_manifest",
    "scan_shards",
]
