"""Slipway Python model harness.

Embedded in the slipway binary and run as ``python3 -u harness.py <mode> ...``.

Modes
  serve   --model-dir DIR                     load DIR/score.py and answer frames on stdin/stdout
  inspect --model-dir DIR --packages a,b,...  print one JSON object describing score.py and packages
  environment                                print one JSON object describing the interpreter and its packages

The wire protocol is described in docs/worker-protocol.md. Only the standard library and numpy are
required; pandas is used when it is installed (tabular tensor requests become DataFrames).
"""

import argparse
import ast
import inspect
import json
import math
import operator
import os
import platform
import struct
import sys
import time
import traceback

try:
    import numpy as np
except ImportError:  # inspect mode still works; serve reports the problem in its hello frame
    np = None

# pandas is imported when first needed (_want_pandas): a model that takes numpy and never touches pandas starts
# without it (importing pandas is ~40% of such a replica's cold start). Imported as a module (tests, tools), the
# harness loads it at once, as it always did.
pd = None


def _want_pandas():
    """The pandas module (imported now if it is not yet), or None when it is not installed."""
    global pd
    if pd is None:
        try:
            import pandas
        except ImportError:
            return None
        pd = pandas
    return pd


def _adopt_pandas():
    """Use pandas if the model imported it (its answer may be a DataFrame) without importing it ourselves."""
    global pd
    if pd is None:
        pd = sys.modules.get("pandas")


if __name__ != "__main__":
    _want_pandas()

MAX_FRAME = 256 << 20
# HARNESS_FAST_PATH=0 (a deployment's env) turns the fast path of decode_input off: every request then
# takes the general path, and a model declared numpy-in gets DataFrames. For comparing the two; never needed.
FAST_PATH = os.environ.get("HARNESS_FAST_PATH", "1") != "0"
_HEADER = struct.Struct(">IB")


class ProtocolError(Exception):
    """A frame the harness cannot understand."""


# ---------------------------------------------------------------------------------------------------
# Framing


_LENGTH = struct.Struct(">I")


class FrameReader:
    """Frames from a raw (unbuffered) binary stream through one reused buffer. The server pipelines its requests
    (docs/worker-protocol.md): one read takes whatever it has written, often several frames, and ready() says,
    without a system call, whether a whole frame is already here (then the answer before it need not be flushed
    on its own)."""

    def __init__(self, raw, size=1 << 16):
        self._raw = raw
        self._buf = self.buffer = bytearray(size)
        self._view = memoryview(self._buf)
        self._start = self._end = 0

    def ready(self):
        """Whether a complete frame is buffered."""
        have = self._end - self._start
        return have >= 4 and have >= 4 + _LENGTH.unpack_from(self._buf, self._start)[0]

    def read(self):
        """Return (kind, payload memoryview) or None at a clean EOF. A frame that fits the reader's buffer comes
        as a view into it (payload.obj is self.buffer), valid until the next read(): whatever must outlive the
        call is copied out of it (decode_input's transient). A larger frame has its own copy."""
        start = self._start
        have = self._end - start
        if have > 4:  # the usual case: the whole frame is buffered already
            length = _LENGTH.unpack_from(self._buf, start)[0]
            if 0 < length <= have - 4:
                end = start + 4 + length
                if end == self._end:
                    self._start = self._end = 0
                else:
                    self._start = end
                return chr(self._buf[start + 4]), self._view[start + 5:end]
        if not self._fill(4):
            if self._start == self._end:
                return None
            raise ProtocolError("unexpected EOF inside a frame")
        (length,) = _LENGTH.unpack_from(self._buf, self._start)
        if length < 1 or length > MAX_FRAME:
            raise ProtocolError("bad frame length %d" % length)
        self._start += 4
        if length <= len(self._buf):
            if not self._fill(length):
                raise ProtocolError("unexpected EOF inside a frame")
            start = self._start
            self._start = start + length
            if self._start == self._end:
                self._start = self._end = 0
            return chr(self._buf[start]), self._view[start + 1:start + length]
        else:  # larger than the buffer: what is buffered, then the rest read straight into the body
            body = bytearray(length)
            have = self._end - self._start
            body[:have] = self._view[self._start:self._end]
            self._start = self._end = 0
            view = memoryview(body)
            while have < length:
                k = self._raw.readinto(view[have:])
                if not k:
                    raise ProtocolError("unexpected EOF inside a frame")
                have += k
        if self._start == self._end:
            self._start = self._end = 0
        return chr(body[0]), memoryview(body)[1:]

    def _fill(self, need):
        """Buffer at least need bytes (at most the buffer's size) from _start; False at EOF before that."""
        if self._start + need > len(self._buf):  # move the partial frame to the front
            have = self._end - self._start
            self._buf[:have] = self._buf[self._start:self._end]
            self._start, self._end = 0, have
        while self._end - self._start < need:
            k = self._raw.readinto(self._view[self._end:])
            if not k:
                return False
            self._end += k
        return True


_JOIN_MAX = 1 << 16  # a frame up to this size is joined into one bytes object and written in one call


