"""Data: the `MMBatch` contract, `MMDataset`, the registry and the dataset loaders."""

from mmlab.data.batch import MMBatch, collate
from mmlab.data.dataset import SPLITS, MMDataset, from_arrays, stratified_split
from mmlab.data.registry import DatasetEntry, data_root, get_entry, list_datasets, load_dataset, register_dataset

__all__ = [
    "MMBatch", "collate", "MMDataset", "SPLITS", "from_arrays", "stratified_split",
    "DatasetEntry", "data_root", "get_entry", "list_datasets", "load_dataset", "register_dataset",
]
