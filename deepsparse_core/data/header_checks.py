"""Raw header checks of volume files, before ITK reads them.

ITK repairs some broken headers silently: a NIfTI pixdim of 0, NaN or Inf becomes 1 mm, a NaN
quaternion the identity, a NaN MetaImage offset 0; a NRRD whose gzip body is cut short is read
with zeros. A volume whose header lies would then enter the engine with a made-up geometry. These
checks read the fields as stored and refuse with one line naming the file and the field:

* NIfTI-1/2 (``.nii``, ``.nii.gz``): ``sizeof_hdr``, a real scalar ``datatype``, ``pixdim[1:4]``
  finite and positive, ``scl_slope``/``scl_inter`` finite, the quaternion (``quatern_b/c/d``,
  ``qoffset``) finite with b^2 + c^2 + d^2 <= 1 when ``qform_code`` > 0, ``srow_*`` finite when
  ``sform_code`` > 0;
* MetaImage (``.mha``, ``.mhd``): every number of ``ElementSpacing``, ``Offset``/``Origin``/
  ``Position`` and ``TransformMatrix``/``Rotation``/``Orientation`` finite, spacing positive;
* NRRD (``.nrrd``, ``.nhdr``): ``space directions`` / ``spacings`` finite (their absence is a
  warning: 1 mm is assumed), ``space origin`` finite, and a gzip or bzip2 body (attached or
  detached) that decompresses to the size the header declares.

The voxel count a header declares is also checked against the memory available now, before
anything is allocated ("needs ~N GiB, M GiB available"; :func:`require_declared`).
"""

from __future__ import annotations

import bz2
import gzip
import re
import warnings
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..resources import require_available

# NIfTI datatype codes that are not a real scalar: complex 64/128/256, RGB, RGBA
_NIFTI_NOT_REAL = {32: "complex64", 1792: "complex128", 2048: "complex256", 128: "RGB", 2304: "RGBA"}


def check_volume_header(path: Path) -> None:
    """Refuse a volume file whose stored header fields lie (see the module docstring); formats
    without such a check pass."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        _check_nifti(path)
    elif name.endswith((".mha", ".mhd")):
        _check_metaimage(path)
    elif name.endswith((".nrrd", ".nhdr")):
        _check_nrrd(path)


def require_declared(path: Path, shape, itemsize: int) -> None:
    """Refuse a file whose header declares more voxels than memory can hold now: the stored
    values, their float32 copy and ITK's image (``itemsize`` + 8 bytes a voxel)."""
    voxels = int(np.prod([int(n) for n in shape], dtype=np.float64))
    dims = " x ".join(str(int(n)) for n in shape)
    require_available(voxels * (itemsize + 8.0), f"{path.name} (a {dims} volume, by its header)")


def _bad(path: Path, what: str) -> InputError:
    return InputError(f"{path}: corrupt header: {what}")