def write_frame(out, kind, chunks=(), flush=True, before=b""):
    """Write one frame whose payload is the concatenation of the bytes-like chunks (flush=False: more follow).
    before: whole frames already encoded (an answer's timings), written just ahead of it. Raises ValueError,
    having written nothing, when the frame is over the limit."""
    if isinstance(chunks, (bytes, bytearray, memoryview)):
        chunks = (chunks,)
    size = 0
    for c in chunks:
        size += c.nbytes if type(c) is memoryview else len(c)
    if size + 1 > MAX_FRAME:
        raise ValueError("response of %d bytes exceeds the 256 MiB frame limit" % size)
    if size <= _JOIN_MAX:  # one call into the writer instead of one per piece
        out.write(b"".join((before, _HEADER.pack(size + 1, ord(kind)), *chunks)))
    else:
        out.write(before + _HEADER.pack(size + 1, ord(kind)))
        for c in chunks:
            out.write(c)
    if flush:
        out.flush()


def write_json(out, kind, value):
    write_frame(out, kind, to_json(value).encode("utf-8"))


# ---------------------------------------------------------------------------------------------------
# JSON conversion (numpy / pandas values -> plain JSON, NaN/Inf -> null)


def to_json(value):
    _adopt_pandas()
    try:  # fast path: plain JSON, or numpy/pandas values without NaN
        return json.dumps(value, allow_nan=False, default=_plain, separators=(",", ":"))
    except ValueError:  # a NaN/Inf somewhere: clean the whole value
        return json.dumps(_plain(value), allow_nan=False, separators=(",", ":"))


def _plain(o):
    """Convert o (recursively) to plain Python values accepted by json; NaN/Inf become None."""
    if o is None or isinstance(o, (str, bool, int)):
        return o
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {(k if isinstance(k, str) else str(_plain(k))): _plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple, set, frozenset)):
        return [_plain(v) for v in o]
    if np is not None:
        if isinstance(o, np.ndarray):
            return _array_to_list(o)
        if isinstance(o, np.generic):
            return _plain(o.item())
    if pd is not None:
        if isinstance(o, pd.DataFrame):
            return {str(c): _array_to_list(_column_array(o[c])) for c in o.columns}
        if isinstance(o, (pd.Series, pd.Index)):
            return _array_to_list(_column_array(o))
        if o is pd.NaT or o is pd.NA:
            return None
    if isinstance(o, (bytes, bytearray)):
        return bytes(o).decode("utf-8", "replace")
    if hasattr(o, "isoformat"):  # datetime, date, pandas Timestamp
        return o.isoformat()
    if hasattr(o, "tolist"):
        return _plain(o.tolist())
    raise TypeError("Object of type %s is not JSON serializable" % type(o).__name__)


def _array_to_list(a):
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            a = a.astype(object)
            a[bad] = None
        return a.tolist()
    if a.dtype.kind in "biu":
        return a.tolist()
    return [_plain(v) for v in a.tolist()] if a.ndim else _plain(a.item())


def _column_array(s):
    """numpy array for a pandas Series/Index, turning nullable numeric dtypes into float64 + NaN."""
    if not isinstance(s.dtype, np.dtype) and pd.api.types.is_numeric_dtype(s.dtype):
        return s.to_numpy(dtype="float64", na_value=np.nan)
    return s.to_numpy()


# ---------------------------------------------------------------------------------------------------
# Tensor frames


def _numeric_dtypes():
    return {
        "BOOL": np.dtype(np.bool_), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"),
        "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"),
        "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
        "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    }


_DTYPES = None  # OIP datatype name -> numpy dtype, built on first use (numpy may be missing in inspect mode)


def _dtypes():
    global _DTYPES
    if _DTYPES is None:
        _DTYPES = _numeric_dtypes()
    return _DTYPES


def parse_frame(buf):
    """Read a tensor frame's headers: a list of (name, datatype, dims, data memoryview, data offset), without
    touching the data. Raises ProtocolError on anything malformed."""
    buf = memoryview(buf)
    dtypes = _dtypes()
    try:
        (ncols,) = struct.unpack_from("<I", buf, 0)
        pos = 4
        cols = []
        for _ in range(ncols):
            (nlen,) = struct.unpack_from("<H", buf, pos)
            name = str(buf[pos + 2:pos + 2 + nlen], "utf-8")
            pos += 2 + nlen
            dlen = buf[pos]
            dt = str(buf[pos + 1:pos + 1 + dlen], "ascii")
            pos += 1 + dlen
            ndim = buf[pos]
            dims = struct.unpack_from("<%dq" % ndim, buf, pos + 1) if ndim != 1 else _unpack_dim(buf, pos + 1)
            pos += 1 + 8 * ndim
            (dsize,) = _unpack_size(buf, pos)
            pos += 8
            if pos + dsize > len(buf):
                raise ProtocolError("column %r: data runs past the end of the frame" % name)
            if any(d < 0 for d in dims):
                raise ProtocolError("column %r: negative dimension in %r" % (name, dims))
            if dt != "BYTES":
                dtype = dtypes.get(dt)
                if dtype is None:
                    raise ProtocolError("column %r: unknown datatype %r" % (name, dt))
                want = math.prod(dims) * dtype.itemsize
                if dsize != want:
                    raise ProtocolError("column %r: %s%r needs %d bytes, got %d" % (name, dt, list(dims), want, dsize))
            cols.append((name, dt, dims, buf[pos:pos + dsize], pos))
            pos += dsize
        if pos != len(buf):
            raise ProtocolError("%d trailing bytes after the last column" % (len(buf) - pos))
        return cols
    except (struct.error, IndexError, UnicodeDecodeError) as e:
        raise ProtocolError("malformed tensor frame: %s" % e) from None


_unpack_dim = struct.Struct("<q").unpack_from
_unpack_size = struct.Struct("<Q").unpack_from


