"""Shared fixtures for the deepsparse_core tests (markers are registered in pyproject.toml)."""

import pytest

from deepsparse_core.errors import DeepSparseError


@pytest.fixture(scope="session")
def sample_file():
    """``sample_file(name, part="image")`` -> cached path, fetching once; skips when offline."""
    from deepsparse_core.samples import fetch_sample

    failed = {}  # name -> reason, so an offline run tries each sample once

    def get(name: str, part: str = "image"):
        if name not in failed:
            try:
                return fetch_sample(name, part)
            except DeepSparseError as exc:
                failed[name] = str(exc)
        pytest.skip(f"sample '{name}' unavailable: {failed[name]}")

    return get
