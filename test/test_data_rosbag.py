"""rosbag2 RGB-D reader on real bags (sqlite3 and mcap) written with rosbags' Writer and typestore CDR."""

import struct

import cv2
import numpy as np
import pytest
import torch
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from dpt_perception.training.data import CorruptSampleError, RosbagRGBDDataset
from dpt_perception.training.data.ros_image import header_stamp_ns
from dpt_perception.training.data.rosbag_rgbd import pair_by_stamp

TS = get_typestore(Stores.ROS2_KILTED)
Image = TS.types["sensor_msgs/msg/Image"]
CompressedImage = TS.types["sensor_msgs/msg/CompressedImage"]
CameraInfo = TS.types["sensor_msgs/msg/CameraInfo"]
Header = TS.types["std_msgs/msg/Header"]
Time = TS.types["builtin_interfaces/msg/Time"]
RegionOfInterest = TS.types["sensor_msgs/msg/RegionOfInterest"]
H, W = 6, 8
T0 = 1_700_000_000 * 10**9
RGB_TOPIC, DEPTH_TOPIC, INFO_TOPIC = (
    "/cam/color/image_raw",
    "/cam/aligned_depth/image_raw",
    "/cam/color/camera_info",
)
K = [500.0, 0, 3.5, 0, 510.0, 2.5, 0, 0, 1]


def header(stamp_ns):
    return Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id="cam")


def rgb_frame(k):
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = 10 * k
    img[..., 1] = np.arange(W, dtype=np.uint8)[None, :] * 3
    img[..., 2] = np.arange(H, dtype=np.uint8)[:, None] * 5
    return img


def depth_mm(k):
    d = np.full((H, W), 1000 + 10 * k, np.uint16)
    d[0, :2] = 0  # invalid
    return d


def image_msg(stamp, encoding, array, step=None, bigendian=False):
    h, w = array.shape[:2]
    row = array.reshape(h, -1).view(np.uint8)
    step = step or row.shape[1]
    data = np.zeros((h, step), np.uint8)
    data[:, : row.shape[1]] = row
    return Image(
        header=header(stamp),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=step,
        data=data.ravel(),
    )


def write_bag(path, storage, messages):
    """messages: list of (topic, msgtype, log_time_ns, msg)."""
    with Writer(path, version=9, storage_plugin=storage) as writer:
        conns = {}
        for topic, msgtype, log_ns, msg in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=TS)
            writer.write(conns[topic], log_ns, TS.serialize_cdr(msg, msgtype))


def standard_messages():
    """RGB at 10 Hz; depth 5 ms later for frames 0..4, 60 ms late for frame 5 (no pair), and an
    extra depth 15 ms after frame 2 (not the nearest: must be ignored). Log times trail stamps."""
    msgs = []
    for k in range(6):
        stamp = T0 + k * 100_000_000
        msgs.append(
            (RGB_TOPIC, "sensor_msgs/msg/Image", stamp + 30_000_000, image_msg(stamp, "rgb8", rgb_frame(k)))
        )
        d_stamp = stamp + (5_000_000 if k < 5 else 60_000_000)
        msgs.append(
            (
                DEPTH_TOPIC,
                "sensor_msgs/msg/Image",
                d_stamp + 31_000_000,
                image_msg(d_stamp, "16UC1", depth_mm(k)),
            )
        )
    extra = T0 + 2 * 100_000_000 + 15_000_000
    msgs.append(
        (DEPTH_TOPIC, "sensor_msgs/msg/Image", extra + 31_000_000, image_msg(extra, "16UC1", depth_mm(99)))
    )
    info = CameraInfo(
        header=header(T0),
        height=H,
        width=W,
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=np.array(K),
        r=np.eye(3).ravel(),
        p=np.zeros(12),
        binning_x=0,
        binning_y=0,
        roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )
    msgs.append((INFO_TOPIC, "sensor_msgs/msg/CameraInfo", T0, info))
    return sorted(msgs, key=lambda m: m[2])


