// Following one job to its end: live events (replayed from the start), with polling as a fallback.

import { eventsOf, get, onEvent } from "./api.js";
import { progressBar } from "./dom.js";

const TERMINAL = new Set(["job.finished", "job.failed", "job.cancelled"]);
const ENDED = new Set(["finished", "failed", "cancelled", "interrupted"]);

/**
 * Follow job `id`: `onEvent(event)` for each of its events, then `onDone(record)` with the job as
 * `GET /jobs/{id}` answers it. Returns a function that stops following.
 */
export function watchJob(id, { onEvent: each = () => {}, onDone = () => {} } = {}) {
  let finished = false;
  const finish = async () => {
    if (finished) return;
    finished = true;
    stop();
    clearInterval(poll);
    try { onDone(await get(`/jobs/${id}`)); } catch (err) { onDone({ id, state: "failed", error: { message: err.message } }); }
  };
  const handle = (event) => {
    if (event.job_id !== id || finished) return;
    each(event);
    if (TERMINAL.has(event.event)) finish();
  };
  // If the socket was down when the job ended, the state still arrives.
  const poll = setInterval(async () => {
    try {
      const record = await get(`/jobs/${id}`);
      if (ENDED.has(record.state)) finish();
    } catch { /* the next tick tries again */ }
  }, 2000);
  const stop = onEvent(handle);
  for (const event of eventsOf(id)) handle(event);
  return () => { finished = true; stop(); clearInterval(poll); };
}

const count = (n) => (Number.isInteger(n) ? String(n) : String(Math.round(n * 10) / 10));

/** A node.progress event as words: `gen: 12/64 tokens (19%)` (`gen: 12 tokens` without a total). */
export function stepText(event) {
  const unit = event.message ? ` ${event.message}` : "";
  if (event.total) {
    const pct = Math.round((100 * event.done) / event.total);
    return `${event.node}: ${count(event.done)}/${count(event.total)}${unit} (${pct}%)`;
  }
  return `${event.node}: ${event.done ? count(event.done) : ""}${unit}`.replace(/: $/, "");
}

/** Progress of a job from its events: nodes done of nodes to run, plus the running node's own steps. */
export function jobProgress(label) {
  const bar = progressBar(label);
  let total = 0;
  let done = 0;
  let current = null;
  let step = 0;
  bar.set(null, "queued");
  return {
    element: bar.element,
    /** The job ended as `record` says (for a job whose terminal event was missed: polling found it). */
    ended(record) {
      if (record.state === "failed") bar.state("failed", `failed${record.error && record.error.message ? `: ${record.error.message}` : ""}`);
      else if (record.state === "cancelled" || record.state === "interrupted") bar.state(record.state, record.state);
      else if (record.state === "finished") { bar.set(1, "finished"); bar.state("finished"); }
    },
    update(event) {
      switch (event.event) {
        case "job.queued": bar.set(null, `queued (position ${event.position})`); return;
        case "job.started": total = event.to_run || 0; done = 0; break;
        case "node.started": current = event.node; step = 0; break;
        case "node.progress":
          if (event.total) step = event.done / event.total;
          current = stepText(event);
          break;
        case "node.finished": done += 1; step = 0; break;
        case "node.failed": step = 0; break; // a failed node is not done: the bar stays where it was
        case "job.finished": bar.set(1, "finished"); bar.state("finished"); return;
        case "job.failed": bar.state("failed", `failed${event.message ? `: ${event.message}` : ""}`); return;
        case "job.cancelled": bar.state("cancelled", "cancelled"); return;
        default: return;
      }
      const fraction = total ? Math.min(1, (done + step) / total) : null;
      bar.set(fraction, `${done}/${total} nodes${current ? ` · ${current}` : ""}`);
    },
  };
}
