"""Small media files the tests write themselves."""

from pathlib import Path

import av
import numpy as np


def write_grey_video(path: Path, num_frames: int, height: int = 32, width: int = 48, step: int = 10,
                     codec: str = "libx264", keyframe_interval: int = 5) -> Path:
    """An mp4 whose frame i is the constant grey `step * i`, so decoded pixels tell which frames were sampled."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10, options={"g": str(keyframe_interval)})
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        for index in range(num_frames):
            frame = np.full((height, width, 3), step * index, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return Path(path)