@pytest.mark.parametrize("storage", [StoragePlugin.SQLITE3, StoragePlugin.MCAP], ids=["sqlite3", "mcap"])
def test_pairs_by_header_stamp_with_values_units_and_intrinsics(tmp_path, storage):
    bag = tmp_path / "bag"
    write_bag(bag, storage, standard_messages())
    ds = RosbagRGBDDataset(
        bag, rgb_topic=RGB_TOPIC, depth_topic=DEPTH_TOPIC, camera_info_topic=INFO_TOPIC, max_time_diff=0.02
    )
    assert (ds.num_rgb, ds.num_depth) == (6, 7)
    assert len(ds) == 5
    for k in range(5):
        s = ds[k]
        np.testing.assert_array_equal(s["image"], rgb_frame(k))
        expected = depth_mm(k).astype(np.float32) / 1000.0
        np.testing.assert_allclose(s["depth"], expected)
        assert s["depth"].dtype == np.float32 and s["depth_valid"].sum() == H * W - 2
        assert not s["depth_valid"][0, :2].any()
        np.testing.assert_allclose(s["K"], np.reshape(K, (3, 3)))
        assert s["has_depth"] and not s["has_labels"]
    assert len(RosbagRGBDDataset(bag, rgb_topic=RGB_TOPIC, depth_topic=DEPTH_TOPIC, max_time_diff=0.1)) == 6
    assert (
        len(RosbagRGBDDataset(bag, rgb_topic=RGB_TOPIC, depth_topic=DEPTH_TOPIC, stride=2, max_pairs=2)) == 2
    )


def test_colour_and_depth_encodings(tmp_path):
    rgb = rgb_frame(3)
    cases = [
        ("bgr8", rgb[..., ::-1].copy(), W * 3 + 4),  # padded rows
        ("rgba8", np.dstack([rgb, np.full((H, W), 7, np.uint8)]), None),
        ("bgra8", np.dstack([rgb[..., ::-1], np.full((H, W), 7, np.uint8)]), None),
        ("mono8", rgb[..., 2].copy(), None),
    ]
    metres = np.full((H, W), 2.25, np.float32)
    metres[1, 1] = np.nan
    big_mm = depth_mm(1).astype(">u2")
    depth_cases = [("32FC1", metres, False), ("16UC1", big_mm, True)]
    msgs = []
    for i, (enc, arr, step) in enumerate(cases):
        stamp = T0 + i * 10**9
        msgs.append((RGB_TOPIC, "sensor_msgs/msg/Image", stamp, image_msg(stamp, enc, arr, step=step)))
        denc, darr, big = depth_cases[i % 2]
        msgs.append(
            (DEPTH_TOPIC, "sensor_msgs/msg/Image", stamp + 1, image_msg(stamp, denc, darr, bigendian=big))
        )
    write_bag(tmp_path / "bag", StoragePlugin.SQLITE3, msgs)
    ds = RosbagRGBDDataset(tmp_path / "bag", rgb_topic=RGB_TOPIC, depth_topic=DEPTH_TOPIC)
    assert len(ds) == 4
    for i in range(3):
        np.testing.assert_array_equal(ds[i]["image"], rgb)
    np.testing.assert_array_equal(ds[3]["image"], np.repeat(rgb[..., 2:3], 3, axis=2))
    s0, s1 = ds[0], ds[1]
    assert not s0["depth_valid"][1, 1] and s0["depth"][1, 1] == 0.0 and s0["depth"][0, 0] == 2.25
    np.testing.assert_allclose(s1["depth"], depth_mm(1).astype(np.float32) / 1000.0)


def test_compressed_colour_and_compressed_depth(tmp_path):
    rgb = rgb_frame(2)
    png = cv2.imencode(".png", rgb[..., ::-1])[1]
    mm_png = cv2.imencode(".png", depth_mm(2))[1]
    inv = np.full((H, W), 500, np.uint16)  # depth = A / (v - B) = 1000 / 500 = 2 m
    inv[2, 3] = 0  # invalid
    inv_png = cv2.imencode(".png", inv)[1]
    msgs = []
    for i, (fmt, payload) in enumerate(
        [
            ("16UC1; compressedDepth png", struct.pack("<iff", 0, 0.0, 0.0) + mm_png.tobytes()),
            ("32FC1; compressedDepth png", struct.pack("<iff", 0, 1000.0, 0.0) + inv_png.tobytes()),
            ("16UC1; png", mm_png.tobytes()),
        ]
    ):
        stamp = T0 + i * 10**9
        cimg = CompressedImage(header=header(stamp), format="rgb8; png compressed bgr8", data=png.ravel())
        dimg = CompressedImage(header=header(stamp), format=fmt, data=np.frombuffer(payload, np.uint8))
        msgs.append((RGB_TOPIC, "sensor_msgs/msg/CompressedImage", stamp, cimg))
        msgs.append((DEPTH_TOPIC, "sensor_msgs/msg/CompressedImage", stamp, dimg))
    write_bag(tmp_path / "bag", StoragePlugin.MCAP, msgs)
    ds = RosbagRGBDDataset(tmp_path / "bag", rgb_topic=RGB_TOPIC, depth_topic=DEPTH_TOPIC)
    np.testing.assert_array_equal(ds[0]["image"], rgb)
    np.testing.assert_allclose(ds[0]["depth"], depth_mm(2) / 1000.0, rtol=1e-6)
    d1 = ds[1]
    assert not d1["depth_valid"][2, 3] and d1["depth_valid"].sum() == H * W - 1
    np.testing.assert_allclose(d1["depth"][d1["depth_valid"]], 2.0)
    np.testing.assert_allclose(ds[2]["depth"], depth_mm(2) / 1000.0, rtol=1e-6)