def decode_tensors(buf):
    """Decode a tensor frame into a list of (name, numpy array). Arrays share memory with buf."""
    return [(name, _column(name, dt, dims, data)) for name, dt, dims, data, _ in parse_frame(buf)]


def _column(name, dt, dims, data):
    count = math.prod(dims)
    if dt == "BYTES":
        arr = _decode_bytes(data, count, name)
    else:
        arr = np.frombuffer(data, dtype=_dtypes()[dt], count=count)
    return arr.reshape(dims)


def decode_input(buf, numpy_in=False, transient=False):
    """What predict() receives for a T request (docs/worker-protocol.md), built straight from the frame.

    The fast path: when every column is 1-D, numeric, of one length and one datatype (the usual table of
    features), the columns are copied once, each a single memcpy, into one (columns × rows) buffer, and the
    model gets its transpose, a (rows × columns) view: the numpy block itself when it declared numpy input
    (numpy_in), else a DataFrame over that block (one block: no per-column consolidation, no further copy).
    Anything else (strings, tensors, mixed datatypes) takes the general path, tensors_to_input; a numpy-in
    model then gets a table of mixed numeric columns as DataFrame.to_numpy() gives it (their common type).

    transient: buf is reused after this call (FrameReader's buffer). The fast path copies the data out anyway;
    the general path then works on its own copy, as predict() may keep arrays that share memory with it."""
    if FAST_PATH:
        hit = _known_table(buf)
        if hit is not None and (numpy_in or pd is not None):
            block, names = hit
            return block if numpy_in else pd.DataFrame(block, columns=_column_index(names), copy=False)
    if transient:
        buf = memoryview(bytearray(buf))
    cols = parse_frame(buf)
    block = _block(cols) if FAST_PATH else None
    if block is not None:
        _remember_table(buf, cols)
    else:
        _want_pandas()
        data = tensors_to_input([(name, _column(name, dt, dims, data)) for name, dt, dims, data, _ in cols])
        if numpy_in and FAST_PATH and pd is not None and isinstance(data, pd.DataFrame) and all(c[1] != "BYTES" for c in cols):
            return data.to_numpy()
        return data
    if numpy_in:
        return block
    if _want_pandas() is None:
        return tensors_to_input([(name, _column(name, dt, dims, data)) for name, dt, dims, data, _ in cols])
    return pd.DataFrame(block, columns=_column_index(tuple(c[0] for c in cols)), copy=False)


def _block(cols):
    """The (rows × columns) array of a table of 1-D numeric columns of one datatype, or None."""
    if not cols:
        return None
    dt0, dims0 = cols[0][1], cols[0][2]
    if dt0 == "BYTES" or len(dims0) != 1:
        return None
    for c in cols:
        if c[1] != dt0 or c[2] != dims0:
            return None
    if len({c[0] for c in cols}) != len(cols):  # duplicate names: a DataFrame from a dict keeps the last one
        return None
    rows = dims0[0]
    dtype = _dtypes()[dt0]
    size = rows * dtype.itemsize
    raw = bytearray(size * len(cols))
    view = memoryview(raw)
    at = 0
    for c in cols:
        view[at:at + size] = c[3]
        at += size
    return np.frombuffer(raw, dtype=dtype).reshape(len(cols), rows).T


# Requests to a deployment repeat one frame layout: the same columns, datatypes and row count, so the same
# header bytes at the same offsets and the same length. For a table seen before, the header bytes are gathered
# and compared in one numpy operation each, and the data gathered at once, instead of parsing each column's
# header in Python (~8x faster for 30 columns). Equal header bytes at equal offsets in a frame of equal length
# parse to the same columns, so this gives exactly what parse_frame + _block give. The data is gathered byte by
# byte with numpy when the columns are short (one row: 30 × 8 bytes in ~1 µs), else as one slice per column
# joined in C (a batch: 100 rows of 30 columns in ~4 µs instead of ~25, whatever the row count). Frame length ->
# (header byte offsets, their bytes, data byte offsets or None, data slices getter, dtype, columns, rows, names);
# 64 layouts.
_TABLES = {}
_TABLE_GATHER_MAX = 64  # bytes per column up to which the data is gathered byte by byte
_TABLE_DATA_MAX = 64 << 10  # ... and bytes of the whole table (the byte offsets take 8 bytes per byte)


def _remember_table(buf, cols):
    size = len(cols[0][3])
    bounds = [0] + [at for c in cols for at in (c[4], c[4] + size)] + [len(buf)]  # header, data, ..., header
    hdr_idx = np.concatenate([np.arange(a, b, dtype=np.intp) for a, b in zip(bounds[0::2], bounds[1::2])])
    data_idx = getter = None
    if size <= _TABLE_GATHER_MAX and size * len(cols) <= _TABLE_DATA_MAX:
        data_idx = (np.array([c[4] for c in cols], dtype=np.intp)[:, None] + np.arange(size, dtype=np.intp)).ravel()
    elif len(cols) > 1:
        getter = operator.itemgetter(*[slice(c[4], c[4] + size) for c in cols])
    else:
        one = slice(cols[0][4], cols[0][4] + size)
        getter = lambda b: (b[one],)  # noqa: E731 - itemgetter of one slice returns the slice, not a tuple
    if len(_TABLES) >= 64:
        _TABLES.clear()
    _TABLES[len(buf)] = (hdr_idx, np.frombuffer(buf, dtype=np.uint8)[hdr_idx].tobytes(), data_idx, getter,
                         _dtypes()[cols[0][1]], len(cols), cols[0][2][0], tuple(c[0] for c in cols))


