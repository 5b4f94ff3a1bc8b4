"""Every node flow ships, listed explicitly (code is listed, never discovered by scanning)."""

from engine import Registry

from . import data, image, llm, models, music, primitives, text, video, web

NODES = [
    primitives.Text, primitives.Int, primitives.Float, primitives.Bool, primitives.Json,
    text.Template, text.Join, text.Save,
    data.Get, data.Save,
    models.Pull,
    music.Generate, music.Save,
    video.Generate, video.Save, video.Mux,
    llm.Generate, llm.Evaluate, llm.Edit, llm.Chat, llm.Embed, llm.DescribeImage, llm.media.Converse,
    llm.media.DescribeProduct,
    image.Generate, image.Edit, image.Load, image.Save, image.Upscale,
    web.Extract,
]


def registry() -> Registry:
    """The registry of every node above; raises on a duplicate type."""
    return Registry(NODES)
