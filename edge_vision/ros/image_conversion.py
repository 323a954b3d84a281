"""numpy <-> sensor_msgs/Image and sensor_msgs/CompressedImage, without cv_bridge.

Behaves like cv_bridge's ``imgmsg_to_cv2`` / ``cv2_to_imgmsg`` for the encodings in
:data:`ENCODINGS`. Only message modules are imported (no rclpy), so this is cheap to test.

Array layout: H x W for single-channel encodings, H x W x C otherwise, with the dtype from
:data:`ENCODINGS`. Packed YUV 4:2:2 is H x W x 2 (byte pairs in wire order), as in cv_bridge.

YUV 4:2:2 names follow sensor_msgs/image_encodings.hpp, where the legacy names are easy to
mix up:

* ``uyvy`` and its deprecated alias ``yuv422``: bytes U0 Y0 V0 Y1 (fourcc UYVY);
* ``yuyv`` and its deprecated alias ``yuv422_yuy2``: bytes Y0 U0 Y1 V0 (fourcc YUYV/YUY2).

Colour conversion of YUV uses OpenCV, i.e. BT.601 limited range ("video" levels).

Data ownership: :func:`image_to_numpy` returns a view over ``msg.data`` whenever it can, so
writing to the array writes to the message, and the view keeps the message buffer alive.
"""

from __future__ import annotations

import array as pyarray
import operator
import sys
from typing import NamedTuple

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

__all__ = [
    "ENCODINGS",
    "EncodingInfo",
    "compressed_to_numpy",
    "convert_encoding",
    "encoding_info",
    "image_to_numpy",
    "new_image",
    "ns_to_stamp",
    "numpy_to_compressed",
    "numpy_to_image",
    "stamp_to_ns",
]

_NS_PER_S = 1_000_000_000
_NATIVE_BIGENDIAN = int(sys.byteorder == "big")


class EncodingInfo(NamedTuple):
    channels: int
    dtype: np.dtype


def _info(channels: int, dtype: type) -> EncodingInfo:
    return EncodingInfo(channels, np.dtype(dtype))


def _generic_encodings() -> dict[str, EncodingInfo]:
    # The OpenCV-style names from image_encodings.hpp ("8UC3", "32FC1", ...), 1 to 4 channels.
    depths = {
        "8U": np.uint8,
        "8S": np.int8,
        "16U": np.uint16,
        "16S": np.int16,
        "32S": np.int32,
        "32F": np.float32,
        "64F": np.float64,
    }
    return {f"{d}C{c}": _info(c, t) for d, t in depths.items() for c in range(1, 5)}


ENCODINGS: dict[str, EncodingInfo] = {
    "mono8": _info(1, np.uint8),
    "mono16": _info(1, np.uint16),
    "rgb8": _info(3, np.uint8),
    "bgr8": _info(3, np.uint8),
    "rgba8": _info(4, np.uint8),
    "bgra8": _info(4, np.uint8),
    "rgb16": _info(3, np.uint16),
    "bgr16": _info(3, np.uint16),
    "rgba16": _info(4, np.uint16),
    "bgra16": _info(4, np.uint16),
    "uyvy": _info(2, np.uint8),
    "yuv422": _info(2, np.uint8),
    "yuyv": _info(2, np.uint8),
    "yuv422_yuy2": _info(2, np.uint8),
    "bayer_rggb8": _info(1, np.uint8),
    "bayer_bggr8": _info(1, np.uint8),
    "bayer_gbrg8": _info(1, np.uint8),
    "bayer_grbg8": _info(1, np.uint8),
    "bayer_rggb16": _info(1, np.uint16),
    "bayer_bggr16": _info(1, np.uint16),
    "bayer_gbrg16": _info(1, np.uint16),
    "bayer_grbg16": _info(1, np.uint16),
    **_generic_encodings(),
}
"""Encoding name -> (channels, dtype). The single source of truth for the wire layout."""

