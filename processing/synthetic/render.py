"""Drawing the synthetic benchmark's scenes into frames with numpy, and writing them as H.264 mp4 files with PyAV.

Shapes are anti-aliased coverage masks (4x4 supersampling), computed once per (shape, radius, angle) and cached;
a frame is the background crop plus each object alpha-blended through its mask. Per-video nuisances (object shade,
positional jitter, brightness flicker, pixel noise) come from the video's own random generator, so a video's pixels
depend only on its scene and its seed, never on which worker draws it or when.
"""

import functools
import os

import av
import numpy as np

from .scenes import COLOURS, distractor_state, object_states

SUPERSAMPLE = 4
RADIUS_STEP = 0.25  # pixels; cache key resolution
ANGLE_STEP = 3.0  # degrees
# Rotational symmetry of each shape in degrees (angles are reduced modulo it before the cache lookup).
SYMMETRY = {"circle": 360.0, "square": 90.0, "triangle": 120.0, "cross": 90.0, "star": 72.0}
JITTER_PX = 0.5  # std of per-frame positional jitter
SHADE_STD = 5.0  # std of the per-video offset of an object's colour (per channel)
FLICKER_STD = 2.0  # std of the per-frame brightness offset
NOISE_STD = 3.0  # std of per-pixel noise


def _polygon(points: list[tuple[float, float]]):
    vertices = np.asarray(points, dtype=np.float64)

    def inside(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        # Even-odd ray casting, vectorised over points; loops over the (few) edges.
        result = np.zeros(u.shape, dtype=bool)
        for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0)):
            crosses = (y0 > v) != (y1 > v)
            with np.errstate(divide="ignore", invalid="ignore"):
                x_at = x0 + (v - y0) * (x1 - x0) / (y1 - y0)
            result ^= crosses & (u < x_at)
        return result

    return inside


def _star_points(outer: float = 1.2, inner: float = 0.5) -> list[tuple[float, float]]:
    angles = -np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, outer, inner)
    return list(zip(radii * np.cos(angles), radii * np.sin(angles)))


# Shapes in units of the object's radius, y pointing down; roughly equal areas so size reads the same for each.
_INSIDE = {
    "circle": lambda u, v: u * u + v * v <= 1.0,
    "square": lambda u, v: (np.abs(u) <= 0.87) & (np.abs(v) <= 0.87),
    "triangle": _polygon([(0.0, -1.25), (1.15, 0.7), (-1.15, 0.7)]),
    "cross": lambda u, v: ((np.abs(u) <= 1.05) & (np.abs(v) <= 0.38)) | ((np.abs(u) <= 0.38) & (np.abs(v) <= 1.05)),
    "star": _polygon(_star_points()),
}
_EXTENT = 1.3  # every shape fits in a disc of this many radii


@functools.lru_cache(maxsize=8192)
def _mask(shape: str, radius_key: int, angle_key: int) -> np.ndarray:
    """Coverage in [0, 1], shape `(2h+1, 2h+1)`, centred on the middle pixel. Keys are quantised radius and angle."""
    radius = radius_key * RADIUS_STEP
    angle = np.deg2rad(angle_key * ANGLE_STEP)
    half = int(np.ceil(_EXTENT * radius)) + 1
    offsets = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    coords = (np.arange(-half, half + 1)[:, None] + offsets[None, :]).reshape(-1)  # sub-pixel centres
    y, x = np.meshgrid(coords, coords, indexing="ij")
    # Rotate the sampling points the other way instead of rotating the shape.
    cos, sin = np.cos(angle), np.sin(angle)
    u = (cos * x + sin * y) / radius
    v = (-sin * x + cos * y) / radius
    inside = _INSIDE[shape](u, v).astype(np.float32)
    size = 2 * half + 1
    return inside.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))


def shape_mask(shape: str, radius_px: float, angle_deg: float = 0.0) -> np.ndarray:
    """The anti-aliased mask of a shape of radius `radius_px` pixels rotated by `angle_deg` (cached)."""
    radius_key = max(1, int(round(radius_px / RADIUS_STEP)))
    angle_key = int(round((angle_deg % SYMMETRY[shape]) / ANGLE_STEP)) % int(round(SYMMETRY[shape] / ANGLE_STEP))
    return _mask(shape, radius_key, angle_key)


