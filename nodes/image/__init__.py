"""Image nodes (diffusers): generate, edit, load and save; IMAGE and MASK values live in `values`."""

from .diffuse import Edit, Generate
from .files import Load, Save

__all__ = ["Edit", "Generate", "Load", "Save"]