def _known_table(buf):
    """(block, names) when buf has the layout of a table seen before, else None."""
    known = _TABLES.get(len(buf))
    if known is None:
        return None
    hdr_idx, hdr, data_idx, getter, dtype, ncols, rows, names = known
    u8 = np.frombuffer(buf, dtype=np.uint8)
    if u8[hdr_idx].tobytes() != hdr:  # (np.array_equal took 4 µs of Python around the same comparison)
        return None
    if data_idx is not None:
        block = u8[data_idx].view(dtype)  # the gather is the one copy
    else:
        block = np.frombuffer(bytearray().join(getter(buf)), dtype=dtype)  # writable, as the gather's
    return block.reshape(ncols, rows).T, names


_INDEXES = {}  # column names -> pandas Index: requests repeat their columns, and an Index is immutable


def _column_index(names):
    """A pandas Index of names, built once per distinct list: building it is ~3/4 of the cost of a DataFrame
    over a ready block (pandas infers its type from every name)."""
    idx = _INDEXES.get(names)
    if idx is None:
        if len(_INDEXES) >= 64:
            _INDEXES.clear()
        idx = _INDEXES[names] = pd.Index(names)
    return idx


_U32 = struct.Struct("<I")


def _decode_bytes(data, count, name):
    """BYTES column -> numpy object array of str (bytes where a value is not UTF-8)."""
    b = bytes(data)
    out = _split_short_strings(b, count)
    if out is None:
        out = _walk_strings(b, count, name)
    arr = np.empty(count, dtype=object)
    arr[:] = out
    return arr


class _Decoded(dict):
    """piece (a value followed by one more byte) -> the value decoded; each distinct piece decoded once."""

    def __missing__(self, piece):
        raw = piece[:-1]
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError:
            s = raw  # binary payloads stay bytes
        self[piece] = s
        return s


def _split_short_strings(b, count):
    """Fast path for text columns (the common case: short, non-empty values without NUL bytes), ~2x faster
    than walking the lengths: every length prefix is then [len, 0, 0, 0] and the only zero bytes of the data
    are those triples, so bytes.split(b"\0\0\0") (in C) cuts the data into the values, each followed by the
    next length byte. The layout is verified exactly with numpy first (zeros only in triples, each value as
    long as its length byte says, ending where the next begins); None when it does not hold."""
    if count == 0 or len(b) < 4 * count:
        return None
    u = np.frombuffer(b, dtype=np.uint8)
    z = np.flatnonzero(u == 0)
    if len(z) != 3 * count:
        return None
    starts = z[0::3]
    if starts[0] != 1 or not (np.array_equal(z[1::3], starts + 1) and np.array_equal(z[2::3], starts + 2)):
        return None
    ends = starts + 3 + u[starts - 1].astype(np.int64)  # where each value ends: the next length byte
    if ends[-1] != len(b) or not np.array_equal(ends[:-1] + 1, starts[1:]):
        return None
    pieces = b.split(b"\0\0\0")  # [len0, value0+len1, value1+len2, ..., last value]
    decoded = _Decoded()
    out = list(map(decoded.__getitem__, pieces[1:count]))
    out.append(decoded[pieces[count] + b"\0"])
    return out


def _walk_strings(b, count, name):
    # General case, one Python iteration per value: one struct call per element and one decode per distinct
    # value (categorical columns repeat a few values). Bounds are checked by the slice and the final position,
    # not per element.
    out = [None] * count
    cache = {}
    pos, end = 0, len(b)
    unpack = _U32.unpack_from
    get = cache.get
    try:
        for i in range(count):
            start = pos + 4
            pos = start + unpack(b, pos)[0]
            raw = b[start:pos]
            s = get(raw)
            if s is None:
                if pos > end:
                    raise ProtocolError("column %r: BYTES data too short" % name)
                try:
                    s = raw.decode("utf-8")
                except UnicodeDecodeError:
                    s = raw  # binary payloads stay bytes
                if len(cache) < 4096:
                    cache[raw] = s
            out[i] = s
    except struct.error:
        raise ProtocolError("column %r: BYTES data too short" % name) from None
    if pos != end:
        if pos > end:
            raise ProtocolError("column %r: BYTES data too short" % name)
        raise ProtocolError("column %r: %d extra bytes after %d BYTES elements" % (name, end - pos, count))
    return out


def tensors_to_input(cols):
    """What predict() receives for a T request (see docs/worker-protocol.md)."""
    if cols and pd is not None and all(a.ndim == 1 for _, a in cols) and len({len(a) for _, a in cols}) == 1:
        return pd.DataFrame({name: a for name, a in cols})
    if len(cols) == 1:
        return cols[0][1]
    return {name: a for name, a in cols}


def result_to_tensors(result, default_name="predictions"):
    """Turn predict()'s return value into a list of (name, numpy array)."""
    if type(result) is np.ndarray:  # the usual answer, first: one output, as it is
        return [(default_name, result)]
    _adopt_pandas()
    if pd is not None and isinstance(result, pd.DataFrame):
        return [(str(c), _column_array(result[c])) for c in result.columns]
    if pd is not None and isinstance(result, pd.Series):
        return [(default_name, _column_array(result))]
    if isinstance(result, dict):
        for key in ("predictions", "prediction"):
            # {"predictions": [...], "model": "v3"} -> just the list; a dict of arrays -> one output per key
            if key in result and any(_is_scalar(v) for v in result.values()):
                return result_to_tensors(result[key], default_name)
        return [(str(k), _column_array(v) if pd is not None and isinstance(v, pd.Series) else np.asarray(v))
                for k, v in result.items()]
    return [(default_name, np.asarray(result))]


