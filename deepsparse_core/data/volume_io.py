"""Reading and writing CT volumes (:class:`~deepsparse_core.data.volume.Volume`) with their geometry.

Conventions (docs/conventions.md): arrays are ``vol[k, j, i]`` = (z, y, x), float32, values in HU.
Geometry follows ITK/SimpleITK in the patient **LPS** frame:

* ``spacing`` = (sz, sy, sx) mm, in array order;
* ``origin`` = (x, y, z) LPS mm of the centre of voxel [0, 0, 0], in ITK (x, y, z) order;
* ``direction`` = 3 x 3 ITK direction matrix; column c is the LPS unit vector of index axis c
  (c = 0, 1, 2 for i, j, k, i.e. array axes x, y, z).

So voxel ``vol[k, j, i]`` sits at ``origin + direction @ (i sx, j sy, k sz)`` (LPS mm).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..atomic import atomic_path, kept_note
from ..errors import InputError, library_reason
from ..outputs import check_output_file
from .header_checks import check_volume_header
from .volume import MAX_ORIGIN_MM, Volume

WRITE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha")
MIN_SPACING_MM = 0.01
MAX_SPACING_MM = 50.0


# ----------------------------------------------------------------------------------------------
# Reading


def read_volume(path: str | os.PathLike, *, check_hu: bool = True, allow_constant: bool = False,
                spacing_scale: float = 1.0) -> Volume:
    """Read a 3D CT volume (HU) with its geometry.

    Formats: NIfTI (.nii, .nii.gz), NRRD, MHA/MHD and anything else SimpleITK reads; a DICOM
    folder (the series with the most files is used); ``.mrc`` and ``.npy``, which carry no
    reliable geometry (1 mm isotropic spacing, identity direction, a warning says so).

    Raises :class:`InputError` (one line, naming the file) for a missing or unreadable file, a
    header whose stored fields lie (:mod:`.header_checks`, read before ITK repairs them), a DICOM
    series with missing or unevenly spaced slices, a 2D or 4D image (a singleton 4th dimension is
    squeezed), non-real or NaN/Inf values, a constant volume, a spacing outside [0.01, 50] mm, an
    origin that is not finite or beyond 1 km, or a direction that is not orthonormal. Values that cannot be HU only warn. ``check_hu=False`` skips
    the HU plausibility warnings (label maps, MR); ``allow_constant=True`` accepts a constant
    volume (a reconstruction read back, not a CT to simulate from). ``spacing_scale``: mm per unit
    of the file's spacing and origin (1000 for files written in metres, as the knee CBCT set of Lin
    et al.), applied before the checks.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        volume = Volume.from_sitk(_read_dicom_folder(path))
    elif path.suffix.lower() == ".mrc":
        volume = _read_mrc(path)
    elif path.suffix.lower() == ".npy":
        volume = _read_npy(path)
    else:
        check_volume_header(path)
        volume = Volume.from_sitk(_as_3d(_read_itk(path), path))
        if _extension(path) in (".nii", ".nii.gz"):
            _check_nifti_data(path)
    if spacing_scale != 1.0:
        volume = dataclasses.replace(volume, spacing=tuple(v * spacing_scale for v in volume.spacing),
                                     origin=tuple(v * spacing_scale for v in volume.origin))
    _check_volume(volume, path, check_hu, allow_constant)
    return volume


@contextlib.contextmanager
def itk_messages():
    """Capture what ITK/MetaIO print on the process's stderr (file descriptor 2) during the block;
    yields a list that holds the captured non-empty lines afterwards. Keeps errors one line."""
    lines: list[str] = []
    sys.stderr.flush()  # Python's own pending text stays out of the capture
    with tempfile.TemporaryFile(mode="w+b") as capture:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr descriptor (embedded interpreter): nothing to capture
            yield lines
            return
        os.dup2(capture.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            lines.extend(line.strip() for line in text.splitlines() if line.strip())


def _read_itk(path: Path) -> sitk.Image:
    try:
        with itk_messages():
            image = sitk.ReadImage(str(path))
    except RuntimeError:
        raise InputError(f"{path}: cannot read as an image (supported: NIfTI, NRRD, MHA/MHD, "
                         "DICOM folder, MRC, NPY; or the file is truncated)") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path}: has {image.GetNumberOfComponentsPerPixel()} components per "
                         "pixel (colour or vector image), expected a scalar CT")
    return image


