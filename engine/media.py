"""What a media value (IMAGE, MASK, AUDIO, VIDEO) must offer the engine and the faces.

Media values are plain in-memory objects while a graph runs, and files with metadata when
saved. Each media class (beside the nodes that make it) implements this protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from .paths import OutputFiles


@runtime_checkable
class MediaValue(Protocol):
    """The protocol of IMAGE, MASK, AUDIO and VIDEO values."""

    @property
    def nbytes(self) -> int:
        """Bytes held (the output cache's size accounting)."""

    def to_host(self) -> "MediaValue":
        """A copy holding no GPU memory (what the output cache stores)."""

    def write_file(self, files: OutputFiles, prefix: str) -> Path:
        """Save to a new file under the output folder (a face does this for a media output).

        Only for a value no save node of the run wrote: one that did carries its files
        (:func:`engine.saving.saved_files`), and the faces show those instead of a copy.
        """
