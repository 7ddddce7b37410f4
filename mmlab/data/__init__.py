"""Data: the `MMBatch` contract, `MMDataset`, the registry and the dataset loaders."""

from mmlab.data.batch import MMBatch, collate
from mmlab.data.dataset import (
    EXTRA_SPLIT_RE, SPLITS, MMDataset, from_arrays, is_split_name, is_test_split, stratified_split,
)
from mmlab.data.registry import DatasetEntry, data_root, get_entry, list_datasets, load_dataset, register_dataset
from mmlab.data.tokens import CLS_ID, MASK_ID, PAD_ID, SEP_ID, UNK_ID, VOCAB_SIZE

__all__ = [
    "MMBatch", "collate", "MMDataset", "SPLITS", "EXTRA_SPLIT_RE", "is_split_name", "is_test_split",
    "from_arrays", "stratified_split",
    "DatasetEntry", "data_root", "get_entry", "list_datasets", "load_dataset", "register_dataset",
    "VOCAB_SIZE", "PAD_ID", "UNK_ID", "CLS_ID", "SEP_ID", "MASK_ID",
]