def _is_scalar(v):
    # np.ndim() converts a list to an array just to count its dimensions (~0.3 ms per 10k-element list):
    # containers are never scalars, so only other values are asked.
    if isinstance(v, (list, tuple)) or (np is not None and isinstance(v, np.ndarray)):
        return False
    if pd is not None and isinstance(v, (pd.Series, pd.DataFrame, pd.Index)):
        return False
    return np.ndim(v) == 0


# Answers repeat their layout: a numeric output's header (name, datatype, dims, data size) is fixed by its name,
# numpy dtype and shape, so it is built once. (name, dtype, shape) -> header bytes; up to 256 layouts.
_OUT_HEADERS = {}


def encode_tensors(cols):
    """Encode (name, array) pairs as a list of byte chunks forming one tensor frame (bytes, or memoryviews of
    bytes: a numeric output's data is the array's own buffer)."""
    chunks = [_U32.pack(len(cols))]
    for name, a in cols:
        key = (name, a.dtype, a.shape)
        header = _OUT_HEADERS.get(key)
        if header is not None:
            chunks.append(header)
            chunks.append(_numeric_data(a))
            continue
        dt, data = _encode_array(name, a)
        nb = name.encode("utf-8")
        header = (struct.pack("<H", len(nb)) + nb + struct.pack("<B", len(dt)) + dt.encode("ascii")
                  + struct.pack("<B%dq" % a.ndim, a.ndim, *a.shape) + struct.pack("<Q", len(data)))
        if dt != "BYTES":  # a BYTES output's size depends on its values
            if len(_OUT_HEADERS) >= 256:
                _OUT_HEADERS.clear()
            _OUT_HEADERS[key] = header
        chunks.append(header)
        chunks.append(data)
    return chunks


_KIND_NAMES = {("b", 1): "BOOL", ("u", 1): "UINT8", ("u", 2): "UINT16", ("u", 4): "UINT32", ("u", 8): "UINT64",
               ("i", 1): "INT8", ("i", 2): "INT16", ("i", 4): "INT32", ("i", 8): "INT64",
               ("f", 2): "FP16", ("f", 4): "FP32", ("f", 8): "FP64"}


def _encode_array(name, a):
    key = (a.dtype.kind, a.dtype.itemsize)
    if key in _KIND_NAMES:
        return _KIND_NAMES[key], _numeric_data(a)
    if a.dtype.kind in "USOmM":
        parts = []
        for v in a.ravel().tolist():
            b = v if isinstance(v, bytes) else ("" if v is None else str(v)).encode("utf-8")
            parts.append(struct.pack("<I", len(b)))
            parts.append(b)
        return "BYTES", b"".join(parts)
    raise TypeError("output %r has unsupported dtype %s" % (name, a.dtype))


def _numeric_data(a):
    """A numeric array's data as the frame carries it (row-major, little-endian), as bytes: its own buffer when
    it is already laid out so."""
    a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return memoryview(a).cast("B") if a.size else b""


# ---------------------------------------------------------------------------------------------------
# serve


def _format_exc(e):
    return "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc())


