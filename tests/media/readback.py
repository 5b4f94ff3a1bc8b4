"""Reading media files back the way a player would: through the ffmpeg binary imageio-ffmpeg ships."""

from __future__ import annotations

import subprocess
from pathlib import Path


def probe(path: Path) -> tuple[dict, int]:
    """What ffmpeg reads from a video file: its header (codec, fps, size, audio codec) and its frame count."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    return meta, sum(1 for _ in reader)


def decode(path: Path):
    """Every frame of a video file as uint8 RGB, (frames, height, width, 3)."""
    import imageio_ffmpeg
    import numpy as np

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader])


def audio_stream(path: Path) -> str:
    """ffmpeg's one-line description of a file's audio stream ('' when there is none)."""
    from nodes.avmedia import ffmpeg_exe

    done = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return next((line.strip() for line in done.stderr.splitlines() if "Audio:" in line), "")
