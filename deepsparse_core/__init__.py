"""deepsparse_core: sparse-view cone-beam CT reconstruction (DeepSparse), no Slicer import.

The layout is the architecture. ``physics/`` is the scanner and its operators, in the scanner
frame and nothing else: the :class:`~deepsparse_core.physics.geometry.Geometry` every operator
takes, the Joseph projector, FDK, SART, the noise model, data consistency and the reference
backends (RTK, TIGRE) behind one interface. ``data/`` is CTs and projections as files and datasets:
volumes and their I/O, the HU window, preprocessing, where a grid sits in the patient (placement),
projections files, simulation, sample CTs, phantoms, augmentation, candidate caches, view selection,
splits, ``deepsparse prepare`` and scanner import/export. ``model/`` is the DiCE network and its
model files; ``training/`` the one training loop with its stages, data sets and checkpoints;
``evaluation/`` the metrics, the quality benchmark and comparison figures. At the top sit the
application (``reconstruct`` for every method, ``inference`` for full-volume DiCE and the bundled
models, ``demo``, ``cli``) and the plumbing every layer shares (``errors``, ``progress``,
``devices``, ``resources``, ``atomic``, ``safetensors_io``, ``outputs``). Imports go one way:
plumbing <- physics <- data <- model <- reconstruct / inference <- evaluation <- training <- demo /
cli (``python -m deepsparse_core.training``, the torchrun entry point, reuses the CLI's runner).
"""

__version__ = "0.1.0"
