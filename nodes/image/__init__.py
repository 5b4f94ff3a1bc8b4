"""Image nodes (diffusers): generate, edit, load and save; IMAGE and MASK values live in `values`."""

from .diffuse import Edit, Generate
from .files import Load, Save
from .upscale import Upscale

__all__ = ["Edit", "Generate", "Load", "Save", "Upscale"]