def test_unaligned_depth_is_corrupt_and_missing_topic_is_explained(tmp_path):
    msgs = [
        (RGB_TOPIC, "sensor_msgs/msg/Image", T0, image_msg(T0, "rgb8", rgb_frame(0))),
        (DEPTH_TOPIC, "sensor_msgs/msg/Image", T0, image_msg(T0, "16UC1", np.ones((H - 2, W), np.uint16))),
    ]
    write_bag(tmp_path / "bag", StoragePlugin.SQLITE3, msgs)
    ds = RosbagRGBDDataset(tmp_path / "bag", rgb_topic=RGB_TOPIC, depth_topic=DEPTH_TOPIC)
    with pytest.raises(CorruptSampleError, match="registered"):
        ds[0]
    with pytest.raises(ValueError, match="topics:"):
        RosbagRGBDDataset(tmp_path / "bag", rgb_topic="/nope", depth_topic=DEPTH_TOPIC)


def test_dataloader_workers_open_their_own_readers(tmp_path):
    write_bag(tmp_path / "bag", StoragePlugin.MCAP, standard_messages())
    ds = RosbagRGBDDataset(tmp_path / "bag", rgb_topic=RGB_TOPIC, depth_topic=DEPTH_TOPIC)
    ds[0]  # the parent opens a reader first: workers must not reuse it
    loader = torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=2, collate_fn=lambda s: s["image"][0, 0, 0]
    )
    assert sorted(int(v) for v in loader) == [0, 10, 20, 30, 40]


def test_pairing_is_nearest_and_one_to_one():
    rgb = [0, 100, 200, 300]
    depth = [101, 5, 190, 260, 199]
    assert pair_by_stamp(rgb, depth, 20) == [(0, 1), (1, 0), (2, 4)]
    assert pair_by_stamp([0, 10], [6], 20) == [(1, 0)]  # depth 6 is nearer frame 10 than frame 0


def test_header_stamp_is_read_from_cdr_in_either_byte_order():
    msg = image_msg(T0 + 123, "mono8", np.zeros((1, 1), np.uint8))
    raw = TS.serialize_cdr(msg, "sensor_msgs/msg/Image")
    assert header_stamp_ns(raw) == T0 + 123
    big = TS.serialize_cdr(msg, "sensor_msgs/msg/Image", little_endian=False)
    assert big[1] == 0 and header_stamp_ns(big) == T0 + 123


def test_undecodable_message_is_a_corrupt_sample(tmp_path):
    bag = tmp_path / "bag"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        c_rgb = writer.add_connection(RGB_TOPIC, "sensor_msgs/msg/Image", typestore=TS)
        c_depth = writer.add_connection(DEPTH_TOPIC, "sensor_msgs/msg/Image", typestore=TS)
        writer.write(
            c_rgb, T0, TS.serialize_cdr(image_msg(T0, "rgb8", rgb_frame(0)), "sensor_msgs/msg/Image")
        )
        # a valid CDR header stamp followed by garbage: indexable, not deserialisable
        garbage = b"\x00\x01\x00\x00" + struct.pack("<iI", T0 // 10**9, T0 % 10**9) + b"\xff" * 7
        writer.write(c_depth, T0, garbage)
    ds = RosbagRGBDDataset(bag, rgb_topic=RGB_TOPIC, depth_topic=DEPTH_TOPIC)
    assert len(ds) == 1
    with pytest.raises(CorruptSampleError, match=DEPTH_TOPIC):
        ds[0]
