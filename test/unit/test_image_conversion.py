"""Tests for edge_vision.ros.image_conversion (no rclpy needed)."""

from __future__ import annotations

import array
import sys

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from edge_vision.ros.image_conversion import (
    ENCODINGS,
    compressed_to_numpy,
    convert_encoding,
    encoding_info,
    image_to_numpy,
    new_image,
    ns_to_stamp,
    numpy_to_compressed,
    numpy_to_image,
    stamp_to_ns,
)

RNG = np.random.default_rng(1234)
NATIVE_BIGENDIAN = int(sys.byteorder == "big")


def random_image(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return RNG.standard_normal(shape).astype(dtype) * 1000
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


def shape_for(encoding: str, height: int, width: int) -> tuple[int, ...]:
    channels = ENCODINGS[encoding].channels
    return (height, width) if channels == 1 else (height, width, channels)


def smooth_bgr(height: int = 120, width: int = 160) -> np.ndarray:
    # Gradients with a different direction per channel: JPEG-friendly, and a channel swap
    # produces large errors.
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    b = 255 * x / (width - 1)
    g = 255 * y / (height - 1)
    r = 255 - 127 * (x + y) / (width + height - 2)
    return np.dstack([b, g, r]).round().astype(np.uint8)


def hand_built_image(
    pixels: np.ndarray, encoding: str, step: int, bigendian: bool = False
) -> Image:
    """An Image with rows padded to ``step`` bytes, padding filled with garbage."""
    height = pixels.shape[0]
    wire = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<"))
    rows = wire.reshape(height, -1).view(np.uint8).reshape(height, -1)
    padded = RNG.integers(0, 256, size=(height, step), dtype=np.uint8)
    padded[:, : rows.shape[1]] = rows
    msg = Image()
    msg.height = height
    msg.width = pixels.shape[1]
    msg.encoding = encoding
    msg.is_bigendian = int(bigendian)
    msg.step = step
    msg.data = array.array("B", padded.tobytes())
    return msg


def data_view(msg: Image | CompressedImage) -> np.ndarray:
    return np.frombuffer(msg.data, dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# Table


def test_table_matches_image_encodings_header() -> None:
    assert encoding_info("bgr8") == (3, np.uint8)
    assert encoding_info("mono16") == (1, np.uint16)
    assert encoding_info("yuyv") == (2, np.uint8)
    assert encoding_info("uyvy") == (2, np.uint8)
    assert encoding_info("yuv422") == (2, np.uint8)
    assert encoding_info("yuv422_yuy2") == (2, np.uint8)
    assert encoding_info("16UC1") == (1, np.uint16)
    assert encoding_info("32FC1") == (1, np.float32)
    assert encoding_info("8SC4") == (4, np.int8)
    assert encoding_info("64FC3") == (3, np.float64)


def test_unknown_encoding_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="unsupported image encoding 'nv12'"):
        encoding_info("nv12")


# ---------------------------------------------------------------------------------------------
# Raw round trips


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("size", [(479, 641), (7, 1), (1, 1), (2, 3)])
def test_round_trip_every_encoding(encoding: str, size: tuple[int, int]) -> None:
    info = ENCODINGS[encoding]
    pixels = random_image(shape_for(encoding, *size), info.dtype)
    msg = numpy_to_image(pixels, encoding)

    assert (msg.height, msg.width, msg.encoding) == (size[0], size[1], encoding)
    assert msg.step == size[1] * info.channels * info.dtype.itemsize
    assert msg.is_bigendian == NATIVE_BIGENDIAN
    assert len(msg.data) == msg.step * msg.height
    back = image_to_numpy(msg)
    assert back.dtype == info.dtype
    assert back.shape == pixels.shape
    np.testing.assert_array_equal(back, pixels)


def test_message_data_is_uint8_array_for_rclpy_fast_path() -> None:
    msg = numpy_to_image(np.zeros((4, 6, 3), np.uint8))
    # rclpy memcpys array('B') on publish; any other type is converted element by element.
    assert isinstance(msg.data, array.array)
    assert msg.data.typecode == "B"


def test_single_channel_accepts_trailing_unit_axis() -> None:
    pixels = random_image((5, 9, 1), np.uint8)
    back = image_to_numpy(numpy_to_image(pixels, "mono8"))
    assert back.shape == (5, 9)
    np.testing.assert_array_equal(back, pixels[:, :, 0])


def test_empty_image_round_trips() -> None:
    msg = numpy_to_image(np.zeros((0, 4, 3), np.uint8))
    assert (msg.height, msg.width, msg.step, len(msg.data)) == (0, 4, 12, 0)
    assert image_to_numpy(msg).shape == (0, 4, 3)


@pytest.mark.parametrize(
    "make_input",
    [
        lambda a: a[:, ::2],  # strided columns
        lambda a: np.asfortranarray(a),
        lambda a: a[::-1],  # negative strides
    ],
)
def test_non_contiguous_input_round_trips(make_input) -> None:
    base = random_image((31, 40, 3), np.uint8)
    pixels = make_input(base)
    assert not pixels.flags.c_contiguous
    back = image_to_numpy(numpy_to_image(pixels, "rgb8"))
    np.testing.assert_array_equal(back, pixels)


def test_non_native_byte_order_input_is_stored_native() -> None:
    values = np.arange(12, dtype=np.uint16).reshape(3, 4) * 4099
    foreign = values.astype(values.dtype.newbyteorder("S"))
    msg = numpy_to_image(foreign, "mono16")
    assert msg.is_bigendian == NATIVE_BIGENDIAN
    np.testing.assert_array_equal(image_to_numpy(msg), values)


def test_numpy_to_image_copies_input() -> None:
    pixels = random_image((8, 8, 3), np.uint8)
    msg = numpy_to_image(pixels)
    expected = pixels.copy()
    pixels[:] = 0
    np.testing.assert_array_equal(image_to_numpy(msg), expected)


# ---------------------------------------------------------------------------------------------
# Zero copy, padding, byte order


@pytest.mark.parametrize("encoding", ["bgr8", "mono8", "mono16", "32FC1", "yuyv"])
def test_packed_rows_give_zero_copy_view(encoding: str) -> None:
    info = ENCODINGS[encoding]
    msg = numpy_to_image(random_image(shape_for(encoding, 6, 10), info.dtype), encoding)
    view = image_to_numpy(msg)
    assert np.shares_memory(view, data_view(msg))
    # The view is live: writes show up in the message (documented behaviour).
    view[0, 0] = 0
    assert data_view(msg)[: info.dtype.itemsize * info.channels].tolist() == [0] * (
        info.dtype.itemsize * info.channels
    )


@pytest.mark.parametrize(
    ("encoding", "size", "pad"),
    [
        ("bgr8", (5, 641), 13),
        ("rgba8", (4, 3), 4),
        ("mono8", (9, 1), 63),
        ("mono16", (6, 7), 3),  # odd step: 16-bit rows start unaligned
        ("32FC1", (3, 5), 12),
        ("yuyv", (4, 6), 2),
        ("16UC3", (2, 5), 2),
    ],
)
def test_padded_rows_are_skipped_without_copy(
    encoding: str, size: tuple[int, int], pad: int
) -> None:
    info = ENCODINGS[encoding]
    pixels = random_image(shape_for(encoding, *size), info.dtype)
    step = size[1] * info.channels * info.dtype.itemsize + pad
    msg = hand_built_image(pixels, encoding, step)

    back = image_to_numpy(msg)
    np.testing.assert_array_equal(back, pixels)
    assert np.shares_memory(back, data_view(msg))


def test_padded_rows_convert_correctly() -> None:
    pixels = smooth_bgr(9, 11)
    msg = hand_built_image(pixels, "bgr8", 11 * 3 + 5)
    np.testing.assert_array_equal(image_to_numpy(msg, "rgb8"), pixels[:, :, ::-1])


def test_extra_trailing_data_is_ignored() -> None:
    pixels = random_image((3, 4), np.uint8)
    msg = numpy_to_image(pixels, "mono8")
    msg.data.extend([255] * 7)
    np.testing.assert_array_equal(image_to_numpy(msg), pixels)


@pytest.mark.parametrize("pad", [0, 6])
def test_big_endian_mono16_is_swapped_to_native(pad: int) -> None:
    pixels = np.array([[0x0102, 0xFF00, 7], [0x8001, 0, 0xFFFF]], dtype=np.uint16)
    msg = hand_built_image(pixels, "mono16", 3 * 2 + pad, bigendian=True)
    # Check the test's own construction: the first two bytes on the wire are 0x01 0x02.
    assert list(msg.data[:2]) == [0x01, 0x02]

    back = image_to_numpy(msg)
    assert back.dtype == np.dtype(np.uint16)
    assert back.dtype.isnative
    np.testing.assert_array_equal(back, pixels)


def test_little_endian_mono16_is_read_as_little_endian() -> None:
    pixels = np.array([[0x0102, 0xABCD]], dtype=np.uint16)
    msg = hand_built_image(pixels, "mono16", 4, bigendian=False)
    assert list(msg.data[:2]) == [0x02, 0x01]
    np.testing.assert_array_equal(image_to_numpy(msg), pixels)


def test_big_endian_float_and_conversion() -> None:
    pixels = np.array([[1.5, -2.25, 1e6]], dtype=np.float32)
    msg = hand_built_image(pixels, "32FC1", 12, bigendian=True)
    np.testing.assert_array_equal(image_to_numpy(msg), pixels)
    big16 = hand_built_image(np.array([[0, 65535, 257 * 10]], np.uint16), "mono16", 6, True)
    np.testing.assert_array_equal(image_to_numpy(big16, "mono8"), [[0, 255, 10]])


# ---------------------------------------------------------------------------------------------
# Errors


def test_image_to_numpy_rejects_unknown_encoding() -> None:
    msg = numpy_to_image(np.zeros((2, 2), np.uint8), "mono8")
    msg.encoding = "bogus"
    with pytest.raises(ValueError, match="unsupported image encoding 'bogus'"):
        image_to_numpy(msg)


def test_image_to_numpy_rejects_short_data() -> None:
    msg = numpy_to_image(np.zeros((4, 5, 3), np.uint8))
    del msg.data[-1]
    with pytest.raises(ValueError, match=r"59 bytes, fewer than height 4 x step 15 \(60\)"):
        image_to_numpy(msg)


def test_image_to_numpy_rejects_step_below_row_size() -> None:
    msg = numpy_to_image(np.zeros((4, 5), np.uint16), "mono16")
    msg.step = 9
    with pytest.raises(ValueError, match=r"step 9 is less than width 5 x 2 .*\(10\)"):
        image_to_numpy(msg)


@pytest.mark.parametrize(
    ("pixels", "encoding", "message"),
    [
        (np.zeros((4, 4, 3), np.uint16), "bgr8", "needs dtype uint8, got array of dtype uint16"),
        (np.zeros((4, 4), np.uint8), "mono16", "needs dtype uint16"),
        (np.zeros((4, 4), np.float64), "32FC1", "needs dtype float32"),
        (np.zeros((4, 4), np.uint8), "bgr8", r"needs shape H x W x 3, got \(4, 4\)"),
        (np.zeros((4, 4, 4), np.uint8), "bgr8", r"needs shape H x W x 3, got \(4, 4, 4\)"),
        (np.zeros((4, 4, 3), np.uint8), "mono8", r"needs shape H x W \(or H x W x 1\)"),
        (np.zeros((4, 4, 3), np.uint8), "yuyv", r"needs shape H x W x 2"),
        (np.zeros(16, np.uint8), "mono8", r"got \(16,\)"),
        (np.zeros((4, 4, 3), np.uint8), "bgr9", "unsupported image encoding 'bgr9'"),
    ],
)
def test_numpy_to_image_rejects_mismatched_arrays(
    pixels: np.ndarray, encoding: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        numpy_to_image(pixels, encoding)


def test_numpy_to_image_rejects_non_arrays() -> None:
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        numpy_to_image([[1, 2], [3, 4]], "mono8")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Headers and stamps


def test_stamp_in_nanoseconds_fills_header() -> None:
    msg = numpy_to_image(np.zeros((2, 2), np.uint8), "mono8", frame_id="cam0", stamp=12_000_000_345)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 345)
    assert msg.header.frame_id == "cam0"


def test_header_is_copied_and_overrides_do_not_mutate_it() -> None:
    header = Header(frame_id="base", stamp=Time(sec=5, nanosec=6))
    msg = numpy_to_image(np.zeros((2, 2), np.uint8), "mono8", header=header)
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == ("base", 5, 6)

    msg = numpy_to_image(
        np.zeros((2, 2), np.uint8), "mono8", header=header, frame_id="other", stamp=Time(sec=9)
    )
    assert (msg.header.frame_id, msg.header.stamp.sec) == ("other", 9)
    assert (header.frame_id, header.stamp.sec) == ("base", 5)


@pytest.mark.parametrize("ns", [0, 1, 999_999_999, 1_700_000_000_123_456_789, -1, -(10**9)])
def test_ns_stamp_round_trip(ns: int) -> None:
    stamp = ns_to_stamp(ns)
    assert 0 <= stamp.nanosec < 10**9
    assert stamp_to_ns(stamp) == ns


def test_ns_to_stamp_rejects_out_of_range_and_bool() -> None:
    with pytest.raises(ValueError, match="int32"):
        ns_to_stamp(2**31 * 10**9)
    with pytest.raises(TypeError):
        numpy_to_image(np.zeros((1, 1), np.uint8), "mono8", stamp=True)


def test_numpy_integer_stamp_is_accepted() -> None:
    msg = numpy_to_image(np.zeros((1, 1), np.uint8), "mono8", stamp=np.int64(3_000_000_001))
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (3, 1)


# ---------------------------------------------------------------------------------------------
# Encoding conversion

CHANNEL_ORDER = {"bgr8": "BGR", "rgb8": "RGB", "bgra8": "BGRA", "rgba8": "RGBA"}


def reference_convert(bgr: np.ndarray, dst: str) -> np.ndarray:
    """Independent numpy reference from a bgr8 image with alpha 255."""
    if dst == "mono8":
        b, g, r = (bgr[:, :, i].astype(np.float64) for i in range(3))
        return np.rint(0.299 * r + 0.587 * g + 0.114 * b).astype(np.uint8)
    planes = {"B": bgr[:, :, 0], "G": bgr[:, :, 1], "R": bgr[:, :, 2]}
    planes["A"] = np.full(bgr.shape[:2], 255, np.uint8)
    return np.dstack([planes[c] for c in CHANNEL_ORDER[dst]])


@pytest.mark.parametrize("src", ["bgr8", "rgb8", "bgra8", "rgba8"])
@pytest.mark.parametrize("dst", ["bgr8", "rgb8", "bgra8", "rgba8", "mono8"])
def test_colour_conversions_match_reference(src: str, dst: str) -> None:
    bgr = random_image((13, 17, 3), np.uint8)
    msg = numpy_to_image(reference_convert(bgr, src), src)
    out = image_to_numpy(msg, desired_encoding=dst)
    expected = reference_convert(bgr, dst)
    assert out.shape == expected.shape
    assert out.dtype == np.uint8
    # OpenCV's fixed-point grey weights may round differently by one.
    tolerance = 1 if dst == "mono8" else 0
    assert np.abs(out.astype(int) - expected).max() <= tolerance


@pytest.mark.parametrize("dst", ["bgr8", "rgb8", "bgra8", "rgba8"])
def test_mono8_expands_to_colour(dst: str) -> None:
    grey = random_image((6, 5), np.uint8)
    out = image_to_numpy(numpy_to_image(grey, "mono8"), dst)
    np.testing.assert_array_equal(out, reference_convert(np.dstack([grey] * 3), dst))


def test_same_encoding_and_passthrough_return_the_view() -> None:
    msg = numpy_to_image(random_image((4, 4, 3), np.uint8))
    for desired in ("passthrough", "bgr8"):
        assert np.shares_memory(image_to_numpy(msg, desired), data_view(msg))


def test_16_bit_depth_scaling_matches_cv_bridge() -> None:
    values = np.array([[0, 128, 129, 257, 385, 386, 65535]], np.uint16)
    # cv_bridge scales by 255/65535 and rounds: x -> round(x / 257).
    expected8 = np.rint(values / 257).astype(np.uint8)
    np.testing.assert_array_equal(convert_encoding(values, "mono16", "mono8"), expected8)
    np.testing.assert_array_equal(
        convert_encoding(expected8, "mono8", "mono16"), expected8.astype(np.uint16) * 257
    )
    bgr16 = np.dstack([values, values // 2, values // 3]).astype(np.uint16)
    rgb8 = convert_encoding(bgr16, "bgr16", "rgb8")
    np.testing.assert_array_equal(rgb8[:, :, 2], expected8)
    np.testing.assert_array_equal(rgb8[:, :, 0], np.rint((values // 3) / 257).astype(np.uint8))


def test_mono16_to_bgr8() -> None:
    values = np.array([[0, 257 * 100, 65535]], np.uint16)
    out = image_to_numpy(numpy_to_image(values, "mono16"), "bgr8")
    np.testing.assert_array_equal(out, np.dstack([[[0, 100, 255]]] * 3))


def test_generic_encodings_convert_only_between_same_channel_counts() -> None:
    depth_mm = np.array([[0, 1500, 65535]], np.uint16)
    out = convert_encoding(depth_mm, "16UC1", "32FC1")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, depth_mm)  # values kept, not rescaled
    floats = np.array([[-3.0, 1.4, 1.6, 300.0]], np.float32)
    np.testing.assert_array_equal(convert_encoding(floats, "32FC1", "8UC1"), [[0, 1, 2, 255]])
    bgr = random_image((2, 2, 3), np.uint8)
    np.testing.assert_array_equal(convert_encoding(bgr, "bgr8", "8UC3"), bgr)
    with pytest.raises(ValueError, match="generic encoding with no colour layout"):
        convert_encoding(bgr, "8UC3", "bgr8")
    with pytest.raises(ValueError, match="3 vs 1 channels"):
        convert_encoding(bgr, "bgr8", "8UC1")


def test_conversion_to_yuv_is_refused() -> None:
    with pytest.raises(ValueError, match="only mono/rgb/bgr/rgba/bgra targets"):
        convert_encoding(np.zeros((2, 2, 3), np.uint8), "bgr8", "yuyv")


# -- YUV 4:2:2 ---------------------------------------------------------------------------------


def bgr_to_yuv601(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT.601 limited range ("video levels"), what OpenCV's YUV 4:2:2 decoders expect."""
    b, g, r = (bgr[:, :, i].astype(np.float64) for i in range(3))
    y = 16 + 0.256788 * r + 0.504129 * g + 0.097906 * b
    u = 128 - 0.148223 * r - 0.290993 * g + 0.439216 * b
    v = 128 + 0.439216 * r - 0.367788 * g - 0.071427 * b
    return tuple(np.clip(np.rint(c), 0, 255).astype(np.uint8) for c in (y, u, v))


def pack_422(bgr: np.ndarray, order: str) -> np.ndarray:
    """H x W x 2 packed 4:2:2 in ``order`` ("YUYV" or "UYVY"), chroma from the even pixel."""
    y, u, v = bgr_to_yuv601(bgr)
    height, width = y.shape
    out = np.empty((height, width // 2, 4), np.uint8)
    planes = {"Y0": y[:, 0::2], "Y1": y[:, 1::2], "U": u[:, 0::2], "V": v[:, 0::2]}
    names = ["Y0", "U", "Y1", "V"] if order == "YUYV" else ["U", "Y0", "V", "Y1"]
    for i, name in enumerate(names):
        out[:, :, i] = planes[name]
    return out.reshape(height, width, 2)


def paired_bgr(height: int = 24, width: int = 32) -> np.ndarray:
    # Horizontal pixel pairs share a colour, so 4:2:2 subsampling loses nothing; avoid extremes
    # that limited range would clip.
    half = RNG.integers(20, 236, size=(height, width // 2, 3), dtype=np.uint8)
    return np.repeat(half, 2, axis=1)


@pytest.mark.parametrize(
    ("encoding", "order"),
    [("yuyv", "YUYV"), ("yuv422_yuy2", "YUYV"), ("uyvy", "UYVY"), ("yuv422", "UYVY")],
)
@pytest.mark.parametrize("dst", ["bgr8", "rgb8", "bgra8"])
def test_yuv422_to_colour(encoding: str, order: str, dst: str) -> None:
    bgr = paired_bgr()
    msg = numpy_to_image(pack_422(bgr, order), encoding)
    out = image_to_numpy(msg, dst)
    expected = reference_convert(bgr, dst)
    assert out.shape == expected.shape
    assert np.abs(out.astype(int) - expected).max() <= 3


@pytest.mark.parametrize(("encoding", "wrong_order"), [("yuyv", "UYVY"), ("yuv422", "YUYV")])
def test_yuv422_byte_order_matters(encoding: str, wrong_order: str) -> None:
    # Guards the easy mistake: ROS "yuv422" is UYVY, not YUYV.
    bgr = paired_bgr()
    out = image_to_numpy(numpy_to_image(pack_422(bgr, wrong_order), encoding), "bgr8")
    assert np.abs(out.astype(int) - bgr).mean() > 20


def test_yuv422_to_mono8_is_luma() -> None:
    bgr = paired_bgr()
    y, _, _ = bgr_to_yuv601(bgr)
    out = image_to_numpy(numpy_to_image(pack_422(bgr, "UYVY"), "uyvy"), "mono8")
    np.testing.assert_array_equal(out, y)


@pytest.mark.skipif(not hasattr(cv2, "COLOR_BGR2YUV_YUYV"), reason="OpenCV without YUYV encode")
def test_yuyv_agrees_with_opencv_encoder() -> None:
    bgr = smooth_bgr(32, 48)
    packed = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_YUYV)
    out = image_to_numpy(numpy_to_image(packed, "yuyv"), "bgr8")
    assert np.abs(out.astype(int) - bgr).mean() < 3
    # And the test's own packer agrees with OpenCV's, so the references above are sound.
    paired = paired_bgr()
    ours = pack_422(paired, "YUYV").astype(int)
    assert np.abs(ours - cv2.cvtColor(paired, cv2.COLOR_BGR2YUV_YUYV)).max() <= 1


def test_yuv422_odd_width_conversion_is_refused() -> None:
    msg = numpy_to_image(np.zeros((2, 3, 2), np.uint8), "yuyv")
    assert image_to_numpy(msg).shape == (2, 3, 2)
    with pytest.raises(ValueError, match="even width"):
        image_to_numpy(msg, "bgr8")


# -- Bayer -------------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("depth", [8, 16])
def test_bayer_uniform_colour_demosaics_to_that_colour(pattern: str, depth: int) -> None:
    colour = {"R": 200, "G": 100, "B": 40}
    dtype = np.uint8 if depth == 8 else np.uint16
    scale = 1 if depth == 8 else 257
    mosaic = np.zeros((8, 10), dtype)
    for i, letter in enumerate(pattern.upper()):
        mosaic[i // 2 :: 2, i % 2 :: 2] = colour[letter] * scale
    out = image_to_numpy(numpy_to_image(mosaic, f"bayer_{pattern}{depth}"), "bgr8")
    np.testing.assert_array_equal(out[2:-2, 2:-2], np.broadcast_to([40, 100, 200], (4, 6, 3)))


# ---------------------------------------------------------------------------------------------
# new_image


def test_new_image_gives_writable_view_into_message() -> None:
    msg, view = new_image(4, 6, "rgb8", frame_id="f", stamp=10)
    assert view.shape == (4, 6, 3)
    assert (msg.step, len(msg.data), msg.header.frame_id, msg.header.stamp.nanosec) == (
        18,
        72,
        "f",
        10,
    )
    view[:] = 7
    assert set(msg.data) == {7}


# ---------------------------------------------------------------------------------------------
# Compressed


def test_jpeg_round_trip_bgr8_is_close_and_format_matches_image_transport() -> None:
    bgr = smooth_bgr()
    msg = numpy_to_compressed(bgr, "jpeg", "bgr8", quality=90, frame_id="cam", stamp=5)
    assert msg.format == "bgr8; jpeg compressed bgr8"
    assert bytes(msg.data[:2]) == b"\xff\xd8"  # JPEG SOI marker
    assert (msg.header.frame_id, msg.header.stamp.nanosec) == ("cam", 5)
    out = compressed_to_numpy(msg)
    assert out.shape == bgr.shape
    assert np.abs(out.astype(int) - bgr).mean() < 3


def test_jpeg_from_rgb8_is_stored_as_bgr_and_restored() -> None:
    rgb = smooth_bgr()[:, :, ::-1]
    msg = numpy_to_compressed(rgb, "jpg", "rgb8")
    assert msg.format == "rgb8; jpeg compressed bgr8"
    assert np.abs(compressed_to_numpy(msg, "rgb8").astype(int) - rgb).mean() < 3
    # Decoded as bgr8 the channels are swapped back.
    assert np.abs(compressed_to_numpy(msg, "bgr8").astype(int) - rgb[:, :, ::-1]).mean() < 3


def test_jpeg_mono8() -> None:
    grey = smooth_bgr()[:, :, 1]
    msg = numpy_to_compressed(grey, "jpeg", "mono8")
    assert msg.format == "mono8; jpeg compressed mono8"
    assert np.abs(compressed_to_numpy(msg, "mono8").astype(int) - grey).mean() < 3
    bgr = compressed_to_numpy(msg)
    assert bgr.shape == (*grey.shape, 3)


def test_jpeg_quality_changes_size() -> None:
    bgr = random_image((64, 64, 3), np.uint8)
    small = numpy_to_compressed(bgr, quality=10)
    large = numpy_to_compressed(bgr, quality=100)
    assert len(small.data) < len(large.data)


@pytest.mark.parametrize(
    ("encoding", "fmt_target", "desired"),
    [
        ("bgr8", "bgr8", "bgr8"),
        ("rgb8", "bgr8", "rgb8"),
        ("bgra8", "bgra8", "bgra8"),
        ("rgba8", "bgra8", "rgba8"),
        ("mono8", "", "mono8"),
        ("mono16", "", "mono16"),
        ("bgr16", "bgr16", "bgr16"),
        ("16UC1", "", "passthrough"),
    ],
)
def test_png_round_trip_is_exact(encoding: str, fmt_target: str, desired: str) -> None:
    info = ENCODINGS[encoding]
    pixels = random_image(shape_for(encoding, 37, 41), info.dtype)
    msg = numpy_to_compressed(pixels, "png", encoding, png_level=1)
    assert msg.format == f"{encoding}; png compressed {fmt_target}"
    assert bytes(msg.data[:8]) == b"\x89PNG\r\n\x1a\n"
    out = compressed_to_numpy(msg, desired)
    assert out.dtype == info.dtype
    np.testing.assert_array_equal(out, pixels)


@pytest.mark.parametrize("fmt", ["png", "PNG", "bgr8; png compressed bgr8", ""])
def test_compressed_reading_accepts_bare_and_transport_formats(fmt: str) -> None:
    bgr = random_image((10, 12, 3), np.uint8)
    ok, encoded = cv2.imencode(".png", bgr)
    assert ok
    msg = CompressedImage(format=fmt)
    msg.data = array.array("B", encoded.tobytes())
    np.testing.assert_array_equal(compressed_to_numpy(msg), bgr)
    np.testing.assert_array_equal(compressed_to_numpy(msg, "rgb8"), bgr[:, :, ::-1])
    np.testing.assert_array_equal(compressed_to_numpy(msg, "passthrough"), bgr)


def test_compressed_errors() -> None:
    empty = CompressedImage(format="jpeg")
    with pytest.raises(ValueError, match="no data"):
        compressed_to_numpy(empty)
    garbage = CompressedImage(format="jpeg")
    garbage.data = array.array("B", b"not an image at all")
    with pytest.raises(ValueError, match="could not decode"):
        compressed_to_numpy(garbage)
    depth = CompressedImage(format="16UC1; compressedDepth png")
    depth.data = array.array("B", b"\0" * 20)
    with pytest.raises(ValueError, match="compressedDepth"):
        compressed_to_numpy(depth)
    bgr = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="unsupported compressed format 'bmp'"):
        numpy_to_compressed(bgr, "bmp")
    with pytest.raises(ValueError, match=r"quality must be in 0\.\.100"):
        numpy_to_compressed(bgr, quality=101)
    with pytest.raises(ValueError, match="needs dtype uint8"):
        numpy_to_compressed(bgr.astype(np.float32))
    with pytest.raises(ValueError, match="JPEG needs an 8 or 16-bit encoding"):
        numpy_to_compressed(np.zeros((4, 4), np.float32), "jpeg", "32FC1")
