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
    update(event) {
      switch (event.event) {
        case "job.queued": bar.set(null, `queued (position ${event.position})`); return;
        case "job.started": total = event.to_run || 0; done = 0; break;
        case "node.started": current = event.node; step = 0; break;
        case "node.progress":
          if (event.total) step = event.done / event.total;
          current = event.node + (event.message ? `: ${event.message}` : "");
          break;
        case "node.finished": case "node.failed": done += 1; step = 0; break;
        case "job.finished": bar.set(1, "finished"); return;
        case "job.failed": bar.set(done / (total || 1), "failed"); return;
        case "job.cancelled": bar.set(done / (total || 1), "cancelled"); return;
        default: return;
      }
      const fraction = total ? Math.min(1, (done + step) / total) : null;
      bar.set(fraction, `${done}/${total} nodes${current ? ` · ${current}` : ""}`);
    },
  };
}
