"""The Space's upload limits hold on what a file contains, not on what its header claims; decoding work per upload
is capped; error messages carry no server path; uploads belong to one session and are deleted after use."""

import struct
import time
from pathlib import Path

import av
import numpy as np
import pytest

from tiny_media import write_grey_video

SPACE = Path(__file__).resolve().parents[1] / "spaces_demo"

import inference  # noqa: E402
from inference import DemoEngine, UploadError, UploadLimits  # noqa: E402

CHECKPOINT = "t2v2t-synthetic-quickstart"
LIMITS = UploadLimits(max_bytes=2_000_000, max_seconds=3.0, max_frames=600, max_decode_pixels=5_000_000,
                      max_per_session=3, retention_seconds=60.0)


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> DemoEngine:
    engine = DemoEngine(upload_dir=tmp_path_factory.mktemp("uploads"), media_dir=tmp_path_factory.mktemp("media"),
                        limits=LIMITS)
    engine.checkpoint(CHECKPOINT)
    return engine


def _claim_one_second(path: Path) -> Path:
    """Rewrite the mp4 header's durations (mvhd, tkhd, mdhd; version-0 boxes) to say 1 s; the packets stay."""
    data = bytearray(path.read_bytes())
    movie_scale = None
    for box in (b"mvhd", b"tkhd", b"mdhd"):
        at = data.index(box) + 4
        assert data[at] == 0, f"{box} is not a version-0 box"
        if box == b"mvhd":
            movie_scale = struct.unpack(">I", data[at + 12 : at + 16])[0]
            struct.pack_into(">I", data, at + 16, movie_scale)
        elif box == b"tkhd":
            struct.pack_into(">I", data, at + 20, movie_scale)
        else:
            scale = struct.unpack(">I", data[at + 12 : at + 16])[0]
            struct.pack_into(">I", data, at + 16, scale)
    path.write_bytes(bytes(data))
    return path


def test_a_long_video_whose_header_claims_one_second_is_refused(engine, tmp_path):
    # 50 frames at 10 fps: 5 s of packets, over the 3 s limit, in a file whose header says 1 s.
    path = _claim_one_second(write_grey_video(tmp_path / "liar.mp4", num_frames=50, step=4))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert float(stream.duration * stream.time_base) == pytest.approx(1.0)  # the lie the old check believed
        assert container.duration / av.time_base == pytest.approx(1.0, abs=0.05)
    with pytest.raises(UploadError, match=r"liar.mp4: the video is at least 3\.\d s long \(measured from its "
                                          r"timestamps\); the limit is 3 s"):
        engine.validate_upload(path, "liar.mp4")
    honest = write_grey_video(tmp_path / "short.mp4", num_frames=25, step=8)  # 2.5 s
    info = engine.validate_upload(honest, "short.mp4")
    assert info["frames"] == 25 and info["duration"] == pytest.approx(2.5)


