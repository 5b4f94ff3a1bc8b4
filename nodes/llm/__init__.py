"""Text nodes over LLMs (generate, evaluate, edit, chat, embed, describe_image) and their three backends.

Backends live beside the nodes: `ollama_backend` (the Ollama server), `hf_backend` (transformers
in-process) and `openai_backend` (an OpenAI-compatible server), behind `backend.resolve`.
Configuration (privacy, the OpenAI server, default models) is a `config.TextBackends` the face
gives the engine as its "text" configuration.
"""

from .config import TextBackends
from .evaluate import Evaluate
from .generate import Chat, Edit, Generate
from .media import DescribeImage, Embed

NODES = [Generate, Evaluate, Edit, Chat, Embed, DescribeImage]

__all__ = ["NODES", "Chat", "DescribeImage", "Edit", "Embed", "Evaluate", "Generate", "TextBackends"]
