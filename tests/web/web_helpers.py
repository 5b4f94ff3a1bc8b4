"""What the web tests share: opening the page, screenshots, adding nodes, dragging, the inspector."""

from __future__ import annotations

from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TINY = "tiny-sd"  # the tiny Stable Diffusion folder under the models root


def shot(page, name: str) -> Path:
    """Keep a screenshot under tests/web/artifacts/ (a test artifact, gitignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def open_page(page, server, view: str = ""):
    """Load the page and wait until it has built itself."""
    page.goto(f"{server.url}/{'#' + view if view else ''}")
    page.wait_for_selector("body[data-ready]")
    return page


def node(page, node_id: str):
    """The box of node ``node_id`` on the canvas."""
    return page.locator(f'.gnode[data-node="{node_id}"]')


def add_node(page, type_id: str, node_id: str):
    """Click the node type in the palette; the new node appears on the canvas."""
    page.locator(f'.palette-item[data-type="{type_id}"]').click()
    node(page, node_id).wait_for()
    return node(page, node_id)


def drag(page, source, target=None, *, by=(0, 0)):
    """Press on ``source``, move in steps (onto ``target``'s centre, or by an offset), release."""
    box = source.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    if target is not None:
        tb = target.bounding_box()
        to = (tb["x"] + tb["width"] / 2, tb["y"] + tb["height"] / 2)
    else:
        to = (x + by[0], y + by[1])
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move((x + to[0]) / 2, (y + to[1]) / 2, steps=5)
    page.mouse.move(*to, steps=5)
    page.mouse.up()


def connect(page, src: str, output: str, dst: str, input_: str):
    """Drag a wire from an output port to an input port."""
    drag(page, page.locator(f'.port.out[data-node="{src}"][data-output="{output}"]'),
         page.locator(f'.port.in[data-node="{dst}"][data-input="{input_}"]'))


def field(page, name: str):
    """The input, select or textarea of field ``name`` in the inspector."""
    return page.locator(f'#inspector [data-field="{name}"]').locator("input, select, textarea").first


def select_node(page, node_id: str):
    node(page, node_id).locator(".gnode-title").click()
    page.locator("#inspector h3", has_text=node_id).wait_for()


def no_horizontal_overflow(page) -> bool:
    """Whether the page fits its viewport's width (nothing to scroll sideways)."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