# ---------------------------------------------------------------------------------------- NIfTI
def _check_nifti(path: Path) -> None:
    import nibabel

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read(540)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: truncated or corrupt NIfTI file ({exc})") from None
    dtype = None
    for header_dtype, size in ((nibabel.nifti1.header_dtype, 348), (nibabel.nifti2.header_dtype, 540)):
        for order in "<>":
            if len(raw) >= 4 and int(np.frombuffer(raw[:4], order + "i4")[0]) == size and len(raw) >= size:
                dtype = header_dtype.newbyteorder(order)
    if dtype is None:
        stored = int(np.frombuffer(raw[:4], "<i4")[0]) if len(raw) >= 4 else None
        raise _bad(path, f"sizeof_hdr is {stored}, not 348 (NIfTI-1) or 540 (NIfTI-2), or the file is truncated")
    h = np.frombuffer(raw[:dtype.itemsize], dtype)[0]
    dims = [int(n) for n in h["dim"]]
    if not 1 <= dims[0] <= 7 or min(dims[1:dims[0] + 1]) < 1:
        raise _bad(path, f"dim = {dims[:dims[0] + 1] if 1 <= dims[0] <= 7 else dims}")
    require_declared(path, dims[1:dims[0] + 1], max(int(h["bitpix"]) // 8, 1))
    code = int(h["datatype"])
    if code in _NIFTI_NOT_REAL:
        raise InputError(f"{path}: voxels of type {_NIFTI_NOT_REAL[code]} are not real scalar values")
    pixdim = np.asarray(h["pixdim"][1:4], dtype=float)
    if not np.all(np.isfinite(pixdim)) or np.any(pixdim <= 0):
        raise _bad(path, f"voxel size pixdim[1:4] = {tuple(pixdim.tolist())} (must be finite and positive)")
    for field in ("scl_slope", "scl_inter"):
        if not np.isfinite(float(h[field])):
            raise _bad(path, f"{field} = {float(h[field])}")
    if int(h["qform_code"]) > 0:
        quaternion = np.array([float(h[f]) for f in ("quatern_b", "quatern_c", "quatern_d")])
        offset = np.array([float(h[f]) for f in ("qoffset_x", "qoffset_y", "qoffset_z")])
        if not (np.all(np.isfinite(quaternion)) and np.all(np.isfinite(offset))):
            raise _bad(path, f"quaternion {tuple(quaternion.tolist())}, offset {tuple(offset.tolist())} "
                             "(must be finite)")
        if float(quaternion @ quaternion) > 1.0 + 1e-5:
            raise _bad(path, f"quaternion (b, c, d) = {tuple(quaternion.tolist())} is not a unit quaternion "
                             "(b^2 + c^2 + d^2 > 1)")
    if int(h["sform_code"]) > 0:
        rows = np.array([h["srow_x"], h["srow_y"], h["srow_z"]], dtype=float)
        if not np.all(np.isfinite(rows)):
            raise _bad(path, "srow_x/y/z hold NaN or infinite values")


# ------------------------------------------------------------------------------------ MetaImage
_META_NUMBERS = {"ElementSpacing": "spacing", "ElementSize": "spacing", "Offset": "origin", "Origin": "origin",
                 "Position": "origin", "TransformMatrix": "direction", "Rotation": "direction",
                 "Orientation": "direction"}


def _check_metaimage(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    fields = {}
    for line in head.split(b"\n"):
        key, sep, value = line.decode("latin-1").partition("=")
        key = key.strip()
        if sep:
            fields[key] = value.strip()
        if key == "ElementDataFile":
            break
        if not sep or key not in _META_NUMBERS:
            continue
        try:
            numbers = np.array([float(v) for v in value.split()])
        except ValueError:
            raise _bad(path, f"{key} = {value.strip()!r} is not a list of numbers") from None
        if not np.all(np.isfinite(numbers)):
            raise _bad(path, f"{key} = {value.strip()} (must be finite)")
        if _META_NUMBERS[key] == "spacing" and np.any(numbers <= 0):
            raise _bad(path, f"{key} = {value.strip()} (voxel sizes must be positive)")
    try:
        shape = [int(v) for v in fields.get("DimSize", "").split()]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
    except ValueError:
        raise _bad(path, f"DimSize = {fields.get('DimSize')!r} is not a list of whole numbers") from None
    if shape:
        if min(shape) < 1:
            raise _bad(path, f"DimSize = {fields['DimSize']} (sizes must be positive)")
        itemsize = _META_ITEMSIZE.get(fields.get("ElementType", ""), 4)
        require_declared(path, shape + [max(channels, 1)], itemsize)


_META_ITEMSIZE = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
                  "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
                  "MET_DOUBLE": 8}


# ----------------------------------------------------------------------------------------- NRRD
def _check_nrrd(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    text, sep, body = data.partition(b"\n\n")
    fields = {}
    for line in text.decode("latin-1").splitlines()[1:]:
        if line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.lstrip("=").strip()
    for key in ("space directions", "spacings", "space origin"):
        if key in fields:
            numbers = re.findall(r"[-+0-9.eE]+|nan|NaN|inf|Inf", fields[key].replace("none", ""))
            values = np.array([float(v) for v in numbers]) if numbers else np.array([])
            if not np.all(np.isfinite(values)):
                raise _bad(path, f"{key}: {fields[key]} (must be finite)")
            if key == "spacings" and np.any(values <= 0):
                raise _bad(path, f"spacings: {fields[key]} (voxel sizes must be positive)")
    if "space directions" not in fields and "spacings" not in fields:
        warnings.warn(f"{path.name}: NRRD header has no space directions nor spacings; assuming 1.0 mm "
                      "isotropic spacing", stacklevel=4)
    try:
        sizes = [int(v) for v in fields.get("sizes", "").split()]
        itemsize = _nrrd_itemsize(fields.get("type", ""))
    except ValueError:
        sizes, itemsize = [], None  # ITK reports a malformed sizes field
    if sizes:
        if min(sizes) < 1:
            raise _bad(path, f"sizes: {fields['sizes']} (sizes must be positive)")
        require_declared(path, sizes, itemsize or 4)
    encoding = fields.get("encoding", "raw").lower()
    if encoding not in ("gzip", "gz", "bzip2", "bz2"):
        return
    detached = fields.get("data file") or fields.get("datafile")
    if detached:
        if detached.startswith("LIST") or "%" in detached:
            return  # several detached files: ITK reads and checks them
        try:
            body = (path.parent / detached).read_bytes()
        except OSError as exc:
            raise InputError(f"{path}: cannot read its data file {detached} ({exc.strerror})") from None
    elif not sep:
        raise _bad(path, "no blank line between the header and the data")
    try:
        raw = gzip.decompress(body) if encoding in ("gzip", "gz") else bz2.decompress(body)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise InputError(f"{path}: truncated or corrupt {encoding} data ({exc})") from None
    expected = int(np.prod(sizes)) * itemsize if sizes and itemsize else None
    if expected is not None and len(raw) < expected:
        raise InputError(f"{path}: truncated {encoding} data ({len(raw)} of {expected} bytes)")


def _nrrd_itemsize(type_name: str) -> int | None:
    t = type_name.lower().replace("_t", "").replace(" ", "")
    sizes = {("signedchar", "int8", "int8t", "char", "uchar", "unsignedchar", "uint8"): 1,
             ("short", "shortint", "signedshort", "signedshortint", "int16", "ushort", "unsignedshort",
              "unsignedshortint", "uint16"): 2,
             ("int", "signedint", "int32", "uint", "unsignedint", "uint32", "float"): 4,
             ("longlong", "longlongint", "signedlonglong", "signedlonglongint", "int64", "ulonglong",
              "unsignedlonglong", "unsignedlonglongint", "uint64", "double"): 8}
    for names, size in sizes.items():
        if t in names:
            return size
    return None