def _accepts_params(fn):
    """Whether fn takes MLflow's params argument (by name, or through **kwargs)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "params" or p.kind == p.VAR_KEYWORD for p in params)


def _accepts_model_kwarg(fn):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == "model" or p.kind == p.VAR_KEYWORD for p in params)


def _load(model_dir):
    """Import score.py, call load_model() and describe(). Returns (predict, model, inputs, outputs)."""
    if np is None:
        raise ImportError("numpy is required by the slipway harness but is not installed")
    if not os.path.isfile(os.path.join(model_dir, "score.py")):
        if os.path.isfile(os.path.join(model_dir, "MLmodel")):
            return _load_mlflow(model_dir)
        raise FileNotFoundError("no score.py in %s" % model_dir)
    sys.path.insert(0, model_dir)
    sys.dont_write_bytecode = True  # leave the model directory as it was: no __pycache__
    import score  # noqa: E402  (the user's module)

    predict = getattr(score, "predict", None)
    if not callable(predict):
        raise AttributeError("score.py does not define predict()")
    load_model = getattr(score, "load_model", None)
    model = load_model() if callable(load_model) else None
    inputs, outputs = [], []
    describe = getattr(score, "describe", None)
    if callable(describe):
        d = describe() or {}
        inputs, outputs = list(d.get("inputs") or []), list(d.get("outputs") or [])
    return predict, model, inputs, outputs


# ---------------------------------------------------------------------------------------------------
# MLflow model directories (served without the MLflow library; the Go side, internal/mlmodel, refuses at
# registration what this cannot load)


def _inside(model_dir, rel):
    """model_dir/rel, refusing a path that leaves model_dir (the MLmodel file is untrusted input)."""
    path = os.path.realpath(os.path.join(model_dir, rel))
    root = os.path.realpath(model_dir)
    if path != root and not path.startswith(root + os.sep):
        raise ValueError("MLmodel path %r leaves the model directory" % rel)
    return path


def _load_mlflow(model_dir):
    """Load an MLflow model directory: the sklearn flavor's pickle, or a python_function model through its own
    loader_module. Returns what _load returns, with a predict(data, model=None) that turns MLflow's input forms
    into a DataFrame first, as MLflow's pyfunc does."""
    try:
        import yaml
    except ImportError:
        raise ImportError("reading an MLmodel file needs PyYAML (Debian: python3-yaml), which MLflow models depend on anyway") from None
    if _want_pandas() is None:
        raise ImportError("MLflow models take pandas DataFrames: install pandas (Debian: python3-pandas)")
    with open(os.path.join(model_dir, "MLmodel"), "rb") as f:
        conf = yaml.safe_load(f) or {}
    flavors = conf.get("flavors") or {}
    pyfunc = flavors.get("python_function") or {}
    signature = conf.get("signature") or {}
    names = [c.get("name") for c in json.loads(signature.get("inputs") or "[]") if isinstance(c, dict)]
    names = names if names and all(names) else None
    outputs = [c for c in json.loads(signature.get("outputs") or "[]") if isinstance(c, dict)]

    if "sklearn" in flavors:
        sk = flavors["sklearn"]
        fmt = sk.get("serialization_format") or "pickle"
        if fmt == "cloudpickle":
            import cloudpickle as loader
        elif fmt == "pickle":
            import pickle as loader
        else:
            raise ValueError("sklearn serialization_format %r is not supported (pickle or cloudpickle)" % fmt)
        if sk.get("code"):  # code_paths: modules the pickle refers to (custom transformers)
            sys.path.insert(0, _inside(model_dir, sk["code"]))
        with open(_inside(model_dir, sk["pickled_model"]), "rb") as f:
            model = loader.load(f)
        method = getattr(model, pyfunc.get("predict_fn") or "predict")

        def impl(frame, params):
            return method(frame)
        takes_params = False
    else:
        import importlib
        loader_module = pyfunc.get("loader_module")
        if not loader_module or loader_module == "mlflow" or loader_module.startswith("mlflow."):
            raise ValueError("MLflow flavor(s) %s cannot be served without MLflow" % ", ".join(sorted(flavors)))
        if pyfunc.get("code"):
            sys.path.insert(0, _inside(model_dir, pyfunc["code"]))
        data = pyfunc.get("model_path") or pyfunc.get("data")
        model = importlib.import_module(loader_module)._load_pyfunc(_inside(model_dir, data) if data else model_dir)

        takes_params = _accepts_params(model.predict)

        def impl(frame, params):
            return model.predict(frame, params=params) if params is not None else model.predict(frame)

    def predict(data, model=None, params=None):
        return impl(_mlflow_frame(data, names), params)

    predict.slipway_params = takes_params  # the harness's predict always has params; the model's may not

    out = [{"name": outputs[0].get("name") or "predictions"}] if len(outputs) == 1 else []
    return predict, None, [], out


def _mlflow_frame(data, names):
    """MLflow's input forms as a DataFrame: {"dataframe_split": ...}, {"dataframe_records": ...},
    {"instances"/"inputs": ...}, a split-oriented {"columns", "data"} (MLflow's input_example.json), records,
    a dict of columns, or rows (named by the signature). Columns are put in the signature's order."""
    frame = data
    if isinstance(data, dict):
        if "dataframe_split" in data:
            frame = _split_frame(data["dataframe_split"])
        elif "dataframe_records" in data:
            frame = pd.DataFrame(data["dataframe_records"])
        elif "instances" in data or "inputs" in data:
            frame = _rows_frame(data.get("instances", data.get("inputs")), names)
        elif "columns" in data and "data" in data and set(data) <= {"columns", "data", "index"}:
            frame = _split_frame(data)
        else:
            frame = pd.DataFrame({k: (v if isinstance(v, list) else [v]) for k, v in data.items()})
    elif isinstance(data, list):
        frame = _rows_frame(data, names)
    elif np is not None and isinstance(data, np.ndarray) and data.ndim == 2 and names and data.shape[1] == len(names):
        frame = pd.DataFrame(data, columns=names)
    if isinstance(frame, pd.DataFrame) and names and list(frame.columns) != names and all(n in frame.columns for n in names):
        frame = frame[names]  # a copy: only when the columns are not already in the signature's order
    return frame


def _split_frame(split):
    return pd.DataFrame(data=split.get("data"), columns=split.get("columns"), index=split.get("index"))


def _rows_frame(rows, names):
    if isinstance(rows, dict):
        return pd.DataFrame(rows)
    if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
        return pd.DataFrame(rows)
    if isinstance(rows, list) and rows and all(isinstance(r, list) for r in rows) and names and all(len(r) == len(names) for r in rows):
        return pd.DataFrame(rows, columns=names)
    return np.asarray(rows)


def predict_input(model_dir, predict):
    """"numpy" when the model's predict() takes the 2-D numpy block of a table, else "dataframe".

    Declared in runtime.yaml (SLIPWAY: {PREDICT_INPUT: numpy | dataframe}), else detected from score.py:
    predict's first parameter annotated as a numpy array (np.ndarray, numpy.ndarray, NDArray[...])."""
    declared = _declared_input(model_dir)
    if declared:
        return declared
    try:
        params = list(inspect.signature(predict).parameters.values())
    except (TypeError, ValueError):
        return "dataframe"
    return "numpy" if params and _is_ndarray_annotation(params[0].annotation) else "dataframe"


def _is_ndarray_annotation(ann):
    if ann is inspect.Parameter.empty:
        return False
    if not isinstance(ann, str):
        if np is not None and ann is np.ndarray:
            return True
        ann = getattr(ann, "__name__", None) or str(ann)
    ann = ann.replace(" ", "")
    return ann in ("np.ndarray", "numpy.ndarray", "ndarray") or ann.startswith(("NDArray", "npt.NDArray", "numpy.typing.NDArray", "numpy.ndarray["))


