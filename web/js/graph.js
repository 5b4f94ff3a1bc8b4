// The Graph view: palette, canvas, inspector, load and save, run with live node states.

import { ApiError, del, get, post, request } from "./api.js";
import { banner, fill, h } from "./dom.js";
import { renderInspector } from "./graph/inspector.js";
import { Graph } from "./graph/model.js";
import { GraphView } from "./graph/view.js";
import { resultView } from "./outputs.js";
import { jobProgress, watchJob } from "./watch.js";

const DRAFT_KEY = "flow.graph";
let graph = null;
let view = null;
let runParams = {};
let running = null; // {id, stop}
const $ = (id) => document.getElementById(id);

function say(text) {
  $("graph-status").textContent = text;
}

function changed(structural) {
  if (structural) {
    view.render();
    inspect();
  } else if (view.selected) view.mark(view.selected, {});
  localStorage.setItem(DRAFT_KEY, JSON.stringify({ doc: graph.toDoc(), params: runParams }));
}

function inspect() {
  renderInspector($("inspector"), graph, view.selected, { view, runParams, onChange: changed });
}

/** Put a node of `type` where the canvas shows free room; select it. */
function addNode(type) {
  if (!graph.catalogue[type]) { say(`unknown node type ${type}`); return; }
  const origin = view.visibleOrigin();
  const n = graph.nodes.size;
  const id = graph.addNode(type, Math.round(origin.x) + 30 + (n % 3) * 280, Math.round(origin.y) + 30 + Math.floor(n / 3) % 3 * 200);
  view.render();
  view.select(id);
  changed(false);
  say(`Added ${id} (${type})`);
  view.layer.querySelector(`.gnode[data-node="${CSS.escape(id)}"]`)?.focus();
}

/** Replace the graph with `doc` (a workflow document); `params` fill its params when it runs. */
export function loadDocument(doc, params = {}) {
  graph.load(doc);
  runParams = { ...params };
  view.marks.clear();
  view.problems.clear();
  view.selected = null;
  changed(true);
  fill($("graph-result"));
  say(`Loaded ${doc.name || "a workflow"} (${graph.nodes.size} nodes)`);
}

/** Open a workflow (e.g. a past job's) in the editor and switch to it. */
export function openInEditor(doc, params = {}) {
  loadDocument(doc, params);
  location.hash = "#graph";
}

function showProblems(problems) {
  view.problems.clear();
  const loose = [];
  for (const p of problems) {
    if (p.node && graph.nodes.has(p.node)) {
      if (!view.problems.has(p.node)) view.problems.set(p.node, []);
      view.problems.get(p.node).push({ input: p.input, message: p.message });
    } else loose.push(p.param ? `param ${p.param}: ${p.message}` : p.message);
  }
  view.render();
  inspect();
  return loose;
}

async function run() {
  if (!graph.nodes.size) { say("Add a node first."); return; }
  view.marks.clear();
  showProblems([]);
  fill($("graph-result"));
  let accepted;
  try {
    accepted = await post("/jobs", { workflow: graph.toDoc(), params: runParams });
  } catch (err) {
    const loose = err instanceof ApiError ? showProblems(err.problems) : [];
    const count = err.problems ? err.problems.length : 0;
    say(count ? `Not run: ${count} problem${count > 1 ? "s" : ""}, shown on the nodes. ${loose.join(" ")}` : `Not run: ${err.message}`);
    return;
  }
  const progress = jobProgress("progress of the graph");
  fill($("graph-status"), progress.element);
  $("graph-cancel").disabled = false;
  $("graph-run").disabled = true;
  const stop = watchJob(accepted.id, {
    onEvent(event) {
      progress.update(event);
      if (!event.node) return;
      if (event.event === "node.started") view.mark(event.node, { state: "running", progress: 0, message: "" });
      if (event.event === "node.progress") view.mark(event.node, { progress: event.total ? event.done / event.total : undefined, message: event.message || "" });
      if (event.event === "node.cached") view.mark(event.node, { state: "cached", progress: undefined });
      if (event.event === "node.finished") view.mark(event.node, { state: "finished", progress: undefined, message: "" });
      if (event.event === "node.failed") view.mark(event.node, { state: "failed", progress: undefined, message: event.message });
    },
    async onDone(record) {
      progress.ended(record);
      running = null;
      $("graph-cancel").disabled = true;
      $("graph-run").disabled = false;
      if (record.state === "cancelled") {
        for (const [id, mark] of view.marks) if (mark.state === "running") view.mark(id, { state: "cancelled", progress: undefined });
      }
      fill($("graph-result"), resultView(record));
    },
  });
  running = { id: accepted.id, stop };
}

