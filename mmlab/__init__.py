"""mmlab: a notebook-first workspace for multimodal emotion and intent recognition with missing modalities."""

__version__ = "0.1.0"
