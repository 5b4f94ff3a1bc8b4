// The Jobs view: queue and history with live state and progress, cancel, and a job's details.

import { del, get, onEvent } from "./api.js";
import { badge, banner, fill, h, progressBar, seconds, when } from "./dom.js";
import { openInEditor } from "./graph.js";
import { resultView } from "./outputs.js";

const live = new Map(); // job id -> {total, done, node} from events, for the progress column
let next = null;
let timer = null;

function track(event) {
  if (!event.job_id) return;
  const p = live.get(event.job_id) || { total: 0, done: 0, node: "" };
  if (event.event === "job.started") p.total = event.to_run;
  if (event.event === "node.started") p.node = event.node;
  if (event.event === "node.progress" && event.total) p.node = `${event.node} ${Math.round((100 * event.done) / event.total)}%`;
  if (event.event === "node.finished" || event.event === "node.failed") p.done += 1;
  live.set(event.job_id, p);
  if (live.size > 500) live.delete(live.keys().next().value);
}

function row(job) {
  const cells = [];
  const open = h("button", { type: "button", class: "small link", "aria-label": `Open job ${job.name} ${job.id}` }, job.name || job.id.slice(0, 8));
  open.addEventListener("click", () => showJob(job.id));
  cells.push(h("td", {}, open));
  cells.push(h("td", {}, badge(job.state)));
  const p = live.get(job.id);
  const cell = h("td", { class: "progress-cell" });
  if (job.state === "running" && p) {
    const bar = progressBar(`progress of job ${job.id}`);
    bar.set(p.total ? p.done / p.total : null, `${p.done}/${p.total} ${p.node}`);
    cell.append(bar.element);
  } else if (job.state === "queued") {
    cell.textContent = job.position ? `position ${job.position}` : "waiting";
  } else if (job.state === "finished") {
    cell.textContent = "done";
  }
  cells.push(cell);
  cells.push(h("td", {}, when(job.created)));
  cells.push(h("td", {}, seconds(job.duration)));
  const actions = h("td", {});
  if (job.state === "queued" || job.state === "running") {
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
  fill(body, page.jobs.length ? page.jobs.map(row) : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No jobs yet.")));
  const counts = Object.entries(page.counts || {}).map(([s, n]) => `${n} ${s}`).join(" · ");
  document.getElementById("job-counts").textContent = counts;
  next = page.next || null;
  document.getElementById("jobs-more").hidden = !next;
}

async function more() {
  if (!next) return;
  const page = await get(next);
  document.querySelector("#job-table tbody").append(...page.jobs.map(row));
  next = page.next || null;
  document.getElementById("jobs-more").hidden = !next;
}

/** Details of one job: its result or error, and its workflow (open it in the editor, or download it). */
export async function showJob(id) {
  const pane = document.getElementById("job-detail");
  let job;
  try { job = await get(`/jobs/${id}`); } catch (err) { fill(pane, h("p", { class: "error" }, err.message)); return; }
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
