// The Jobs view: queue and history with live state and progress, cancel, and a job's details.

import { del, get, onEvent, post } from "./api.js";
import { badge, banner, fill, h, progressBar, seconds, when } from "./dom.js";
import { endpointOf } from "./endpoints.js";
import { openInEditor } from "./graph.js";
import { resultView } from "./outputs.js";
import { stepText, watchJob } from "./watch.js";

const live = new Map(); // job id -> {total, done, node} from events, for the progress column
let next = null;
let timer = null;

function track(event) {
  if (!event.job_id) return;
  const p = live.get(event.job_id) || { total: 0, done: 0, node: "" };
  if (event.event === "job.started") p.total = event.to_run;
  if (event.event === "node.started") p.node = event.node;
  if (event.event === "node.progress") { p.node = stepText(event); p.step = event.total ? event.done / event.total : 0; }
  if (event.event === "node.finished" || event.event === "node.failed") { p.done += 1; p.step = 0; }
  live.set(event.job_id, p);
  if (live.size > 500) live.delete(live.keys().next().value);
}

// Ended jobs hidden from the list in this browser (the gateway keeps them: DELETE /jobs/{id} cancels).
const HIDDEN_KEY = "flow.hiddenJobs";
const ACTIVE = new Set(["queued", "running"]);

function hiddenJobs() {
  try { return new Set(JSON.parse(localStorage.getItem(HIDDEN_KEY) || "[]")); } catch { return new Set(); }
}

function setHidden(ids) {
  localStorage.setItem(HIDDEN_KEY, JSON.stringify([...ids].slice(-1000)));
}

/** The start of a job's prompt: its `prompt` param, else its first text param. */
export function promptOf(params) {
  if (!params || typeof params !== "object") return "";
  const text = typeof params.prompt === "string" && params.prompt ? params.prompt
    : Object.values(params).find((v) => typeof v === "string" && v.trim() !== "") || "";
  return text.length > 60 ? `${text.slice(0, 59)}…` : text;
}

/** Run an ended job again: the same params to the same endpoint, or the same workflow to /jobs. */
async function rerun(job) {
  const ep = endpointOf(job.name);
  let accepted;
  if (ep) accepted = await post(`${ep.path}?wait=false`, job.params || {});
  else {
    const full = job.workflow ? job : await get(`/jobs/${job.id}?include=workflow`);
    if (!full.workflow) throw new Error(`job ${job.id.slice(0, 8)} kept no workflow to run again`);
    accepted = await post("/jobs", { workflow: full.workflow, params: full.params || {} });
  }
  await refreshJobs();
  showJob(accepted.id);
  // Its details show once it ends (while the person has not opened another job).
  watchJob(accepted.id, {
    onDone() {
      const shown = document.querySelector("#job-detail .result-body");
      if (shown && shown.dataset.job === accepted.id) showJob(accepted.id);
    },
  });
}

async function editJob(job) {
  const full = job.workflow ? job : await get(`/jobs/${job.id}?include=workflow`);
  if (!full.workflow) throw new Error(`job ${job.id.slice(0, 8)} kept no workflow`);
  openInEditor(full.workflow, full.params || {});
}

function action(label, aria, run, cls = "small") {
  const button = h("button", { type: "button", class: cls, "aria-label": aria }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try { await run(); } catch (err) { banner(err.message); }
    button.disabled = false;
  });
  return button;
}