def _declared_input(model_dir):
    """runtime.yaml's SLIPWAY.PREDICT_INPUT ("numpy" / "dataframe"), or None. PyYAML is imported only when
    the file has a SLIPWAY section (importing it costs ~30 ms of a replica's start)."""
    path = os.path.join(model_dir, "runtime.yaml")
    try:
        with open(path, "rb") as f:
            text = f.read(1 << 20)
    except OSError:
        return None
    if b"SLIPWAY" not in text:
        return None
    import yaml
    try:
        conf = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return None  # the registration check (python.runtime_yaml) reports a broken runtime.yaml
    value = ((conf.get("SLIPWAY") or {}) if isinstance(conf, dict) else {}).get("PREDICT_INPUT")
    if value is None:
        return None
    value = str(value).strip().lower()
    if value not in ("numpy", "dataframe"):
        raise ValueError("runtime.yaml: SLIPWAY.PREDICT_INPUT must be numpy or dataframe, not %r" % value)
    return value


_TIMINGS = struct.Struct("<QQQ")
# An answer whose call took less than this may wait for the next call's (already read) to go out with it, and
# waits no longer than this in all: one write and one wake-up of the server for several quick answers, at the
# price of at most ~1 ms. A slower call's answer goes out at once: held, it would wait for a whole next call.
# A network worker turns it off (serve --hold-ns 0): it tells which call the process died on by the answers it has
# read, and an answer held when the process dies would make it blame the wrong one.
HOLD_NS = 1_000_000
_M_FRAME = _HEADER.pack(1 + _TIMINGS.size, ord("m"))  # the header of every timings frame


def serve(model_dir, hold_ns=HOLD_NS):
    # Frames go to a private copy of stdout; fd 1 (and sys.stdout) become the log so stray prints are harmless.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = FrameReader(getattr(sys.stdin.buffer, "raw", sys.stdin.buffer))

    try:
        model_dir = os.path.abspath(model_dir)
        predict, model, inputs, outputs = _load(model_dir)
        numpy_in = predict_input(model_dir, predict) == "numpy" and FAST_PATH
        if not numpy_in:
            _want_pandas()  # DataFrames for every table: loaded before the hello says the replica is ready
    except BaseException as e:  # noqa: B902 - SystemExit in score.py is a load failure too
        msg = _format_exc(e)
        sys.stderr.write(msg)
        write_json(out, "H", {"ok": False, "error": msg})
        return 1
    takes_params = getattr(predict, "slipway_params", None)
    if takes_params is None:
        takes_params = _accepts_params(predict)
    write_json(out, "H", {"ok": True, "runtime": "python", "pid": os.getpid(), "inputs": inputs, "outputs": outputs,
                          "params": takes_params, "predict_input": "numpy" if numpy_in else "dataframe",
                          "timings": True})

    with_model = _accepts_model_kwarg(predict)
    out_name = outputs[0].get("name", "predictions") if len(outputs) == 1 and isinstance(outputs[0], dict) else "predictions"

    call = _caller(predict, model, with_model, numpy_in)

    clock = time.perf_counter_ns
    read, ready, shared = inp.read, inp.ready, inp.buffer
    timings = _TIMINGS.pack
    held = 0  # when the oldest answer not yet flushed was ready (0: none)
    while True:
        try:
            frame = read()
        except ProtocolError as e:
            sys.stderr.write("slipway harness: %s\n" % e)
            _flush(out)
            return 2
        if frame is None:
            _flush(out)
            return 0
        kind, payload = frame
        # Per-request profile (docs/worker-protocol.md, "m" frames): decode, predict(), encode, in ns.
        t0 = clock()
        t1 = t2 = 0
        try:
            if kind == "T":
                data = decode_input(payload, numpy_in, payload.obj is shared)
                t1 = clock()
                result = call(data)
                t2 = clock()
                reply_kind, reply = "t", encode_tensors(result_to_tensors(result, out_name))
            elif kind == "J":
                data = json.loads(bytes(payload))
                t1 = clock()
                result = call(data)
                t2 = clock()
                reply_kind, reply = "j", to_json(result).encode("utf-8")
            elif kind == "P":  # params (JSON) then tensors, for a predict() that takes params
                (n,) = struct.unpack_from("<I", payload, 0)
                params = json.loads(bytes(payload[4:4 + n]))
                data = decode_input(payload[4 + n:], numpy_in, payload.obj is shared)
                t1 = clock()
                result = call(data, params=params)
                t2 = clock()
                reply_kind, reply = "t", encode_tensors(result_to_tensors(result, out_name))
            elif kind == "Q":
                reply_kind, reply = "q", b""
            else:
                raise ProtocolError("unknown frame kind %r" % kind)
        except Exception as e:
            sys.stderr.write(_format_exc(e))
            sys.stderr.flush()
            t2 = 0
            error = {"error": str(e) or type(e).__name__, "type": type(e).__name__}
            reply_kind, reply = "E", to_json(error).encode("utf-8")
        # With the next request already read and this call quick, this answer may go out together with the
        # next one's, in one write (the server reads them in order): see HOLD_NS. Its timings go in the same
        # write, just before it.
        now = clock()
        flush = not ready() or now - t0 >= hold_ns or (held and now - held >= hold_ns)
        held = 0 if flush else (held or now)
        try:
            profile = _M_FRAME + timings(t1 - t0, t2 - t1, now - t2) if t2 else b""
            write_frame(out, reply_kind, reply, flush, profile)
        except ValueError as e:  # response too large for one frame
            write_frame(out, "E", to_json({"error": str(e), "type": type(e).__name__}).encode("utf-8"), flush=flush)
        except OSError:  # the server went away
            return 1