# Pixel layout of the encodings that colour conversion understands; the generic "8UC3"-style
# encodings are deliberately absent: like cv_bridge, they only convert to same-channel types.
_LAYOUT: dict[str, str] = {
    "mono8": "GRAY",
    "mono16": "GRAY",
    "rgb8": "RGB",
    "rgb16": "RGB",
    "bgr8": "BGR",
    "bgr16": "BGR",
    "rgba8": "RGBA",
    "rgba16": "RGBA",
    "bgra8": "BGRA",
    "bgra16": "BGRA",
    "uyvy": "UYVY",
    "yuv422": "UYVY",
    "yuyv": "YUYV",
    "yuv422_yuy2": "YUYV",
    # OpenCV names a Bayer pattern by the 2x2 block starting at row 1, column 1, so ROS's
    # RGGB (pattern starting at row 0, column 0) is OpenCV's "BG", and so on.
    "bayer_rggb8": "BayerBG",
    "bayer_rggb16": "BayerBG",
    "bayer_bggr8": "BayerRG",
    "bayer_bggr16": "BayerRG",
    "bayer_gbrg8": "BayerGR",
    "bayer_gbrg16": "BayerGR",
    "bayer_grbg8": "BayerGB",
    "bayer_grbg16": "BayerGB",
}
_RGB_LAYOUTS = ("GRAY", "RGB", "BGR", "RGBA", "BGRA")
_COLOR_LAYOUTS = frozenset({"RGB", "BGR", "RGBA", "BGRA", "UYVY", "YUYV"})


def _conversion_code(src: str, dst: str) -> int:
    if src in ("UYVY", "YUYV"):
        return int(getattr(cv2, f"COLOR_YUV2{dst}_{src}"))
    return int(getattr(cv2, f"COLOR_{src}2{dst}"))


_CONVERSION_CODES: dict[tuple[str, str], int] = {
    (src, dst): _conversion_code(src, dst)
    for src in (*_RGB_LAYOUTS, "UYVY", "YUYV", "BayerBG", "BayerRG", "BayerGR", "BayerGB")
    for dst in _RGB_LAYOUTS
    if src != dst
}


def encoding_info(encoding: str) -> EncodingInfo:
    """(channels, dtype) of ``encoding``; ValueError if it is not supported."""
    try:
        return ENCODINGS[encoding]
    except KeyError:
        raise ValueError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(ENCODINGS)}"
        ) from None


# ---------------------------------------------------------------------------------------------
# Stamps


def ns_to_stamp(ns: int) -> Time:
    """builtin_interfaces/Time for an integer number of nanoseconds (negative allowed)."""
    sec, nanosec = divmod(operator.index(ns), _NS_PER_S)
    if not -(2**31) <= sec < 2**31:
        raise ValueError(f"stamp {ns} ns does not fit builtin_interfaces/Time (int32 seconds)")
    return Time(sec=sec, nanosec=nanosec)


def stamp_to_ns(stamp: Time) -> int:
    """Integer nanoseconds of a builtin_interfaces/Time (or anything with sec/nanosec)."""
    return int(stamp.sec) * _NS_PER_S + int(stamp.nanosec)


def _make_header(header: Header | None, frame_id: str, stamp: int | Time | None) -> Header:
    # A fresh Header, so that overriding frame_id/stamp never mutates the caller's header.
    out = Header()
    if header is not None:
        out.stamp = Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec)
        out.frame_id = header.frame_id
    if frame_id:
        out.frame_id = frame_id
    if stamp is not None:
        if isinstance(stamp, Time):
            out.stamp = Time(sec=stamp.sec, nanosec=stamp.nanosec)
        elif isinstance(stamp, bool):
            raise TypeError("stamp must be integer nanoseconds or builtin_interfaces/Time")
        else:
            out.stamp = ns_to_stamp(stamp)
    return out


# ---------------------------------------------------------------------------------------------
# Raw images


def _check_array(array: np.ndarray, encoding: str) -> EncodingInfo:
    info = encoding_info(encoding)
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected a numpy.ndarray, got {type(array).__name__}")
    if array.dtype.newbyteorder("=") != info.dtype:
        raise ValueError(
            f"encoding {encoding!r} needs dtype {info.dtype}, got array of dtype {array.dtype}"
        )
    shape = array.shape
    if info.channels == 1:
        ok = len(shape) == 2 or (len(shape) == 3 and shape[2] == 1)
        expected = "H x W (or H x W x 1)"
    else:
        ok = len(shape) == 3 and shape[2] == info.channels
        expected = f"H x W x {info.channels}"
    if not ok:
        raise ValueError(f"encoding {encoding!r} needs shape {expected}, got {shape}")
    return info


