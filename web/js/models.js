// The Models view: the GPU budget in use, loaded models with unload, models on disk, pulls with progress.

import { ApiError, get, onEvent, post } from "./api.js";
import { banner, bytes, fill, h, when } from "./dom.js";
import { loadLocalModels } from "./endpoints.js";
import { jobProgress, watchJob } from "./watch.js";

let timer = null;

function budgetBar(report) {
  const budget = report.budget || 0;
  const torch = (report.models || []).filter((m) => ["device", "gpu", "cuda"].includes(m.place)).reduce((a, m) => a + (m.size || 0), 0);
  const used = Math.max(report.used || 0, torch);
  const ollama = report.ollama_vram || 0;
  const pct = (n) => (budget ? Math.min(100, (100 * n) / budget) : 0);
  const total = used + ollama;
  const label = `GPU budget: ${bytes(total)} of ${bytes(budget)} in use (torch models ${bytes(used)}, Ollama ${bytes(ollama)})`;
  return h("div", { class: "budget-box" },
    h("div", { class: "budget-head" }, h("strong", {}, "GPU budget"), " ",
      h("span", { class: "muted" }, `device ${report.device || "?"}`)),
    h("div", { class: "bar", role: "meter", "aria-label": "GPU budget in use", "aria-valuemin": 0,
      "aria-valuemax": budget, "aria-valuenow": total, "aria-valuetext": label },
    h("span", { class: "seg seg-torch", style: `width:${pct(used)}%` }),
    h("span", { class: "seg seg-ollama", style: `width:${pct(ollama)}%` })),
    h("p", { class: "legend" },
      h("span", { class: "key key-torch" }), ` torch models ${bytes(used)} · `,
      h("span", { class: "key key-ollama" }), ` Ollama ${bytes(ollama)} · free ${bytes(Math.max(0, budget - total))} of ${bytes(budget)}`),
    h("p", { class: "muted" }, `CPU RAM for offloaded models: ${bytes(report.cpu_used)} of ${bytes(report.cpu_budget)}`),
    report.budget_source ? h("p", { class: "muted small" }, report.budget_source) : null);
}

function unloadButton(ref, label) {
  const button = h("button", { type: "button", class: "small danger", "aria-label": label }, "Unload");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try { await post("/models/unload", ref ? { ref } : {}); } catch (err) { banner(err.message); }
    refreshModels();
  });
  return button;
}

function loadedTable(report) {
  const models = report.models || [];
  if (!models.length) return h("p", { class: "muted" }, "No model is loaded.");
  const all = unloadButton(null, "Unload every model");
  all.textContent = "Unload all";
  return h("div", {},
    h("div", { class: "table-wrap" }, h("table", { id: "loaded-table" },
      h("caption", { class: "visually-hidden" }, "Loaded models"),
      h("thead", {}, h("tr", {}, ["Model", "Place", "Size", "In use", "Last used", ""].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, models.map((m) => h("tr", { "data-ref": m.ref },
        h("td", {}, h("code", {}, m.ref), m.variant ? ` (${m.variant})` : "", m.low_memory && m.low_memory.length ? h("span", { class: "muted" }, ` low memory: ${m.low_memory.join(", ")}`) : ""),
        h("td", {}, h("span", { class: `place place-${m.place}` }, m.place)),
        h("td", {}, bytes(m.size)),
        h("td", {}, m.pinned ? "yes" : "no"),
        h("td", {}, when(m.last_used)),
        h("td", {}, unloadButton(m.ref, `Unload ${m.ref}`))))))),
    h("div", { class: "actions" }, all));
}

function localTable(models) {
  if (!models.length) return h("p", { class: "muted" }, "No models on disk yet: pull one above.");
  return h("div", { class: "table-wrap" }, h("table", { id: "local-table" },
    h("caption", { class: "visually-hidden" }, "Models on disk"),
    h("thead", {}, h("tr", {}, ["Model", "Source", "Size", "Location"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, models.map((m) => h("tr", { "data-ref": m.ref },
      h("td", {}, h("code", {}, m.ref)), h("td", {}, m.source), h("td", {}, bytes(m.size)),
      h("td", { class: "path" }, m.location || ""))))));
}

export async function refreshModels() {
  const [loaded, local] = await Promise.allSettled([get("/models/loaded"), get("/models")]);
  if (loaded.status === "fulfilled") {
    fill(document.getElementById("budget"), budgetBar(loaded.value));
    fill(document.getElementById("loaded-models"), loadedTable(loaded.value));
  } else {
    const gone = loaded.reason instanceof ApiError && loaded.reason.status === 404;
    fill(document.getElementById("budget"), h("p", { class: gone ? "muted" : "error" },
      gone ? "This gateway runs without a model manager." : loaded.reason.message));
  }
  if (local.status === "fulfilled") fill(document.getElementById("local-models"), localTable(local.value.models));
}

async function pull(e) {
  e.preventDefault();
  const form = e.currentTarget;
  const ref = form.ref.value.trim();
  const variant = form.variant.value.trim();
  const box = h("div", { class: "pull", "data-ref": ref }, h("strong", {}, ref));
  document.getElementById("pulls").prepend(box);
  let accepted;
  try { accepted = await post("/models/pull", variant ? { ref, variant } : { ref }); } catch (err) {
    box.append(h("p", { class: "error", role: "alert" }, err.message));
    return;
  }
  form.reset();
  const progress = jobProgress(`pull of ${ref}`);
  box.append(progress.element);
  watchJob(accepted.id, {
    onEvent(event) {
      if (event.event === "node.progress" && event.total) {
        progress.element.querySelector("progress").value = event.done / event.total;
        progress.element.querySelector(".progress-text").textContent = `${bytes(event.done)} of ${bytes(event.total)}${event.message ? ` · ${event.message}` : ""}`;
      } else progress.update(event);
    },
    onDone(record) {
      progress.ended(record); // a failure shows on the bar: red, with the error message
      if (!record.error) box.append(h("p", {}, "pulled"));
      refreshModels();
      loadLocalModels();
    },
  });
}

export function initModels(isVisible) {
  document.getElementById("pull-form").addEventListener("submit", pull);
  onEvent((event) => {
    if (isVisible() && (event.event === "job.finished" || event.event === "job.failed" || event.event === "connection.open")) {
      clearTimeout(timer);
      timer = setTimeout(refreshModels, 300);
    }
  });
  // Ollama loads and unloads models on its own: look again now and then while the view is open.
  setInterval(() => { if (isVisible() && !document.hidden) refreshModels(); }, 5000);
}
