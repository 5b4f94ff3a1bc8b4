"""Upscaling: `image.upscale` makes images larger with Lanczos resampling (no model to load).

The hires recipe (workflows/image_hires.json) is generate small, upscale, then an img2img refine
that puts detail back; the refine is what a learned upscaler would add, so no ESRGAN loader is
bundled (spandrel, the maintained one, pulls torchvision, which this project does not pin).
PIL is imported inside the function that uses it.
"""

from __future__ import annotations

from engine import FLOAT, IMAGE, INT, TEXT, Input, InvalidInput, Node, Output

from .values import Images, recipe_of

#: the largest image the node makes (width x height), as image.load accepts
MAX_PIXELS = 4096 * 4096


class Upscale(Node):
    """Make images larger (Lanczos resampling), e.g. before an img2img refine at the higher resolution."""

    type = "image.upscale"
    inputs = {
        "images": Input(IMAGE, "the images to upscale"),
        "scale": Input(FLOAT, "how much larger: 2 doubles the width and the height", default=2.0, minimum=1,
                       maximum=8),
        "method": Input(TEXT, "lanczos: resampling, no model", default="lanczos", enum=["lanczos"]),
        "multiple_of": Input(INT, "round the new sides down to a multiple of this (8 for a diffusion refine)",
                             default=8, minimum=1, maximum=64),
    }
    outputs = {"images": Output(IMAGE, "the larger images")}

    def run(self, ctx, images, scale, method, multiple_of):
        from PIL import Image

        if images is None:
            raise InvalidInput("images", "no image was given; link an IMAGE to upscale")
        width, height = images.size
        new = (int(width * scale) // multiple_of * multiple_of, int(height * scale) // multiple_of * multiple_of)
        if new[0] * new[1] > MAX_PIXELS:
            raise InvalidInput("scale", f"{width}x{height} x {scale:g} is {new[0]}x{new[1]}, more than {MAX_PIXELS} "
                                        "pixels; use a smaller scale")
        if min(new) < 1:
            raise InvalidInput("multiple_of", f"{width}x{height} x {scale:g} rounded to multiples of {multiple_of} "
                                              "is empty; use a smaller multiple_of")
        larger = tuple(picture.resize(new, Image.Resampling.LANCZOS) for picture in images.images)
        literals = {"scale": scale, "method": method, "multiple_of": multiple_of}
        params = tuple({**images.params[i], "upscale": {"scale": scale, "method": method},
                        "width": new[0], "height": new[1]} for i in range(len(larger)))
        recipes = tuple(recipe_of(ctx.node_id, self.type, literals, "images", {"images": images.recipes[i]})
                        for i in range(len(larger)))
        return {"images": Images(larger, params, recipes)}