async function cancel() {
  if (!running) return;
  $("graph-cancel").disabled = true;
  try { await del(`/jobs/${running.id}`); } catch (err) { say(err.message); }
}

async function loadFile(e) {
  const file = e.target.files[0];
  e.target.value = "";
  if (!file) return;
  try {
    if (/\.json$/i.test(file.name) || file.type === "application/json") {
      const doc = JSON.parse(await file.text());
      if (doc && typeof doc === "object" && doc.nodes) {
        loadDocument(doc);
        return;
      }
      // not a workflow: a <file>.json sidecar, read by the gateway like any saved file
    }
    // Files flow saved carry their workflow: the gateway reads it out (the same reader as `flow run FILE`).
    const found = await request("POST", "/workflows/extract", await file.arrayBuffer(),
      { raw: true, headers: { "Content-Type": "application/octet-stream", "X-Filename": file.name } });
    loadDocument(found.workflow, found.params || {});
    say(`Loaded the workflow embedded in ${file.name}`);
  } catch (err) {
    say(`Could not load ${file.name}: ${err.message}`);
  }
}

function saveFile() {
  const doc = graph.toDoc();
  const blob = new Blob([JSON.stringify(doc, null, 2) + "\n"], { type: "application/json" });
  const a = h("a", { href: URL.createObjectURL(blob), download: `${doc.name || "workflow"}.json` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

async function openSaved() {
  const name = $("graph-saved").value;
  if (!name) return;
  try { loadDocument(await get(`/workflows/${name}`)); } catch (err) { say(err.message); }
  $("graph-saved").value = "";
}

function palette(catalogue) {
  const groups = new Map();
  for (const [type, spec] of Object.entries(catalogue)) {
    const ns = type.split(".")[0];
    if (!groups.has(ns)) groups.set(ns, []);
    groups.get(ns).push([type, spec]);
  }
  fill($("palette"), [...groups].map(([ns, items]) => h("div", { class: "palette-group" }, h("h3", {}, ns),
    h("ul", {}, items.map(([type, spec]) => h("li", {}, h("button", { type: "button", class: "palette-item", "data-type": type,
      title: spec.description, onclick: () => addNode(type) }, type)))))));
  fill($("palette-types"), Object.keys(catalogue).map((t) => h("option", { value: t })));
}

export async function initGraph() {
  const [catalogue, workflows] = await Promise.all([get("/nodes"), get("/workflows").catch(() => [])]);
  graph = new Graph(catalogue);
  view = new GraphView(graph, { canvas: $("canvas"), layer: $("node-layer"), wires: $("wires"),
    onSelect: inspect, onChange: () => changed(false), say,
    onZoom: (zoom) => { $("graph-zoom").textContent = `${Math.round(zoom * 100)}%`; } });
  $("graph-zoom-in").addEventListener("click", () => view.zoomAt(1.2));
  $("graph-zoom-out").addEventListener("click", () => view.zoomAt(1 / 1.2));
  $("graph-fit").addEventListener("click", () => view.fit());
  palette(catalogue);
  for (const wf of workflows) $("graph-saved").append(h("option", { value: wf.name }, wf.name));
  $("graph-add").addEventListener("click", () => { addNode($("palette-search").value.trim()); $("palette-search").value = ""; });
  $("palette-search").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); $("graph-add").click(); } });
  $("graph-run").addEventListener("click", run);
  $("graph-cancel").addEventListener("click", cancel);
  $("graph-load").addEventListener("change", loadFile);
  $("graph-save").addEventListener("click", saveFile);
  $("graph-saved").addEventListener("change", openSaved);
  $("graph-new").addEventListener("click", () => { graph.clear(); runParams = {}; view.marks.clear(); view.problems.clear(); view.selected = null; changed(true); fill($("graph-result")); say("New graph"); });
  window.addEventListener("resize", () => view.drawWires());
  try {
    const draft = JSON.parse(localStorage.getItem(DRAFT_KEY) || "null");
    if (draft && draft.doc && Object.keys(draft.doc.nodes || {}).length) { loadDocument(draft.doc, draft.params); say("Restored your last graph"); return; }
  } catch { banner("The saved draft graph could not be read; starting empty."); }
  view.render();
  inspect();
}

/** Redraw wires once the view is visible (ports have no size while it is hidden). */
export function graphShown() {
  if (view) view.drawWires();
}
