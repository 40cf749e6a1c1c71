"""fastgen.utils.video: mp4 round trips through real PyAV/FFmpeg (frame count, size, fps, pixels), layouts, contact
sheets, the frame-count and resolution checks, and one-line errors with nothing written."""

import numpy as np
import pytest
import torch

from fastgen.utils.image_grid import make_image_grid
from fastgen.utils.video import (
    VideoError,
    check_num_frames,
    check_resolution,
    encode_mp4,
    frames_to_video,
    make_contact_sheet,
    make_video_grid,
    read_video,
    save_contact_sheet,
    to_cthw,
    video_to_uint8,
    write_video,
)


def smooth_video(frames=9, height=32, width=48):
    """A moving colour pattern in [-0.8, 0.8], [3, T, H, W] (smooth, like decoded samples)."""
    t, y, x = torch.meshgrid(torch.arange(frames), torch.arange(height), torch.arange(width), indexing="ij")
    return 0.8 * torch.stack([torch.sin(x / 14 + t / 3), torch.cos(y / 10 - t / 4), torch.sin((x + y) / 18)])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()
    return float(10 * np.log10(255.0**2 / mse))


def test_lossless_round_trip_is_exact_in_either_layout(tmp_path):
    video = torch.rand(3, 9, 30, 44, generator=torch.Generator().manual_seed(0)) * 2 - 1
    path = write_video(tmp_path / "a" / "clip.mp4", video, fps=12, lossless=True)
    back = read_video(path)
    assert back.frames.shape == (9, 30, 44, 3) and back.fps == 12.0
    assert np.array_equal(back.frames, video_to_uint8(video))  # libx264rgb crf 0: bit-exact
    # channel-last input gives the same file content frames
    thwc = read_video(write_video(tmp_path / "b.mp4", video.permute(1, 2, 3, 0), fps=12, lossless=True))
    assert np.array_equal(thwc.frames, back.frames)
    assert not list(tmp_path.rglob("*.tmp"))


def test_default_h264_round_trip_is_close(tmp_path):
    """yuv420p crf 18 (plays everywhere) is lossy: PSNR above 33 dB on a smooth pattern, far from another video."""
    video = smooth_video()
    back = read_video(write_video(tmp_path / "clip.mp4", video, fps=16))
    expected = video_to_uint8(video)
    assert back.frames.shape == (9, 32, 48, 3) and back.fps == 16.0
    assert psnr(back.frames, expected) > 33.0
    assert np.abs(back.frames.astype(int) - expected.astype(int)).mean() < 4.0
    assert psnr(back.frames, video_to_uint8(smooth_video().flip(1))) < 25.0  # the check can fail
    # frames_to_video inverts the pixel mapping up to quantisation
    np.testing.assert_allclose(frames_to_video(expected), video.numpy(), atol=1 / 127.5 + 1e-6)


@pytest.mark.parametrize("fps", [24, 23.976])
def test_fps_and_single_channel(tmp_path, fps):
    grey = torch.linspace(-1, 1, 5 * 8 * 8).reshape(1, 5, 8, 8)
    back = read_video(write_video(tmp_path / "g.mp4", grey, fps=fps, lossless=True))
    assert back.frames.shape == (5, 8, 8, 3) and abs(back.fps - fps) < 1e-3
    assert np.array_equal(back.frames[..., 0], back.frames[..., 2])  # grey: the channel repeated


def test_layouts_and_bad_input_write_nothing(tmp_path):
    video = torch.zeros(3, 2, 4, 6)
    assert to_cthw(video).shape == (3, 2, 4, 6) and to_cthw(video.permute(1, 2, 3, 0)).shape == (3, 2, 4, 6)
    with pytest.raises(VideoError, match="pass layout="):
        to_cthw(torch.zeros(2, 4, 4, 4))
    with pytest.raises(VideoError, match="1 or 3 channels"):
        to_cthw(torch.zeros(16, 2, 4, 4), layout="CTHW")
    with pytest.raises(VideoError, match="4-D"):
        write_video(tmp_path / "x.mp4", torch.zeros(1, 3, 2, 4, 4))
    with pytest.raises(VideoError, match="even width and height; got 7x4"):
        write_video(tmp_path / "odd.mp4", torch.zeros(3, 2, 4, 7))
    with pytest.raises(VideoError, match="fps must be > 0"):
        encode_mp4(np.zeros((1, 4, 4, 3), np.uint8), fps=0)
    assert not list(tmp_path.iterdir())
    # odd sizes are fine losslessly
    assert read_video(write_video(tmp_path / "odd.mp4", torch.zeros(3, 2, 4, 7), lossless=True)).frames.shape == (
        2, 4, 7, 3)


def test_unreadable_files_are_one_line(tmp_path):
    with pytest.raises(VideoError, match="does not exist"):
        read_video(tmp_path / "missing.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 50)
    with pytest.raises(VideoError, match="cannot read video") as err:
        read_video(bad)
    assert "\n" not in str(err.value)


def test_contact_sheet_picks_evenly_spaced_frames(tmp_path):
    # frame t of sample b is the constant (b * 10 + t) / 127.5 - 1 (so each tile is identifiable)
    b, t = torch.meshgrid(torch.arange(2.0), torch.arange(9.0), indexing="ij")
    videos = ((b * 10 + t) / 127.5 - 1)[:, None, :, None, None].expand(2, 3, 9, 4, 6)
    sheet = make_contact_sheet(videos, num_frames=3, padding=0)
    assert sheet.shape == (2 * 4, 3 * 6, 3)
    tiles = sheet[::4, ::6, 0].astype(int)  # top-left pixel of each tile: u8 = b * 10 + t
    assert tiles.tolist() == [[0, 4, 8], [10, 14, 18]]  # frames 0, 4, 8 (first and last included)
    single = make_contact_sheet(videos[0].permute(1, 2, 3, 0), num_frames=20, padding=0)  # T < num_frames
    assert single.shape == (4, 9 * 6, 3)
    path = save_contact_sheet(videos, tmp_path / "s" / "sheet.png", num_frames=3)
    from PIL import Image

    assert Image.open(path).size == (3 * 6 + 4 * 2, 2 * 4 + 3 * 2)  # 2 px padding around and between tiles


def test_video_grid_frames_are_image_grids():
    videos = torch.rand(3, 3, 4, 5, 5, generator=torch.Generator().manual_seed(1)) * 2 - 1
    grid = make_video_grid(videos)
    assert grid.shape == (4, 10, 10, 3)  # 2x2 grid of 5x5 = 10x10 (already even)
    assert np.array_equal(grid[2], make_image_grid(videos[:, :, 2]))
    odd = make_video_grid(videos[:1])
    assert odd.shape == (4, 6, 6, 3) and (odd[:, 5] == 0).all() and (odd[:, :, 5] == 0).all()


def test_frame_count_and_resolution_checks():
    assert check_num_frames(81) == 21 and check_num_frames(1) == 1 and check_num_frames(49) == 13
    assert check_num_frames(9, temporal_factor=8) == 2
    with pytest.raises(VideoError, match=r"num_frames=80 is not of the form \(T-1\)\*4\+1.*use 77 or 81"):
        check_num_frames(80)
    with pytest.raises(VideoError, match="use 1 or 5"):
        check_num_frames(0)
    check_resolution(480, 832, 16)
    with pytest.raises(VideoError, match=r"480x833 \(HxW\) is not divisible by 16 .*use e.g. 480x832"):
        check_resolution(480, 833, 16)
    with pytest.raises(VideoError, match="704x1280"):
        check_resolution(704, 1270, 32, what="VAE 16 x patch 2")
