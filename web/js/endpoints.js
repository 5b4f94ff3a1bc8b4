// The Endpoints view: one form per saved endpoint, built from the /endpoints request schemas.

import { ApiError, get, post, request, token } from "./api.js";
import { fill, h } from "./dom.js";
import { buildForm, setModelChoices } from "./forms.js";
import { resultView } from "./outputs.js";
import { maskPainter } from "./mask.js";
import { loadPresets, presetPicker } from "./presets.js";
import { jobProgress, watchJob } from "./watch.js";

let endpoints = [];
let localModels = [];

/** Refs of the models on disk (for the model pickers); empty when the gateway has no model routes. */
export async function loadLocalModels() {
  try {
    const body = await get("/models");
    localModels = body.models.map((m) => ({ ref: m.ref, kind: m.kind || null }));
  } catch { localModels = []; }
  setModelChoices(localModels);
  return localModels;
}

export async function initEndpoints() {
  const list = document.getElementById("endpoint-list");
  [endpoints] = await Promise.all([get("/endpoints"), loadLocalModels(), loadPresets()]);
  fill(list, endpoints.map((ep) => h("li", {},
    h("a", { href: `#endpoints${ep.path}`, "data-endpoint": ep.path, title: ep.summary }, ep.path))));
  if (!endpoints.length) fill(document.getElementById("endpoint-form-area"), h("p", {}, "No endpoints: put workflows with an `endpoint` in the workflows folder."));
}

let editor = null; // the image-edit form on screen: {ep, image, imagePath, mask, painter}

/** The endpoint with an image and a mask to paint (image_edit), preferring /image/edit. */
function editEndpoint() {
  const takes = (ep) => ["image", "mask"].every((n) => ep.request?.properties?.[n]?.["x-flow-widget"] === "image");
  return endpoints.find((e) => e.path === "/image/edit" && takes(e)) || endpoints.find(takes) || null;
}

function dataUrlOf(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

/** "Send to edit": open the edit form with the image at `url` (a result's file) as its input. */
async function sendToEdit(url) {
  const ep = editEndpoint();
  if (!ep) return;
  location.hash = `#endpoints${ep.path}`;
  showEndpoint(ep.path);
  const response = await fetch(url, { headers: token() ? { Authorization: `Bearer ${token()}` } : {} });
  if (!response.ok || !editor) return;
  const data = await dataUrlOf(await response.blob());
  editor.imagePath?.set("");
  editor.image.set(data);
  await editor.painter.setImage(data);
}

window.addEventListener("flow:send-to-edit", (e) => { sendToEdit(e.detail.url); });

/** The painter panel of an edit form: upload (POST /inputs) or take the image field's picture, paint the mask. */
function editPanel(form) {
  const named = (n) => form.fields.find((f) => f.name === n);
  const image = named("image");
  const mask = named("mask");
  if (!image || !mask || image.input.tagName !== "TEXTAREA") return null;
  const imagePath = named("image_path");
  const painter = maskPainter({
    async onUpload(file) {
      const stored = await request("POST", "/inputs", file, { raw: true, headers: { "Content-Type": file.type || "application/octet-stream" } });
      if (imagePath) { imagePath.set(stored.ref); image.set(""); } else image.set(await dataUrlOf(file));
      await painter.setImage(URL.createObjectURL(file));
    },
  });
  image.input.addEventListener("input", () => {
    const v = image.input.value.trim();
    if (v.startsWith("data:image/")) painter.setImage(v).catch(() => {});
  });
  return { image, imagePath, mask, painter };
}

/** The endpoint that serves the saved workflow `name` (a job's name), if any. */
export function endpointOf(name) {
  return endpoints.find((e) => e.workflow === name) || null;
}

/** Show the form of the endpoint at `path` (the first one when empty or unknown). */
export function showEndpoint(path) {
  const ep = endpoints.find((e) => e.path === path) || endpoints[0];
  if (!ep) return;
  for (const a of document.querySelectorAll("#endpoint-list a")) {
    if (a.dataset.endpoint === ep.path) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const area = document.getElementById("endpoint-form-area");
  if (area.dataset.endpoint === ep.path) return;
  area.dataset.endpoint = ep.path;
  fill(area, endpointForm(ep));
}

function endpointForm(ep) {
  const form = buildForm(ep.request);
  const presets = presetPicker(ep, form); // null when no preset belongs to this endpoint
  const panel = editPanel(form);
  editor = panel ? { ep, ...panel } : null;
  const id = `ep-${ep.workflow.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  const message = h("p", { class: "error", role: "alert" });
  const status = h("div", { class: "run-status", role: "status", "aria-live": "polite" });
  const result = h("div", { class: "result", "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "primary" }, "Run");
  const outputs = Object.entries(ep.outputs || {}).map(([n, t]) => `${n} (${t})`).join(", ");
  const el = h("form", { class: "endpoint-form", id, "aria-labelledby": `${id}-title`, novalidate: false },
    h("h3", { id: `${id}-title` }, h("code", {}, `POST ${ep.path}`)),
    h("p", {}, ep.description || ep.summary),
    outputs ? h("p", { class: "muted" }, `Returns: ${outputs}`) : null,
    panel ? panel.painter.element : null,
    presets ? presets.element : null,
    form.element,
    h("div", { class: "actions" }, submit),
    message, status, result);

  el.addEventListener("submit", async (e) => {
    e.preventDefault();
    form.clearErrors();
    message.textContent = "";
    fill(result);
    submit.disabled = true;
    let accepted;
    if (panel) {
      // the painted mask is sent; once cleared, the mask sent before is not sent again
      if (panel.painter.hasMask()) panel.mask.set(panel.sent = panel.painter.maskDataURL());
      else if (panel.sent && panel.mask.get() === panel.sent) panel.mask.set("");
    }
    try {
      accepted = await post(`${ep.path}?wait=false`, presets ? presets.body(form.values()) : form.values());
    } catch (err) {
      submit.disabled = false;
      showProblems(err, form, message);
      return;
    }
    const progress = jobProgress(`progress of ${ep.path}`);
    fill(status, progress.element);
    watchJob(accepted.id, {
      onEvent: progress.update,
      onDone(record) {
        progress.ended(record);
        submit.disabled = false;
        fill(result, resultView(record));
      },
    });
  });
  return el;
}

/** Put each problem of a refused request on the field it names; the rest in `message`. */
function showProblems(err, form, message) {
  const rest = [];
  const problems = err instanceof ApiError ? err.problems : [];
  for (const p of problems) {
    const field = form.fields.find((f) => f.name === p.param);
    if (field) field.error(p.message);
    else rest.push(p.param ? `${p.param}: ${p.message}` : p.message);
  }
  message.textContent = problems.length ? rest.join("\n") : err.message;
  const first = form.fields.find((f) => f.element.classList.contains("has-error"));
  if (first) first.input.focus();
}
