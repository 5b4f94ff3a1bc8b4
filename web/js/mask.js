// The mask painter of the image-edit form: the input image with a canvas over it; paint (or erase)
// where the edit may repaint, with a brush size, clear and invert. The mask goes out as a black and
// white PNG of the image's own size (white = repaint), the convention image.load's mask reads.

import { h } from "./dom.js";

const SHOWN = "rgb(255, 40, 40)"; // painted areas: opaque on the canvas, see-through by its CSS opacity

/**
 * A mask painter. Returns {element, setImage(src) -> Promise, hasImage(), hasMask(), maskDataURL(),
 * clear(), invert()}. `onUpload(file)` is called when the user picks a file in the painter.
 */
export function maskPainter({ onUpload } = {}) {
  const picture = h("img", { class: "mask-picture", alt: "the image to edit" });
  const canvas = h("canvas", { class: "mask-canvas", "aria-label": "mask: paint where the edit may repaint" });
  const stage = h("div", { class: "mask-stage", hidden: true }, picture, canvas);
  const size = h("input", { type: "range", min: 1, max: 128, value: 24, "aria-label": "brush size" });
  const paint = h("input", { type: "radio", name: `mask-tool-${Math.random().toString(36).slice(2)}`, value: "paint", checked: true });
  const erase = h("input", { type: "radio", name: paint.name, value: "erase" });
  const clearButton = h("button", { type: "button", class: "small" }, "Clear mask");
  const invertButton = h("button", { type: "button", class: "small" }, "Invert mask");
  const upload = h("input", { type: "file", accept: "image/png,image/jpeg,image/webp,image/gif", "aria-label": "upload an image to edit" });
  const note = h("small", { class: "help" }, "Pick or send an image, then paint the area to repaint (none: the whole image changes).");
  const tools = h("div", { class: "mask-tools", hidden: true },
    h("label", {}, paint, " paint"), h("label", {}, erase, " erase"),
    h("label", {}, "brush ", size), clearButton, invertButton);
  const element = h("fieldset", { class: "mask-painter" }, h("legend", {}, "Image and mask"),
    h("label", {}, "Upload image ", upload), note, tools, stage);
  const ctx = canvas.getContext("2d");
  let drawing = false;
  let last = null;
  let painted = false;

  upload.addEventListener("change", () => {
    const file = upload.files[0];
    if (file && onUpload) onUpload(file);
  });

  function at(event) {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * (canvas.width / box.width), (event.clientY - box.top) * (canvas.height / box.height)];
  }

  function stroke(from, to) {
    const scale = canvas.width / Math.max(1, canvas.getBoundingClientRect().width);
    ctx.globalCompositeOperation = erase.checked ? "destination-out" : "source-over";
    ctx.strokeStyle = ctx.fillStyle = SHOWN;
    ctx.lineWidth = Number(size.value) * scale;
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(...from);
    ctx.lineTo(...to);
    ctx.stroke();
    ctx.beginPath();
    ctx.arc(...to, ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fill();
    painted = true;
  }

  canvas.addEventListener("pointerdown", (e) => {
    drawing = true;
    canvas.setPointerCapture?.(e.pointerId);
    last = at(e);
    stroke(last, last);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    const point = at(e);
    stroke(last, point);
    last = point;
  });
  for (const end of ["pointerup", "pointercancel", "pointerleave"]) canvas.addEventListener(end, () => { drawing = false; });

  function clear() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    painted = false;
  }

  function invert() {
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const px = data.data;
    for (let i = 0; i < px.length; i += 4) {
      const on = px[i + 3] >= 128;
      px[i] = 255; px[i + 1] = 40; px[i + 2] = 40;
      px[i + 3] = on ? 0 : 255;
    }
    ctx.putImageData(data, 0, 0);
    painted = true;
  }
  clearButton.addEventListener("click", clear);
  invertButton.addEventListener("click", invert);

  function hasMask() {
    if (!painted || !canvas.width) return false;
    const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < px.length; i += 4) if (px[i] >= 128) return true;
    return false;
  }

  /** The mask as a PNG data URL, the image's size: opaque white where painted, opaque black elsewhere
   *  (image.load's "white = repaint"; a canvas cannot keep colour under transparency). */
  function maskDataURL() {
    const out = h("canvas");
    out.width = canvas.width;
    out.height = canvas.height;
    const octx = out.getContext("2d");
    const src = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const dst = octx.createImageData(canvas.width, canvas.height);
    for (let i = 0; i < src.data.length; i += 4) {
      const v = src.data[i + 3] >= 128 ? 255 : 0; // the brush's soft edge: in at half opacity
      dst.data[i] = dst.data[i + 1] = dst.data[i + 2] = v;
      dst.data[i + 3] = 255;
    }
    octx.putImageData(dst, 0, 0);
    return out.toDataURL("image/png");
  }

  /** Show `src` (a data, blob or file URL) and size the mask to it; a new image clears the mask. */
  function setImage(src) {
    return new Promise((resolve, reject) => {
      picture.onload = () => {
        canvas.width = picture.naturalWidth;
        canvas.height = picture.naturalHeight;
        clear();
        stage.hidden = tools.hidden = false;
        element.dataset.loaded = "true";
        resolve();
      };
      picture.onerror = () => reject(new Error("the image cannot be shown"));
      picture.src = src;
    });
  }

  return { element, setImage, hasImage: () => element.dataset.loaded === "true", hasMask, maskDataURL, clear, invert };
}
