"""Starting the Logic's background jobs: a working folder per job, removed when it ends.

The GUI thread copies voxels out of the scene (:func:`.geometry_bridge.volume_from_node`) and
writes the job's input files itself before the job starts (:func:`write_volumes`: uncompressed, no
Python thread, since PythonQt threads only advance in timer callbacks; about a second for a
512 x 512 x 400 CT), as SlicerMONAIAuto3DSeg does with its storage nodes. The computing is done by
``deepsparse_core`` (or :mod:`.worker`) in a child process. The job's done callback, run on the
polling (GUI) thread, turns the output files into nodes. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from . import engine
from .jobs import SUCCEEDED, Job, job_environment


class Background:
    """Jobs with working folders under ``temp_root`` (the system's temporary folder when None)."""

    def __init__(self, temp_root=None):
        self.temp_root = temp_root

    def work_dir(self, prefix: str) -> Path:
        root = self.temp_root
        if root is not None:
            Path(root).mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"DeepSparse-{prefix}-", dir=root))

    @staticmethod
    @contextlib.contextmanager
    def removed_on_error(work_dir: Path):
        """Remove ``work_dir`` if the block raises (the job was never started)."""
        try:
            yield
        except BaseException:
            shutil.rmtree(work_dir, ignore_errors=True)
            raise

    @staticmethod
    def job(steps, name: str, work_dir: Path, on_progress=None, on_log=None) -> Job:
        env = job_environment(engine.job_paths())
        return Job(steps, name=name, env=env, cwd=str(work_dir), on_progress=on_progress, on_log=on_log)

    @staticmethod
    def start(job: Job, finish, work_dir: Path, on_done=None) -> Job:
        """Start ``job``; when it succeeds ``finish(job)`` makes its outputs (raising fails the job);
        then ``work_dir`` is removed and ``on_done(job)`` runs, whatever the status."""
        def done(j: Job):
            try:
                if j.status == SUCCEEDED:
                    finish(j)
            finally:  # after a cancel: once the process tree is gone (it may still be writing)
                j.when_stopped(lambda: shutil.rmtree(work_dir, ignore_errors=True))

        job.add_done_callback(done)
        if on_done is not None:
            job.add_done_callback(on_done)
        return job.start()


def write_volumes(files: dict) -> None:
    """Write ``{path: Volume}`` as uncompressed NIfTI (LPS, ``write_volume``), on this thread."""
    from deepsparse_core.data.volume_io import write_volume

    for path, volume in files.items():
        write_volume(volume, path, compress=False)