function row(job) {
  const cells = [];
  const ep = endpointOf(job.name);
  const prompt = promptOf(job.params);
  cells.push(h("td", { class: "job-name" },
    h("strong", {}, job.name || "job"), ep ? h("span", { class: "muted" }, ` ${ep.path}`) : null, " ",
    h("code", { class: "muted job-id", title: job.id }, job.id.slice(0, 8)),
    prompt ? h("div", { class: "job-prompt", title: typeof job.params.prompt === "string" ? job.params.prompt : prompt }, prompt) : null));
  cells.push(h("td", {}, badge(job.state)));
  const p = live.get(job.id);
  const cell = h("td", { class: "progress-cell" });
  if (job.state === "running" && p) {
    const bar = progressBar(`progress of job ${job.id}`);
    bar.set(p.total ? Math.min(1, (p.done + (p.step || 0)) / p.total) : null, `${p.done}/${p.total} nodes${p.node ? ` · ${p.node}` : ""}`);
    cell.append(bar.element);
  } else if (job.state === "queued") {
    cell.textContent = job.position ? `position ${job.position}` : "waiting";
  } else if (job.state === "finished") {
    cell.textContent = "done";
  } else if (job.state === "failed" && job.error) {
    const message = job.error.message || job.error.type || "failed";
    cell.append(h("span", { class: "error job-row-error", title: message }, message.length > 90 ? `${message.slice(0, 89)}…` : message));
  }
  cells.push(cell);
  cells.push(h("td", {}, when(job.created)));
  cells.push(h("td", {}, seconds(job.duration)));
  const actions = h("td", { class: "job-actions" });
  const label = `${job.name || "job"} ${job.id}`;
  actions.append(action("Open", `Open job ${label}`, () => showJob(job.id)));
  if (!ACTIVE.has(job.state)) {
    actions.append(action("Re-run", `Re-run job ${label}`, () => rerun(job)),
      action("Edit", `Edit job ${label} in the graph editor`, () => editJob(job)),
      action("Hide", `Hide job ${label} from this list`, () => {
        const ids = hiddenJobs();
        ids.add(job.id);
        setHidden(ids);
        refreshJobs();
      }));
  }
  if (ACTIVE.has(job.state)) {
    const cancel = h("button", { type: "button", class: "small danger", "aria-label": `Cancel job ${job.name} ${job.id}` }, "Cancel");
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      try { await del(`/jobs/${job.id}`); } catch (err) { banner(err.message); }
      refreshJobs();
    });
    actions.append(cancel);
  }
  return h("tr", { "data-job": job.id, "data-state": job.state }, cells, actions);
}

export async function refreshJobs() {
  let page;
  try { page = await get("/jobs?limit=50"); } catch (err) { banner(err.message); return; }
  const body = document.querySelector("#job-table tbody");
  const hidden = hiddenJobs();
  const jobs = page.jobs.filter((job) => !hidden.has(job.id));
  fill(body, jobs.length ? jobs.map(row) : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No jobs yet.")));
  const counts = Object.entries(page.counts || {}).map(([s, n]) => `${n} ${s}`).join(" · ");
  const shown = h("button", { type: "button", class: "small link", id: "jobs-unhide" }, `show ${hidden.size} hidden`);
  shown.addEventListener("click", () => { localStorage.removeItem(HIDDEN_KEY); refreshJobs(); });
  fill(document.getElementById("job-counts"), counts, hidden.size ? [" · ", shown] : null);
  next = page.next || null;
  document.getElementById("jobs-more").hidden = !next;
}

async function more() {
  if (!next) return;
  const page = await get(next);
  const hidden = hiddenJobs();
  document.querySelector("#job-table tbody").append(...page.jobs.filter((job) => !hidden.has(job.id)).map(row));
  next = page.next || null;
  document.getElementById("jobs-more").hidden = !next;
}

/** Details of one job: its result or error, and its workflow (open it in the editor, or download it). */
export async function showJob(id) {
  const pane = document.getElementById("job-detail");
  let job;
  try { job = await get(`/jobs/${id}?include=workflow`); } catch (err) { fill(pane, h("p", { class: "error" }, err.message)); return; }
  const actions = h("div", { class: "actions" });
  if (job.workflow) {
    const open = h("button", { type: "button" }, "Open workflow in the graph editor");
    open.addEventListener("click", () => openInEditor(job.workflow, job.params));
    const blob = new Blob([JSON.stringify(job.workflow, null, 2)], { type: "application/json" });
    actions.append(open, h("a", { href: URL.createObjectURL(blob), download: `${job.name || "workflow"}.json`, class: "button" }, "Download workflow JSON"));
  }
  fill(pane, h("h3", {}, `Job ${job.name || ""}`), resultView(job), actions);
  pane.focus();
}

export function initJobs(isVisible) {
  document.getElementById("jobs-more").addEventListener("click", more);
  onEvent((event) => {
    track(event);
    if (!isVisible() || event.event === "node.progress" && timer) return;
    clearTimeout(timer);
    timer = setTimeout(() => { timer = null; refreshJobs(); }, 200);
  });
}
