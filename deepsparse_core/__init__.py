"""deepsparse_core: sparse-view cone-beam CT reconstruction (DeepSparse), no Slicer import.

    import deepsparse_core as ds
    data = ds.simulate("ct.nii.gz", ds.Geometry.preset("fast", n_views=6))  # HU CT -> noisy views
    vol = ds.reconstruct(data, "dice")           # bundled DiCE model; or "sart", "fdk"
    print(ds.evaluate(vol, data.reference))      # {'psnr': dB, 'ssim': ..., 'vif': ...}
    ds.write_volume(data.to_volume(vol, "hu"), "dice.nii.gz")  # placed like the input CT

The names above (and ``DiceReconstructor``, ``read_volume``) are imported on first use, so
``import deepsparse_core`` stays light (no torch until one is touched).

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

# public name -> the module that defines it (PEP 562: imported on first access)
_API = {"Geometry": "physics.geometry", "simulate": "data.simulate", "reconstruct": "reconstruct",
        "evaluate": "evaluation.metrics", "DiceReconstructor": "inference", "read_volume": "data.volume_io",
        "write_volume": "data.volume_io"}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        module = importlib.import_module(f".{_API[name]}", __name__)
        value = module if name == "reconstruct" else getattr(module, name)  # a callable module, see there
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