def _paste(frame: np.ndarray, mask: np.ndarray, cx: float, cy: float, colour: np.ndarray, alpha: float) -> None:
    """Alpha-blends `colour` through `mask` centred at pixel (cx, cy) into `frame` (H, W, 3), clipped at borders."""
    if alpha <= 0.0:
        return
    height, width = frame.shape[:2]
    half = mask.shape[0] // 2
    x0, y0 = int(round(cx)) - half, int(round(cy)) - half
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + mask.shape[1], width), min(y0 + mask.shape[0], height)
    if fx0 >= fx1 or fy0 >= fy1:
        return
    weight = mask[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0, None] * alpha  # (h, w, 1)
    region = frame[fy0:fy1, fx0:fx1]
    region += (colour - region) * weight


def _bilinear(grid: np.ndarray, size: int) -> np.ndarray:
    """Upsamples a small 2-D grid to (size, size) by bilinear interpolation."""
    cells = grid.shape[0] - 1
    position = np.linspace(0, cells, size)
    low = np.minimum(position.astype(int), cells - 1)
    frac = position - low
    rows = grid[low] * (1 - frac)[:, None] + grid[low + 1] * frac[:, None]  # (size, cells + 1)
    return rows[:, low] * (1 - frac)[None, :] + rows[:, low + 1] * frac[None, :]


def background_canvas(background: dict, size: int, pad: int) -> np.ndarray:
    """The textured background, `(size + 2 pad, size + 2 pad, 3)` float32, larger than a frame so it can pan."""
    side = size + 2 * pad
    coords = (np.arange(side, dtype=np.float64) - pad) / size
    y, x = np.meshgrid(coords, coords, indexing="ij")
    texture_kind, amplitude, period = background["texture"], background["amplitude"], background["period"]
    theta = np.deg2rad(background["orientation"])
    along = x * np.cos(theta) + y * np.sin(theta)
    if texture_kind == "flat":
        texture = np.zeros_like(x)
    elif texture_kind == "stripes":
        texture = amplitude * np.sin(2 * np.pi * along / period)
    elif texture_kind == "checker":
        texture = amplitude * np.sign(np.sin(2 * np.pi * x / period) * np.sin(2 * np.pi * y / period))
    elif texture_kind == "gradient":
        texture = amplitude * 2.0 * (along - along.mean()) / max(np.ptp(along), 1e-6)
    elif texture_kind == "blotches":
        cells = max(2, int(round(1.5 / period)))
        grid = np.random.default_rng(background["seed"]).uniform(-1, 1, size=(cells + 1, cells + 1))
        texture = amplitude * _bilinear(grid, side)
    else:
        raise ValueError(f"Unknown background texture {texture_kind!r}.")
    base = np.asarray(background["colour"], dtype=np.float64)
    return np.clip(base[None, None, :] + texture[..., None], 0, 255).astype(np.float32)


