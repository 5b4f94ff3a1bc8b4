// Start-up and the views: one hash route per view (#endpoints/PATH, #graph, #jobs, #outputs, #models, #products/ID).

import { askToken, connectEvents, get, token } from "./api.js";
import { banner } from "./dom.js";
import { initEndpoints, showEndpoint } from "./endpoints.js";
import { graphShown, initGraph } from "./graph.js";
import { initJobs, refreshJobs } from "./jobs.js";
import { initModels, refreshModels } from "./models.js";
import { initOutputs, refreshOutputs } from "./outputs.js";
import { initProducts, refreshProducts, showProduct } from "./products.js";

const VIEWS = ["endpoints", "graph", "jobs", "outputs", "models", "products"];
let current = null;

function route() {
  const [name, ...rest] = location.hash.replace(/^#/, "").split("/");
  const view = VIEWS.includes(name) ? name : "endpoints";
  const changed = current !== null && view !== current;
  current = view;
  for (const v of VIEWS) document.getElementById(`view-${v}`).hidden = v !== view;
  for (const a of document.querySelectorAll(".tabs a")) {
    if (a.dataset.view === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `flow · ${view}`;
  if (view === "endpoints") showEndpoint(rest.length ? `/${rest.join("/")}` : "");
  if (view === "graph") requestAnimationFrame(graphShown);
  if (view === "jobs") refreshJobs();
  if (view === "outputs") refreshOutputs();
  if (view === "models") refreshModels();
  if (view === "products") (rest.length ? showProduct(rest[0]) : refreshProducts());
  if (changed) document.getElementById(`h-${view}`)?.focus?.();
}

async function start() {
  const visible = (v) => () => current === v;
  const button = document.getElementById("token-button");
  button.addEventListener("click", async () => { await askToken(); location.reload(); });
  button.hidden = !token();
  try {
    // The first API call asks for the token if the gateway needs one; the socket then uses it.
    await get("/endpoints");
  } catch (err) {
    banner(`The gateway did not answer: ${err.message}`);
  }
  initJobs(visible("jobs"));
  initOutputs(visible("outputs"));
  initModels(visible("models"));
  initProducts();
  connectEvents();
  const results = await Promise.allSettled([initEndpoints(), initGraph()]);
  const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason.message);
  if (failed.length) banner(failed.join("; "));
  window.addEventListener("hashchange", route);
  route();
  document.body.dataset.ready = "true"; // the page is built (tests wait for this)
}

start();
