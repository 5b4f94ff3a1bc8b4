// The Endpoints view: one form per saved endpoint, built from the /endpoints request schemas.

import { ApiError, get, post } from "./api.js";
import { fill, h } from "./dom.js";
import { buildForm, setModelChoices } from "./forms.js";
import { resultView } from "./outputs.js";
import { jobProgress, watchJob } from "./watch.js";

let endpoints = [];
let localModels = [];

/** Refs of the models on disk (for the model pickers); empty when the gateway has no model routes. */
export async function loadLocalModels() {
  try {
    const body = await get("/models");
    localModels = body.models.map((m) => m.ref);
  } catch { localModels = []; }
  setModelChoices(localModels);
  return localModels;
}

export async function initEndpoints() {
  const list = document.getElementById("endpoint-list");
  [endpoints] = await Promise.all([get("/endpoints"), loadLocalModels()]);
  fill(list, endpoints.map((ep) => h("li", {},
    h("a", { href: `#endpoints${ep.path}`, "data-endpoint": ep.path, title: ep.summary }, ep.path))));
  if (!endpoints.length) fill(document.getElementById("endpoint-form-area"), h("p", {}, "No endpoints: put workflows with an `endpoint` in the workflows folder."));
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
    try {
      accepted = await post(`${ep.path}?wait=false`, form.values());
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