def render_frames(scene: dict, num_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """The clip of `scene` as a uint8 array `(num_frames, size, size, 3)`; nuisances are drawn from `rng`."""
    times = np.linspace(0.0, 1.0, num_frames)
    pad = max(2, size // 8)
    canvas = background_canvas(scene["background"], size, pad)
    pan = np.asarray(scene["background"]["pan"])
    layers = []  # (shape, colour, state): distractor first so that described objects are drawn over it
    if scene.get("distractor"):
        layers.append((scene["distractor"], distractor_state(scene["distractor"], times)))
    layers += list(zip(scene["objects"], object_states(scene, times)))
    shades = [np.asarray(COLOURS[obj["colour"]], dtype=np.float32) + rng.normal(0, SHADE_STD, 3) for obj, _ in layers]
    jitter = rng.normal(0, JITTER_PX, size=(len(layers), num_frames, 2))
    flicker = rng.normal(0, FLICKER_STD, size=num_frames)

    clip = np.empty((num_frames, size, size, 3), dtype=np.float32)
    for t in range(num_frames):
        # Pan: the crop window moves linearly, at most `pad` pixels from the centre.
        ox = pad + int(round(np.clip(pan[0] * (times[t] - 0.5) * size, -pad, pad)))
        oy = pad + int(round(np.clip(pan[1] * (times[t] - 0.5) * size, -pad, pad)))
        frame = clip[t]
        frame[:] = canvas[oy : oy + size, ox : ox + size]
        for (obj, state), shade, shift in zip(layers, shades, jitter):
            radius = state["radius"][t] * size
            mask = shape_mask(obj["shape"], radius, state["angle"][t])
            cx = state["x"][t] * size - 0.5 + shift[t, 0]
            cy = state["y"][t] * size - 0.5 + shift[t, 1]
            _paste(frame, mask, cx, cy, shade, float(state["alpha"][t]))
    clip += flicker[:, None, None, None]
    clip += NOISE_STD * rng.standard_normal(clip.shape, dtype=np.float32)
    return np.clip(np.rint(clip), 0, 255).astype(np.uint8)


def rgb_to_yuv420p(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    An RGB uint8 frame (H, W, 3) as yuv420p planes Y (H, W), U and V (H/2, W/2): BT.601 limited range (what
    decoders assume for untagged SD video), chroma averaged over 2x2 blocks. Done here so that the encoder's input
    is exactly defined by our arrays rather than by swscale's CPU-dependent SIMD paths.
    """
    rgb = frame.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0
    cb = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0
    cr = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0
    height, width = y.shape

    def subsample(plane):
        return plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))

    return tuple(np.clip(np.rint(plane), 0, 255).astype(np.uint8) for plane in (y, subsample(cb), subsample(cr)))


def _yuv_frame(planes: tuple[np.ndarray, ...], width: int, height: int) -> av.VideoFrame:
    """A yuv420p `av.VideoFrame` with every byte set, row padding included (filled by repeating the last pixel)."""
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane, data in zip(frame.planes, planes):
        if plane.line_size != data.shape[1]:
            padded = np.empty((data.shape[0], plane.line_size), dtype=np.uint8)
            padded[:, : data.shape[1]] = data
            padded[:, data.shape[1] :] = data[:, -1:]
            data = padded
        plane.update(np.ascontiguousarray(data))
    return frame


def write_mp4(path: str, frames: np.ndarray, fps: int = 8, crf: int = 18) -> None:
    """
    Writes `frames` (T, H, W, 3) uint8 RGB as H.264 (libx264, yuv420p) mp4, reproducibly: one encoder thread
    (parallelism comes from encoding several videos at once) and no MB-tree rate control, whose lookahead makes
    x264's output depend on uninitialised memory (the same frames gave different bytes from run to run). Written
    to a temporary name first: a file at `path` is always complete.
    """
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 yuv420p needs even frame sizes, got {width}x{height}.")
    tmp = f"{path}.tmp"
    container = av.open(tmp, mode="w", format="mp4")
    try:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1", "x264-params": "mbtree=0"}
        for index, frame in enumerate(frames):
            video_frame = _yuv_frame(rgb_to_yuv420p(frame), width, height)
            video_frame.pts = index
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    os.replace(tmp, path)


def render_video(task: dict) -> str:
    """
    Draws and writes one video. `task`: `scene`, `path`, `num_frames`, `size`, `fps`, and `entropy` (the ints
    that seed this video's generator, e.g. `(seed, split, index)`). Returns the path. Used by the worker pool.
    """
    rng = np.random.default_rng(np.random.SeedSequence(list(task["entropy"])))
    frames = render_frames(task["scene"], task["num_frames"], task["size"], rng)
    write_mp4(task["path"], frames, fps=task["fps"])
    return task["path"]


__all__ = [
    "background_canvas",
    "render_frames",
    "render_video",
    "rgb_to_yuv420p",
    "shape_mask",
    "write_mp4",
]
