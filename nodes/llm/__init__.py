"""Text nodes over LLMs (generate, evaluate, edit, chat, embed, describe_image) and their three backends.

Backends live beside the nodes: `ollama_backend` (the Ollama server), `hf_backend` (transformers
in-process) and `openai_backend` (an OpenAI-compatible server), behind `backend.resolve`; what
nodes and backends share (request, reply, the protocol) is in `types`, so imports point one way.
Configuration (privacy, the OpenAI server, default models) is a `config.TextBackends`, built from
the face's settings, that the face gives the engine as its "text" configuration.
"""

from .config import TextBackends
from .evaluate import Evaluate
from .generate import Chat, Edit, Generate
from .media import DescribeImage, Embed

NODES = [Generate, Evaluate, Edit, Chat, Embed, DescribeImage]

__all__ = ["NODES", "Chat", "DescribeImage", "Edit", "Embed", "Evaluate", "Generate", "TextBackends"]
