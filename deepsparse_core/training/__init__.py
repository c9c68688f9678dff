"""Training DiCE: HyViP pretraining, two-step finetuning and training from scratch (paper Sec. 3.3-3.5).

* :mod:`.data`: candidate-cache training sets, batches sampled on the device;
* :mod:`.stages`: what each stage samples, freezes and weighs;
* :mod:`.loop`: the one training loop (:func:`train`, :class:`TrainConfig`), DDP and mixed precision;
* :mod:`.checkpoint`: run folders, exact resume, no pickle;
* :mod:`.validation`, :mod:`.log`, :mod:`.distributed`, :mod:`.initial_model`: its helpers;
* :mod:`.synthetic`: phantom training sets; :mod:`.command`: ``deepsparse train``.
"""

from .checkpoint import CheckpointError, load_run, read_state
from .command import add_train_parser
from .data import Batch, CandidateSet
from .initial_model import check_model_views
from .loop import TrainConfig, TrainingError, TrainResult, learning_rate, train
from .stages import STAGES, Stage, make_stage
from .synthetic import make_synthetic_cache, small_geometry
from .validation import validate

__all__ = ["Batch", "CandidateSet", "CheckpointError", "STAGES", "Stage", "TrainConfig", "TrainResult",
           "TrainingError", "add_train_parser", "check_model_views", "learning_rate", "load_run",
           "make_stage", "make_synthetic_cache", "read_state", "small_geometry", "train", "validate"]