def _to_byte_array(array: np.ndarray) -> pyarray.array:
    """The array's pixels as a new array('B'), copied exactly once, in native byte order.

    array('B') is the type rclpy stores in ``data``: assigning one skips the per-element checks
    (``ROS_PYTHON_CHECK_FIELDS=1`` makes assigning 6 MB of ``bytes`` take ~0.5 s) and lets
    the C side memcpy it on publish.
    """
    if array.size == 0:
        return pyarray.array("B")
    if array.flags.c_contiguous and array.dtype.isnative:
        out = pyarray.array("B")
        out.frombytes(memoryview(array).cast("B"))
        return out
    # Strided or foreign-byte-order input: allocate, then let numpy copy (and swap) into it.
    out = pyarray.array("B", b"\0") * array.nbytes
    dst = np.frombuffer(out, dtype=array.dtype.newbyteorder("=")).reshape(array.shape)
    np.copyto(dst, array)
    return out


def _fill_image_fields(msg: Image, height: int, width: int, encoding: str, step: int) -> None:
    msg.height = height
    msg.width = width
    msg.encoding = encoding
    msg.is_bigendian = _NATIVE_BIGENDIAN
    msg.step = step


def numpy_to_image(
    array: np.ndarray,
    encoding: str = "bgr8",
    header: Header | None = None,
    frame_id: str = "",
    stamp: int | Time | None = None,
) -> Image:
    """sensor_msgs/Image holding a copy of ``array`` (like cv_bridge's ``cv2_to_imgmsg``).

    ``array`` must match ``encoding`` in dtype and shape (ValueError otherwise). Rows are
    packed (``step = width * bytes per pixel``) in native byte order. ``header`` is copied,
    then ``frame_id`` (if non-empty) and ``stamp`` (integer ns or Time, if given) override it.
    """
    info = _check_array(array, encoding)
    height, width = int(array.shape[0]), int(array.shape[1])
    msg = Image()
    msg.header = _make_header(header, frame_id, stamp)
    _fill_image_fields(msg, height, width, encoding, width * info.channels * info.dtype.itemsize)
    msg.data = _to_byte_array(array)
    return msg


def new_image(
    height: int,
    width: int,
    encoding: str = "bgr8",
    header: Header | None = None,
    frame_id: str = "",
    stamp: int | Time | None = None,
) -> tuple[Image, np.ndarray]:
    """A zero-filled Image and a writable array viewing its data.

    For producers that can render or decode straight into the message buffer (e.g. with a
    ``dst=`` argument), skipping the copy that :func:`numpy_to_image` makes.
    """
    info = encoding_info(encoding)
    if height < 0 or width < 0:
        raise ValueError(f"negative image size {height} x {width}")
    step = width * info.channels * info.dtype.itemsize
    msg = Image()
    msg.header = _make_header(header, frame_id, stamp)
    _fill_image_fields(msg, int(height), int(width), encoding, step)
    msg.data = pyarray.array("B", b"\0") * (step * height)
    return msg, image_to_numpy(msg)


