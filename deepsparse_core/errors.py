"""User-facing errors: one line, no traceback, non-zero exit from the CLI."""


class DeepSparseError(Exception):
    """An error caused by the user's input or environment (bad file, bad geometry...).

    The command line prints ``error: <message>`` on one line and exits with status 2.
    """


class InputError(DeepSparseError):
    """The input data cannot be used (unreadable, wrong dimensionality, NaN...)."""


class GeometryError(DeepSparseError):
    """The acquisition geometry is invalid or does not match the data."""
