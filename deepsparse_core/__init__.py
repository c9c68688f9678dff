"""deepsparse_core: sparse-view cone-beam CT reconstruction (DeepSparse), no Slicer import."""

__version__ = "0.1.0"