def _check_nifti_data(path: Path) -> None:
    """Read a NIfTI file's stored values with nibabel: ITK zero-fills a truncated file and reads
    NaN voxels as 0, so neither would be seen in the array SimpleITK returns."""
    import zlib

    import nibabel

    quiet = nibabel.imageglobals.LoggingOutputSuppressor()  # nibabel's own log lines ("setting 0 dims to 1")
    try:
        with quiet:
            data = np.asanyarray(nibabel.load(str(path)).dataobj.get_unscaled())
    except (EOFError, OSError, ValueError, zlib.error, nibabel.filebasedimages.ImageFileError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: truncated or corrupt NIfTI file ({reason})") from None
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        raise InputError(f"{path}: volume contains NaN or infinite values")


def _read_dicom_folder(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    with itk_messages():  # GDCM's "No Series were found" warning: our one line says it
        series = reader.GetGDCMSeriesIDs(str(folder))
        files = max((reader.GetGDCMSeriesFileNames(str(folder), s) for s in series), key=len) if series else ()
    if not series:
        raise InputError(f"{folder}: folder holds no DICOM series")
    reader.SetFileNames(files)
    try:
        with itk_messages() as messages:
            image = reader.Execute()
    except RuntimeError:
        raise InputError(f"{folder}: cannot read the DICOM series ({len(files)} files)") from None
    if any("non uniform sampling or missing slices" in m.lower() for m in messages):
        raise InputError(f"{folder}: the DICOM series ({len(files)} files) has missing, duplicated or unevenly "
                         "spaced slices; a volume read from it would have a made-up slice spacing")
    return _as_3d(image, folder)


def _as_3d(image: sitk.Image, path: Path) -> sitk.Image:
    """Accept 3D images, squeeze a 4D image with one time point, refuse the rest."""
    size = image.GetSize()
    if image.GetDimension() == 4:
        if size[3] != 1:
            raise InputError(f"{path}: 4D image of size {size} ({size[3]} volumes), "
                             "expected one 3D volume")
        image = sitk.Extract(image, list(size[:3]) + [0], [0, 0, 0, 0])
    if image.GetDimension() != 3 or min(image.GetSize()) < 2:
        raise InputError(f"{path}: {image.GetDimension()}D image of size {image.GetSize()} is "
                         "not a 3D volume (2D slice?)")
    return image


def _read_npy(path: Path) -> Volume:
    from .header_checks import require_declared

    try:  # the header first: a declared size beyond memory or beyond the file is refused before loading
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                else np.lib.format.read_array_header_2_0  # 2.0 and 3.0 (UTF-8 names) share the layout
            shape, _, dtype = read_header(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError):
        raise InputError(f"{path}: not a valid .npy array file") from None
    if dtype.kind not in "biuf":  # complex, timedelta, datetime, strings, objects...
        raise InputError(f"{path}: array of type {dtype} does not hold real numbers")
    if offset + int(np.prod(shape, dtype=np.float64)) * dtype.itemsize > path.stat().st_size:
        raise InputError(f"{path}: truncated .npy file (its header declares shape {shape} of {dtype})")
    require_declared(path, shape, dtype.itemsize)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError):
        raise InputError(f"{path}: not a valid .npy array file") from None
    if array.dtype.kind not in "biuf":  # complex, timedelta, datetime, strings, objects...
        raise InputError(f"{path}: array of type {array.dtype} does not hold real numbers")
    if array.ndim == 4 and 1 in array.shape:
        array = array.squeeze(axis=array.shape.index(1))
    if array.ndim != 3 or min(array.shape) < 2:
        raise InputError(f"{path}: array of shape {array.shape} is not a 3D volume")
    warnings.warn(f"{path.name}: .npy has no geometry; assuming 1.0 mm isotropic spacing, "
                  "(z, y, x) order and LPS identity direction", stacklevel=3)
    return Volume(array, spacing=(1.0, 1.0, 1.0))


# MRC 2014 header (1024 bytes), words of 4 bytes: 0-2 nx ny nz, 3 mode, 7-9 mx my mz,
# 10-12 cell lengths (Angstrom in cryo-EM, often 0), 16-18 mapc mapr maps, 23 nsymbt
# (extended header bytes), 52 'MAP ', 53 machine stamp.
_MRC_MODES = {0: np.int8, 1: np.int16, 2: np.float32, 6: np.uint16, 12: np.float16}


def _read_mrc(path: Path) -> Volume:
    bad = InputError(f"{path}: not a valid MRC volume")
    with open(path, "rb") as f:
        header = f.read(1024)
    if len(header) < 1024:
        raise bad
    endian = ">" if header[212] == 0x11 else "<"  # machine stamp: 0x44 little, 0x11 big endian
    words = np.frombuffer(header, dtype=endian + "i4", count=24)
    nx, ny, nz, mode = (int(w) for w in words[:4])
    if mode not in _MRC_MODES or min(nx, ny, nz) < 1 or max(nx, ny, nz) > 100000:
        raise bad
    dtype = np.dtype(_MRC_MODES[mode]).newbyteorder(endian)
    if int(words[23]) < 0:
        raise InputError(f"{path}: corrupt MRC header: extended header size (nsymbt) {int(words[23])} is negative")
    offset = 1024 + int(words[23])
    count = nx * ny * nz
    if path.stat().st_size < offset + count * dtype.itemsize:
        raise bad
    from .header_checks import require_declared

    require_declared(path, (nz, ny, nx), dtype.itemsize)
    data = np.fromfile(path, dtype=dtype, count=count, offset=offset).reshape(nz, ny, nx)
    # mapc/mapr/maps say which of x, y, z the columns, rows and sections run along.
    axis_map = [int(a) for a in words[16:19]]
    if axis_map != [0, 0, 0] and sorted(axis_map) != [1, 2, 3]:  # all 0: an old writer's "default order"
        raise InputError(f"{path}: corrupt MRC header: axis map (mapc, mapr, maps) {tuple(axis_map)} is not "
                         "a permutation of (1, 2, 3)")
    axis_of = {a: i for i, a in enumerate(axis_map)}  # 1=x, 2=y, 3=z -> 0=col...
    if sorted(axis_of) == [1, 2, 3]:
        stored = {0: 2, 1: 1, 2: 0}  # columns are array axis 2, rows 1, sections 0
        data = data.transpose([stored[axis_of[a]] for a in (3, 2, 1)])  # to (z, y, x)
    cell = np.frombuffer(header, dtype=endian + "f4", count=3, offset=40).astype(float)
    grid = np.frombuffer(header, dtype=endian + "i4", count=3, offset=28).astype(float)
    if not np.all(np.isfinite(cell)):
        raise InputError(f"{path}: corrupt MRC header: cell size {tuple(cell.tolist())} is not finite")
    if np.all(cell > 0) and np.all(grid > 0):
        spacing_xyz = cell / grid
        note = f"reading the MRC cell size as mm: spacing {tuple(spacing_xyz.round(4))}"
    else:
        spacing_xyz = np.ones(3)
        note = "MRC header has no cell size; assuming 1.0 mm isotropic spacing"
    warnings.warn(f"{path.name}: {note}, LPS identity direction (unknown orientation)",
                  stacklevel=3)
    return Volume(data, spacing=tuple(spacing_xyz[::-1]))


def _check_volume(volume: Volume, path: Path, check_hu: bool, allow_constant: bool = False):
    spacing = np.asarray(volume.spacing)
    if not np.all(np.isfinite(spacing)) or np.any(spacing < MIN_SPACING_MM) \
            or np.any(spacing > MAX_SPACING_MM):
        raise InputError(f"{path}: spacing {volume.spacing} mm is outside "
                         f"[{MIN_SPACING_MM}, {MAX_SPACING_MM}] mm")
    origin, direction = np.asarray(volume.origin, float), np.asarray(volume.direction, float)
    if not np.all(np.isfinite(origin)) or np.any(np.abs(origin) > MAX_ORIGIN_MM):
        raise InputError(f"{path}: origin {tuple(origin.tolist())} mm is not finite or lies beyond "
                         f"{MAX_ORIGIN_MM:g} mm")
    if not np.all(np.isfinite(direction)) or not np.allclose(direction.T @ direction, np.eye(3), atol=1e-3):
        raise InputError(f"{path}: direction matrix {direction.round(4).tolist()} is not orthonormal")
    a = volume.array
    if a.dtype.kind not in "biuf":
        raise InputError(f"{path}: voxels of type {a.dtype} are not real numbers")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{path}: volume contains NaN or infinite values")
    lo, hi = float(a.min()), float(a.max())
    if lo == hi and not allow_constant:
        raise InputError(f"{path}: volume is constant ({lo:g} everywhere)")
    if not check_hu:
        return
    if lo >= -0.5 and hi <= 1.5:
        warnings.warn(f"{path.name}: values lie in [{lo:g}, {hi:g}], not Hounsfield units "
                      "(normalized or MR image?); the reconstruction assumes a CT in HU",
                      stacklevel=3)
    elif lo >= 0:
        warnings.warn(f"{path.name}: no negative values (range [{lo:g}, {hi:g}]); air should "
                      "be -1000 HU (raw CT numbers without the rescale intercept, or not a CT?)",
                      stacklevel=3)


# ----------------------------------------------------------------------------------------------
# Writing


def _extension(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _check_written(tmp: Path, path: Path, array: np.ndarray) -> None:
    """Read the written file back and compare its voxels: ITK's writers do not report a full disk or
    a file-size limit (the file just ends early, and its reader fills the rest), so a short file
    would otherwise replace a good target."""
    try:
        with itk_messages():
            image = sitk.ReadImage(str(tmp))
        back = sitk.GetArrayViewFromImage(image)  # a view: ``image`` must outlive it
        same = back.shape == array.shape and np.array_equal(back, np.asarray(array, dtype=back.dtype), equal_nan=True)
    except RuntimeError:
        same = False
    if not same:
        raise InputError(f"{path}: cannot write: the file came out incomplete (disk full or file size limit?); "
                         f"{kept_note(path)}")


def write_volume(volume: Volume, path: str | os.PathLike, *, compress: bool = True, notes: str | None = None,
                 fields: dict | None = None) -> Path:
    """Write ``volume`` (float32, with its spacing/origin/direction) as NIfTI, NRRD or MHA.

    The format follows the extension (.nii, .nii.gz, .nrrd, .mha). The file is written to a
    temporary name in the same folder and renamed, so a failure leaves no partial file.
    ``notes``: what the file holds, in the NIfTI ``descrip`` field (79 characters at most) and the
    NRRD/MHA header; ``fields``: more ``key: text`` header entries (NRRD, MHA; NIfTI has no room).
    """
    path = Path(path)
    ext = _extension(path)
    if ext not in WRITE_EXTENSIONS:
        raise InputError(f"{path}: cannot write '{ext or path.name}' files, use one of "
                         f"{', '.join(WRITE_EXTENSIONS)}")
    check_output_file(path, create_folder=False)
    image = volume.to_sitk()
    if notes:
        image.SetMetaData("ITK_FileNotes", notes[:79])
    for key, value in (fields or {}).items():
        image.SetMetaData(str(key), str(value))
    try:
        with atomic_path(path, suffix=ext) as tmp:  # ITK picks the format by the extension
            with itk_messages():
                sitk.WriteImage(image, str(tmp), compress)
            _check_written(tmp, path, volume.array)
    except (RuntimeError, OSError) as exc:
        raise InputError(f"{path}: cannot write: {library_reason(exc, 'unknown error')}") from None
    return path