def _flush(out):
    try:
        out.flush()
    except OSError:  # the server went away
        pass


def _caller(predict, model, with_model, numpy_in):
    """call(data, **params): predict() on one request's input, with scikit-learn's finiteness check skipped when
    it is known to pass.

    A scikit-learn estimator given a finite float block (_all_finite) predicts with assume_finite=True; any other
    input (NaN or infinity, integers, a DataFrame, JSON) reaches it with the check as the user's configuration
    has it. Entering sklearn.config_context for every finite call cost ~5 µs of a ~90 µs predict_proba (the
    context manager is a generator that copies the config dict and calls set_config twice, 8 arguments each);
    so the common case is made the standing configuration instead: assume_finite=True is set once, after
    load_model() ran under the user's own configuration, and only the other inputs pay for a context that puts
    the user's value back for their call. sklearn's configuration is per thread (a thread first reading it gets
    a copy of the process-wide defaults): the setting covers the harness's thread, which makes every
    predict() call, exactly as the per-call context did; a thread score.py starts keeps the defaults, as
    before, and sklearn's own joblib helpers carry the caller's configuration into their workers, as before."""
    def plain(data, **params):
        return predict(data, model=model, **params) if with_model else predict(data, **params)

    checked = _sklearn_finite_switch(model) if numpy_in else None  # only a numpy-in model gets float blocks
    if checked is None:
        return plain

    def call(data, **params):
        if _all_finite(data):
            return plain(data, **params)
        with checked(assume_finite=False):  # the check on, as the user's configuration has it
            return plain(data, **params)
    return call


def _sklearn_finite_switch(model):
    """When the model is a scikit-learn estimator and the user's configuration has sklearn's finiteness check
    on: set assume_finite=True for this thread and return sklearn.config_context (to turn the check back on for
    one call); else None. Never imports sklearn: a model that is an estimator has imported it already."""
    sk = sys.modules.get("sklearn")
    base = sys.modules.get("sklearn.base")
    if sk is None or base is None or not isinstance(model, base.BaseEstimator):
        return None
    get_config, set_config = getattr(sk, "get_config", None), getattr(sk, "set_config", None)
    context = getattr(sk, "config_context", None)
    if get_config is None or set_config is None or context is None:
        return None
    if get_config().get("assume_finite", True):  # the user skips the check for every input already
        return None
    set_config(assume_finite=True)
    return context


def _all_finite(data):
    """Whether data is a float numpy block without NaN or infinity: then scikit-learn's own finiteness check of
    its input (a third of a small pipeline's predict) is known to pass, and assume_finite skips it. Anything
    else (a DataFrame, NaN on purpose for HistGradientBoosting, ...) reaches the model exactly as it came."""
    return type(data) is np.ndarray and data.dtype.kind == "f" and bool(np.isfinite(data).all())


# ---------------------------------------------------------------------------------------------------
# inspect


def inspect_score(model_dir):
    path = os.path.join(model_dir, "score.py")
    info = {"exists": os.path.isfile(path), "parses": False, "error": None, "functions": []}
    if not info["exists"]:
        info["error"] = "score.py not found in %s" % model_dir
        return info
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), filename="score.py")
    except SyntaxError as e:
        info["error"] = "%s: %s line %s" % (type(e).__name__, e.msg, e.lineno)
        return info
    except (OSError, ValueError) as e:
        info["error"] = "%s: %s" % (type(e).__name__, e)
        return info
    info["parses"] = True
    info["functions"] = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return info


def package_version(name):
    """Installed version of a distribution (or of the distribution providing an import name), else None."""
    from importlib import metadata

    for candidate in (name, name.replace("_", "-"), name.replace("-", "_")):
        try:
            return metadata.version(candidate)
        except metadata.PackageNotFoundError:
            pass
        except Exception:  # broken metadata on disk
            return None
    for dist in metadata.packages_distributions().get(name, []):  # import name, e.g. sklearn -> scikit-learn
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return None


def run_inspect(model_dir, packages):
    names = [p.strip() for p in packages.split(",") if p.strip()]
    result = {
        "python": platform.python_version(),
        "score_py": inspect_score(model_dir),
        "packages": {n: package_version(n) for n in names},
    }
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def run_environment():
    """Describe this interpreter: version, sys.executable and every installed distribution's version."""
    from importlib import metadata

    packages = {}
    for dist in metadata.distributions():
        try:
            name = dist.metadata["Name"]
        except Exception:  # broken metadata on disk
            continue
        if name and name not in packages:  # the first on sys.path wins, as for import
            packages[name] = dist.version
    result = {"python": platform.python_version(), "executable": sys.executable, "packages": packages}
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="harness.py", description="Slipway Python model harness")
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("serve", help="serve score.py over the frame protocol on stdin/stdout")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--hold-ns", type=int, default=HOLD_NS,
                   help="the longest a quick answer waits for the next one's company (0: every answer at once)")
    p = sub.add_parser("inspect", help="describe score.py and installed packages as JSON")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--packages", default="")
    sub.add_parser("environment", help="describe this interpreter and its installed distributions as JSON")
    args = parser.parse_args(argv)
    if args.mode == "serve":
        return serve(args.model_dir, args.hold_ns)
    if args.mode == "environment":
        return run_environment()
    return run_inspect(args.model_dir, args.packages)


if __name__ == "__main__":
    sys.exit(main())