def image_to_numpy(msg: Image, desired_encoding: str = "passthrough") -> np.ndarray:
    """Pixels of a sensor_msgs/Image (like cv_bridge's ``imgmsg_to_cv2``).

    With ``desired_encoding="passthrough"`` (or the message's own encoding) and native byte
    order, the result is a view over ``msg.data`` with no copy, strided over any row padding.
    Multi-byte data in the other byte order is swapped into a native copy. Any other
    ``desired_encoding`` goes through :func:`convert_encoding`.
    """
    info = encoding_info(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    itemsize = info.dtype.itemsize
    pixel_bytes = info.channels * itemsize
    row_bytes = width * pixel_bytes
    if step < row_bytes:
        raise ValueError(
            f"step {step} is less than width {width} x {pixel_bytes} bytes per pixel "
            f"({row_bytes}) for encoding {msg.encoding!r}"
        )
    data = msg.data
    if not isinstance(data, pyarray.array | bytes | bytearray | memoryview):
        # A plain list only appears if the message was built by hand without the setter.
        data = bytes(data)
    nbytes = memoryview(data).nbytes
    if nbytes < height * step:
        raise ValueError(
            f"image data has {nbytes} bytes, fewer than height {height} x step {step} "
            f"({height * step})"
        )
    wire_dtype = info.dtype
    if itemsize > 1:
        wire_dtype = info.dtype.newbyteorder(">" if msg.is_bigendian else "<")
    if info.channels == 1:
        shape: tuple[int, ...] = (height, width)
        strides: tuple[int, ...] = (step, itemsize)
    else:
        shape = (height, width, info.channels)
        strides = (step, pixel_bytes, itemsize)
    result = np.ndarray(shape, dtype=wire_dtype, buffer=data, strides=strides)
    if not wire_dtype.isnative:
        result = result.astype(info.dtype)
    if desired_encoding in ("passthrough", msg.encoding):
        return result
    return convert_encoding(result, msg.encoding, desired_encoding)


# ---------------------------------------------------------------------------------------------
# Encoding conversion


def _bit_depth(encoding: str) -> int:
    return ENCODINGS[encoding].dtype.itemsize * 8


def _convert_depth(array: np.ndarray, src: str, dst: str) -> np.ndarray:
    src_dtype, dst_dtype = ENCODINGS[src].dtype, ENCODINGS[dst].dtype
    if src_dtype == dst_dtype:
        return array
    # cv_bridge rescales between the 8- and 16-bit unsigned ranges; other pairs convert values
    # as they are (rounded and saturated, like cv::Mat::convertTo).
    if src_dtype == np.uint8 and dst_dtype == np.uint16:
        return array.astype(np.uint16) * np.uint16(257)
    if src_dtype == np.uint16 and dst_dtype == np.uint8:
        # round(x * 255 / 65535) == round(x / 257) == (x + 128) // 257 for integers.
        return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if dst_dtype.kind == "f":
        return array.astype(dst_dtype)
    limits = np.iinfo(dst_dtype)
    values = np.rint(array) if src_dtype.kind == "f" else array
    return np.clip(values, limits.min, limits.max).astype(dst_dtype)


def convert_encoding(array: np.ndarray, src_encoding: str, dst_encoding: str) -> np.ndarray:
    """``array`` in ``src_encoding`` converted to ``dst_encoding``.

    Follows cv_bridge: any of mono/rgb/bgr/rgba/bgra (8 or 16 bit), packed YUV 4:2:2 and Bayer
    convert to mono/rgb/bgr/rgba/bgra, with 8 <-> 16 bit scaling by 257. Generic encodings
    ("8UC3", "32FC1", ...) convert only to encodings with the same channel count (a change of
    dtype). "passthrough" or the same encoding returns ``array`` itself.
    """
    if dst_encoding in ("passthrough", src_encoding):
        encoding_info(src_encoding)
        return array
    src_info = _check_array(array, src_encoding)
    dst_info = encoding_info(dst_encoding)
    if src_info.channels == 1 and array.ndim == 3:
        array = array[:, :, 0]
    src_layout, dst_layout = _LAYOUT.get(src_encoding), _LAYOUT.get(dst_encoding)
    if src_layout is None or dst_layout is None:
        if src_layout is None and dst_layout is not None:
            raise ValueError(
                f"cannot convert {src_encoding!r} to {dst_encoding!r}: "
                f"{src_encoding!r} is a generic encoding with no colour layout"
            )
        if src_info.channels != dst_info.channels:
            raise ValueError(
                f"cannot convert {src_encoding!r} to {dst_encoding!r}: "
                f"{src_info.channels} vs {dst_info.channels} channels"
            )
        return _convert_depth(array, src_encoding, dst_encoding)
    if dst_layout not in _RGB_LAYOUTS:
        raise ValueError(
            f"cannot convert {src_encoding!r} to {dst_encoding!r}: only mono/rgb/bgr/rgba/bgra "
            "targets are supported"
        )
    # Convert colour at the source's depth first (YUV and Bayer decoding need it), then rescale.
    via = src_encoding
    if src_layout != dst_layout:
        if src_layout in ("UYVY", "YUYV") and array.shape[1] % 2:
            raise ValueError(f"{src_encoding!r} needs an even width, got {array.shape[1]}")
        array = cv2.cvtColor(array, _CONVERSION_CODES[(src_layout, dst_layout)])
        via = _with_depth(dst_layout, _bit_depth(src_encoding))
    return _convert_depth(array, via, dst_encoding)


def _with_depth(layout: str, depth: int) -> str:
    return {"GRAY": "mono"}.get(layout, layout.lower()) + str(depth)


# ---------------------------------------------------------------------------------------------
# Compressed images


def _parse_format(fmt: str) -> tuple[str, str, str]:
    """(original encoding, codec, encoding of the compressed pixels) from a format string.

    compressed_image_transport writes "<encoding>; <codec> compressed <target>", e.g.
    "rgb8; jpeg compressed bgr8", "mono8; jpeg compressed mono8" or "mono16; png compressed "
    (mono PNG keeps the original pixels and has no target). cv_bridge's Python
    cv2_to_compressed_imgmsg writes just "jpeg", "jpg" or "png". Missing parts are "".
    """
    if ";" not in fmt:
        return "", fmt.strip().lower(), ""
    original, rest = (part.strip() for part in fmt.split(";", 1))
    if "compressedDepth" in rest:
        raise ValueError(
            f"compressedDepth images are not supported (format {fmt!r}); "
            "use compressed_depth_image_transport"
        )
    codec, _, target = rest.partition("compressed")
    return original, codec.strip().lower(), target.strip()


def _matches(array: np.ndarray, encoding: str) -> bool:
    info = ENCODINGS.get(encoding)
    if info is None or array.dtype != info.dtype:
        return False
    channels = 1 if array.ndim == 2 else array.shape[2]
    return channels == info.channels


def _decoded_encoding(array: np.ndarray, original: str, target: str) -> str:
    # Trust the format string when it agrees with what was decoded, else infer from the pixels
    # (OpenCV decodes colour as BGR(A)).
    candidate = target or original
    if candidate and _matches(array, candidate):
        return candidate
    channels = 1 if array.ndim == 2 else array.shape[2]
    if array.dtype in (np.uint8, np.uint16) and channels in (1, 3, 4):
        return {1: "mono", 3: "bgr", 4: "bgra"}[channels] + str(array.dtype.itemsize * 8)
    for name, info in ENCODINGS.items():
        if name[0].isdigit() and info == (channels, array.dtype):
            return name
    raise ValueError(f"decoded image of dtype {array.dtype} x {channels} has no encoding")


def compressed_to_numpy(msg: CompressedImage, desired_encoding: str = "bgr8") -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG, PNG, or anything cv2.imdecode reads).

    The format may be compressed_image_transport's ("bgr8; jpeg compressed bgr8") or a bare
    codec name ("jpeg", "png"). ``desired_encoding="passthrough"`` returns the decoded pixels
    as OpenCV produced them (BGR/BGRA for colour).
    """
    original, _codec, target = _parse_format(msg.format)
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size == 0:
        raise ValueError("compressed image has no data")
    decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ValueError(f"could not decode compressed image (format {msg.format!r})")
    if desired_encoding == "passthrough":
        return decoded
    return convert_encoding(decoded, _decoded_encoding(decoded, original, target), desired_encoding)


def numpy_to_compressed(
    array: np.ndarray,
    format: str = "jpeg",
    encoding: str = "bgr8",
    quality: int = 95,
    png_level: int = 3,
    header: Header | None = None,
    frame_id: str = "",
    stamp: int | Time | None = None,
) -> CompressedImage:
    """Encode ``array`` (in ``encoding``) as a sensor_msgs/CompressedImage.

    Mirrors compressed_image_transport: colour is stored as BGR, JPEG as bgr8 or mono8, PNG
    at the source's 8/16-bit depth (mono and non-colour encodings unchanged). The format field
    is written the same way, e.g. "rgb8; jpeg compressed bgr8", so ROS subscribers restore
    the original encoding. ``quality`` is the JPEG quality (0-100, ROS default 95),
    ``png_level`` the PNG compression level (0-9, ROS default 3).
    """
    info = _check_array(array, encoding)
    codec = format.lower()
    if codec == "jpg":
        codec = "jpeg"
    layout = _LAYOUT.get(encoding)
    is_color = layout in _COLOR_LAYOUTS
    depth = info.dtype.itemsize * 8
    if codec == "jpeg":
        if not 0 <= quality <= 100:
            raise ValueError(f"JPEG quality must be in 0..100, got {quality}")
        if info.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"JPEG needs an 8 or 16-bit encoding, got {encoding!r}")
        target = "bgr8" if is_color else "mono8"
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        ext = ".jpg"
    elif codec == "png":
        if not 0 <= png_level <= 9:
            raise ValueError(f"PNG level must be in 0..9, got {png_level}")
        if info.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"PNG needs an 8 or 16-bit encoding, got {encoding!r}")
        has_alpha = layout in ("RGBA", "BGRA")
        # Non-colour images are stored as they are, and the target is left empty (ROS does so).
        target = f"bgr{'a' if has_alpha else ''}{depth}" if is_color else ""
        params = [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)]
        ext = ".png"
    else:
        raise ValueError(f"unsupported compressed format {format!r}; use 'jpeg' or 'png'")
    pixels = convert_encoding(array, encoding, target or encoding)
    ok, encoded = cv2.imencode(ext, pixels, params)
    if not ok:
        raise ValueError(f"cv2.imencode({ext!r}) failed for a {encoding!r} image")
    msg = CompressedImage()
    msg.header = _make_header(header, frame_id, stamp)
    msg.format = f"{encoding}; {codec} compressed {target}"
    msg.data = _to_byte_array(encoded)
    return msg
