"""AUDIO and VIDEO values and their files: the backend that nodes.music and nodes.video share.

This module holds no nodes. Values are plain numpy arrays on the host while a graph runs;
files carry the description every saved file carries (engine.provenance: `params` and the
`workflow` that re-makes them) in the format's own metadata where it can hold it, else in a
JSON sidecar next to the file; engine.embedded reads it back. numpy, soundfile, imageio-ffmpeg
and Pillow are imported where used.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.embedded import EXIF_DESCRIPTION
from engine.errors import MediaFileError
from engine.provenance import describe, encode, sidecar

log = logging.getLogger("flow.media")

#: audio file formats: extension -> (soundfile format, subtype)
AUDIO_FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
VIDEO_FORMATS = ("mp4", "gif", "webp")




@dataclass(frozen=True, eq=False)
class Audio:
    """An AUDIO value: float32 samples shaped (channels, samples) in [-1, 1], and the sample rate."""

    samples: Any  # numpy.ndarray, float32, (channels, samples)
    sample_rate: int
    #: how it was made (node type, model, prompt, seed, ...): saved into the file's metadata
    params: dict = field(default_factory=dict)

    @property
    def channels(self) -> int:
        """Number of channels."""
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples.shape[1] / self.sample_rate

    @property
    def nbytes(self) -> int:
        """Bytes held (the output cache's size accounting)."""
        return int(self.samples.nbytes)

    def to_host(self) -> "Audio":
        """Already on the host: the value itself."""
        return self

    def fitted(self, seconds: float) -> "Audio":
        """The same audio trimmed, or padded with silence, to exactly `seconds`."""
        import numpy as np

        want = max(0, round(seconds * self.sample_rate))
        have = self.samples.shape[1]
        if want <= have:
            samples = self.samples[:, :want]
        else:
            samples = np.concatenate([self.samples, np.zeros((self.channels, want - have), np.float32)], axis=1)
        return replace(self, samples=np.ascontiguousarray(samples))

    def write_file(self, files, prefix: str, fmt: str = "wav") -> Path:
        """Save to a new file under the output folder (WAV by default) with its params (no run: no workflow)."""
        path = files.new_path(prefix, f".{fmt}")
        write_audio(path, self, fmt, describe(None, self.params))
        return path


@dataclass(frozen=True, eq=False)
class Video:
    """A VIDEO value: uint8 RGB frames shaped (frames, height, width, 3), frames per second, optional audio."""

    frames: Any  # numpy.ndarray, uint8, (T, H, W, 3)
    fps: float
    #: a soundtrack (an AUDIO value, or anything with `samples` and `sample_rate`), or None
    audio: Any = None
    params: dict = field(default_factory=dict)

    @property
    def frame_count(self) -> int:
        """Number of frames."""
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frame_count / self.fps

    @property
    def nbytes(self) -> int:
        """Bytes held, soundtrack included."""
        return int(self.frames.nbytes) + (int(self.audio.samples.nbytes) if self.audio is not None else 0)

    def to_host(self) -> "Video":
        """Already on the host: the value itself."""
        return self

    def write_file(self, files, prefix: str, fmt: str = "mp4") -> Path:
        """Save to a new file under the output folder (H.264 MP4 by default) with its params (no run: no workflow)."""
        path = files.new_path(prefix, f".{fmt}")
        write_video(path, self, fmt, describe(None, self.params))
        return path


# -- audio files ----------------------------------------------------------------------------


def write_audio(path: Path, audio: Audio, fmt: str, description: dict) -> None:
    """Write `audio` as `fmt`; the description goes into the comment tag, or a sidecar if it does not fit."""
    import numpy as np
    import soundfile as sf

    if fmt not in AUDIO_FORMATS:
        raise MediaFileError(f"audio format {fmt!r} is not supported; use one of {', '.join(AUDIO_FORMATS)}")
    container, subtype = AUDIO_FORMATS[fmt]
    description = encode(description)
    data = np.clip(np.asarray(audio.samples, dtype=np.float32), -1.0, 1.0).T  # soundfile wants (samples, channels)
    try:
        with sf.SoundFile(path, "w", samplerate=int(audio.sample_rate), channels=audio.channels,
                          format=container, subtype=subtype) as out:
            out.comment = description
            out.write(data)
        # libsndfile silently truncates long strings in some containers (WAV's INFO chunk): read back.
        stored = read_audio_comment(path)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise MediaFileError(f"could not write {fmt} audio at {audio.sample_rate} Hz to {path.name}: {exc}") from exc
    if stored != description:
        _write_sidecar(path, description)


def read_audio_comment(path: Path) -> str:
    """The comment tag of an audio file ('' when it has none)."""
    from engine.embedded import container_comment

    return container_comment(path)


def _write_sidecar(path: Path, description: str) -> None:
    sidecar(path).write_text(description, encoding="utf-8")
    log.info("%s cannot hold the workflow metadata; wrote %s", path.name, sidecar(path).name)


# -- video files ----------------------------------------------------------------------------


def write_video(path: Path, video: Video, fmt: str, description: dict) -> None:
    """Write `video` as H.264 MP4 (with its soundtrack as AAC), GIF or animated WebP, description included."""
    description = encode(description)
    if fmt == "mp4":
        _write_mp4(path, video, description)
    elif fmt in ("gif", "webp"):
        if video.audio is not None:
            log.info("%s has no audio track: the soundtrack is left out of %s", fmt.upper(), path.name)
        _write_animation(path, video, fmt, description)
    else:
        raise MediaFileError(f"video format {fmt!r} is not supported; use one of {', '.join(VIDEO_FORMATS)}")


def ffmpeg_exe() -> str:
    """The ffmpeg binary that the imageio-ffmpeg wheel ships."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _ffmetadata(description: str) -> str:
    # ffmetadata escapes '=', ';', '#', '\' and newlines with a backslash.
    for char in "\\=;#\n":
        description = description.replace(char, "\\" + char)
    return f";FFMETADATA1\ncomment={description}\n"


def _write_mp4(path: Path, video: Video, description: str) -> None:
    import numpy as np

    frames = np.ascontiguousarray(video.frames, dtype=np.uint8)
    count, height, width, _ = frames.shape
    with tempfile.TemporaryDirectory(prefix="flow-mp4-") as tmp:
        meta = Path(tmp) / "meta.txt"
        meta.write_text(_ffmetadata(description), encoding="utf-8")  # a file: no argument-length limit
        inputs = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{video.fps:g}", "-i", "-"]
        maps = ["-map", "0:v"]
        audio_codec: list[str] = []
        if video.audio is not None:
            wav = Path(tmp) / "audio.wav"
            soundtrack = Audio(np.asarray(video.audio.samples, np.float32), int(video.audio.sample_rate))
            write_audio_plain(wav, soundtrack.fitted(count / video.fps))
            inputs += ["-i", str(wav)]
            maps += ["-map", "1:a"]
            audio_codec = ["-c:a", "aac", "-b:a", "192k"]
        inputs += ["-i", str(meta)]
        command = [
            ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", *inputs, *maps,
            "-map_metadata", str(len(maps) // 2),
            # yuv420p needs even sizes: pad odd ones by a pixel instead of failing
            "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-preset", "medium",
            *audio_codec, "-movflags", "+faststart", "-f", "mp4", str(path),
        ]
        done = subprocess.run(command, input=frames.tobytes(), capture_output=True)
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        raise MediaFileError(f"ffmpeg could not write {path.name}: {detail[-1] if detail else done.returncode}")


def write_audio_plain(path: Path, audio: Audio) -> None:
    """A float WAV without metadata (an intermediate file for the muxer)."""
    import soundfile as sf

    sf.write(path, audio.samples.T, int(audio.sample_rate), subtype="FLOAT")


def _write_animation(path: Path, video: Video, fmt: str, description: str) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in video.frames]
    # GIF stores delays in hundredths of a second; WebP in milliseconds.
    duration = max(1, round(1000 / video.fps)) if fmt == "webp" else max(2, round(100 / video.fps)) * 10
    options: dict[str, Any] = {"save_all": True, "append_images": images[1:], "duration": duration, "loop": 0}
    if fmt == "gif":
        options["comment"] = description.encode("utf-8")
    else:
        exif = Image.Exif()
        exif[EXIF_DESCRIPTION] = description  # where animated WebP keeps it
        options.update(exif=exif.tobytes(), lossless=True)
    try:
        images[0].save(path, format=fmt.upper(), **options)
    except (OSError, ValueError) as exc:
        raise MediaFileError(f"could not write {path.name}: {exc}") from exc


def read_video_comment(path: Path) -> str:
    """The JSON description stored in a video file written here ('' when it has none)."""
    from engine.embedded import container_comment

    return container_comment(path)
