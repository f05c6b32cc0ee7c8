"""Square athlete crops: padding, zero borders, previous-frame crop."""
from __future__ import annotations

import numpy as np
import pytest

from plugins.crop import CropPlugin, crop_square, square_box
from vpd_stream.annotations import Track
from vpd_stream.frame import Frame


def test_square_box_pads_by_ten_percent_or_25_px():
    small = square_box(np.array([100, 100, 200, 150]))  # longer side 100 → pad 25 px
    np.testing.assert_allclose(small, [75, 50, 225, 200])
    big = square_box(np.array([0, 0, 300, 400]))  # longer side 400 → pad 40 px
    np.testing.assert_allclose(big, [-90, -40, 390, 440])


def test_crop_is_exact_at_unit_scale_and_zero_outside_the_image():
    image = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    np.testing.assert_array_equal(crop_square(image, np.array([10, 20, 138, 148], np.float32)), image[20:148, 10:138])
    corner = crop_square(np.full((300, 400, 3), 200, np.uint8), np.array([-64, -64, 64, 64], np.float32))
    assert corner.shape == (128, 128, 3)
    assert not corner[:64].any() and not corner[:, :64].any()  # outside: zeros
    assert (corner[64:, 64:] == 200).all()
    assert not crop_square(image, np.array([1000, 1000, 1100, 1100], np.float32)).any()


def test_large_reduction_keeps_the_content():
    """A 1,000 px square shrunk to 128: the mean colour and a bright block survive."""
    image = np.zeros((1200, 1200, 3), np.uint8)
    image[100:600, 100:600] = 255  # top-left quarter of the square
    crop = crop_square(image, np.array([100, 100, 1100, 1100], np.float32))
    assert crop[:60, :60].min() == 255 and crop[70:, 70:].max() == 0
    assert crop.mean() == pytest.approx(255 / 4, rel=0.03)


def _frame(index: int, rgb: np.ndarray, box, prev_rgb=None, athlete=True) -> Frame:
    frame = Frame("s", index, index / 25, rgb, prev_rgb=prev_rgb)
    frame.annotations["tracks"] = {7: Track(7, np.array(box, np.float32), 0.9, athlete)}
    return frame


def test_plugin_uses_previous_frame_and_union_of_boxes():
    a = np.full((400, 400, 3), 10, np.uint8)
    b = np.full((400, 400, 3), 90, np.uint8)
    plugin = CropPlugin()
    first = _frame(0, a, [100, 100, 200, 300])  # no previous frame: its own image
    plugin.process([first])
    crop = first.annotations["crop"][7]
    assert crop.rgb.shape == crop.prev_rgb.shape == (128, 128, 3)
    np.testing.assert_array_equal(crop.rgb, crop.prev_rgb)
    np.testing.assert_allclose(crop.box, square_box(np.array([100, 100, 200, 300])))
    second = _frame(1, b, [150, 100, 250, 300], prev_rgb=a)
    plugin.process([second])
    crop = second.annotations["crop"][7]
    np.testing.assert_allclose(crop.box, square_box(np.array([100, 100, 250, 300])))  # union with frame 0
    assert crop.rgb.max() == 90 and crop.prev_rgb.max() == 10


def test_plugin_skips_non_athletes_unless_asked():
    rgb = np.full((200, 200, 3), 50, np.uint8)
    frame = _frame(0, rgb, [10, 10, 60, 100], athlete=False)
    CropPlugin().process([frame])
    assert frame.annotations["crop"] == {}
    frame = _frame(0, rgb, [10, 10, 60, 100], athlete=False)
    CropPlugin(CropPlugin.Options(all_tracks=True)).process([frame])
    assert 7 in frame.annotations["crop"]