def test_many_tiny_frames_are_refused_after_a_capped_scan(engine, tmp_path):
    """6000 16x16 frames at 2000 fps (3 s, under the duration limit): refused on the counted frames, for a small
    fraction of what decoding them all costs (both measured here, in one process)."""
    path = tmp_path / "swarm.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=2000, options={"g": "250"})
        stream.height, stream.width, stream.pix_fmt = 16, 16, "yuv420p"
        for index in range(6000):
            frame = np.full((16, 16, 3), index % 256, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    assert path.stat().st_size < LIMITS.max_bytes
    start = time.process_time()
    with pytest.raises(UploadError, match=r"swarm.mp4: the video has more than 600 frames \(counted"):
        engine.validate_upload(path, "swarm.mp4")
    refuse = time.process_time() - start
    start = time.process_time()
    with av.open(str(path)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    decode_all = time.process_time() - start
    assert decoded == 6000
    assert refuse < 0.25 * decode_all, f"refusing took {refuse:.3f} s CPU, decoding everything {decode_all:.3f} s"


def test_decoding_work_is_capped_before_decoding(engine, tmp_path):
    # 30 frames of 320x240 = 2.3 Mpx < 5 Mpx passes; 30 frames of 640x480 = 9.2 Mpx does not.
    small = write_grey_video(tmp_path / "small.mp4", num_frames=30, height=240, width=320, step=8)
    assert engine.validate_upload(small, "small.mp4")["frames"] == 30
    large = write_grey_video(tmp_path / "large.mp4", num_frames=30, height=480, width=640, step=8)
    with pytest.raises(UploadError, match=r"large.mp4: decoding 30 frames of 640x480 is more work than this demo "
                                          r"allows per upload \(5 Mpx\)"):
        engine.validate_upload(large, "large.mp4")


def test_decode_meter_stops_at_the_budget(tmp_path, engine, monkeypatch):
    """The decode pass itself counts decoded pixels: with a budget below one file's true cost it stops."""
    path = write_grey_video(tmp_path / "clip.mp4", num_frames=20, height=64, width=64, step=10)
    video_processor = engine.checkpoint(CHECKPOINT).processor.video_processor
    frames, times = inference.decode_upload(str(path), video_processor, LIMITS, "clip.mp4")
    assert frames.shape == (4, 64, 64, 3) and times == sorted(times)
    # Exactly the processor's own frames (its sampling, the same PyAV pixels).
    expected = video_processor([str(path)], do_normalize=False, do_rescale=False, do_resize=False)
    assert np.array_equal(frames, expected["pixel_values_videos"][0].permute(0, 2, 3, 1).round().byte().numpy())
    # A file that decodes to more than its packets said: simulated by a measurement that passed the pre-check.
    info = inference.measure_video(str(path), LIMITS, "clip.mp4")
    monkeypatch.setattr(inference, "measure_video", lambda *args: info)
    with pytest.raises(UploadError, match=r"clip.mp4: decoding it exceeds the 0.02048 Mpx"):
        inference.decode_upload(str(path), video_processor, UploadLimits(max_decode_pixels=5 * 64 * 64), "clip.mp4")


def test_errors_never_show_server_paths(engine, tmp_path):
    """200 seeded byte mutations of a small mp4: each is added or refused with an `UploadError`; no message holds
    a server path (the stored copy, the temp folders) and nothing else escapes."""
    good = write_grey_video(tmp_path / "good.mp4", num_frames=12, step=20).read_bytes()
    rng = np.random.default_rng(1234)
    outcomes = {"added": 0, "refused": 0}
    for number in range(200):
        data = bytearray(good)
        for position in rng.integers(0, len(data), size=int(rng.integers(1, 12))):
            data[position] = int(rng.integers(0, 256))
        path = tmp_path / f"mutant{number}.mp4"
        path.write_bytes(bytes(data))
        try:
            engine.add_upload(path, CHECKPOINT, filename="my clip.mp4", session=f"fuzz{number}")
            outcomes["added"] += 1
        except UploadError as error:
            outcomes["refused"] += 1
            message = str(error)
            assert message.startswith("my clip.mp4: ")
            for secret in (str(tmp_path), str(engine.upload_dir), "/tmp", "mutant"):
                assert secret not in message, message
    assert outcomes["refused"] > 0 and outcomes["added"] + outcomes["refused"] == 200, outcomes
    print("mutations:", outcomes)


def test_without_paths_removes_absolute_paths():
    text = "Could not decode video file /tmp/t2v2t_demo_uploads_x/ab12.mp4: Invalid data: 'C:\\Users\\me\\a.mp4'"
    cleaned = inference.without_paths(text)
    assert "/tmp" not in cleaned and "Users" not in cleaned and "Invalid data" in cleaned


def test_uploads_live_in_their_session_folder_and_are_deleted(engine, tmp_path):
    clip = write_grey_video(tmp_path / "mine.mp4", num_frames=10, step=25)
    mine, _ = engine.add_upload(clip, CHECKPOINT, filename="mine.mp4", session="alice")
    theirs, _ = engine.add_upload(clip, CHECKPOINT, filename="mine.mp4", session="bob")
    assert Path(mine.path).parent == engine.session_dir("alice") != engine.session_dir("bob")
    assert "alice" not in mine.path  # folders are named by a hash of the session id
    # Ending Alice's session deletes her copy only; Bob still searches his.
    assert engine.discard_uploads([mine]) == 1
    assert not Path(mine.path).exists() and not engine.session_dir("alice").exists()
    with pytest.raises(UploadError, match="mine: this upload has expired"):
        engine.search("a white square", CHECKPOINT, k=2, uploads=[mine])
    found = engine.search("a white square", CHECKPOINT, k=len(engine.gallery) + 1, uploads=[theirs])
    assert theirs.video_id in {hit.record.video_id for hit in found.hits}


def test_retention_sweep_deletes_unused_uploads_and_session_images(engine, tmp_path):
    clip = write_grey_video(tmp_path / "old.mp4", num_frames=10, step=15)
    record, _ = engine.add_upload(clip, CHECKPOINT, filename="old.mp4", session="carol")
    image = Path(engine.media_file(np.zeros((8, 8, 3), np.uint8) + 7, "session"))
    gallery_image = Path(engine.media_file(np.zeros((8, 8, 3), np.uint8) + 9, "gallery"))
    assert engine.purge_expired() == 0 and Path(record.path).exists()  # fresh: kept
    assert engine.purge_expired(now=time.time() + LIMITS.retention_seconds + 1) >= 2
    assert not Path(record.path).exists() and not image.exists() and gallery_image.exists()
    with pytest.raises(UploadError, match="expired"):
        engine.search("a white square", CHECKPOINT, uploads=[record])


def test_media_files_are_content_addressed_and_never_rewritten(engine):
    image = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    first = Path(engine.media_file(image))
    inode, mtime_ns = first.stat().st_ino, first.stat().st_mtime_ns
    second = Path(engine.media_file(image.copy()))
    assert first == second and second.stat().st_ino == inode  # same file, not written again
    assert second.stat().st_mtime_ns >= mtime_ns
    assert Path(engine.media_file(image[::-1].copy())) != first
    assert not list(first.parent.glob(".staging-*"))


@pytest.mark.parametrize("field", ["max_frames", "max_decode_pixels", "retention_seconds"])
def test_limits_are_validated(field):
    with pytest.raises(ValueError, match=f"UploadLimits.{field}=0 is invalid"):
        UploadLimits(**{field: 0})
