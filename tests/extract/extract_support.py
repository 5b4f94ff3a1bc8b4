"""What the extraction tests share besides fixtures (a module of its own: `conftest` names clash across folders)."""

MODEL = "ollama:tiny:latest"  # the fake Ollama's model (the tiny Llama); it answers images and schemas too
