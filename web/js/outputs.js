// Showing results: images, audio and video with players, text with copy, seeds and parameters.

import { get, onEvent, setFileUrl } from "./api.js";
import { badge, fill, h, seconds, when } from "./dom.js";

const IMAGE = /\.(png|jpe?g|webp|gif|bmp)$/i;
const AUDIO = /\.(wav|flac|ogg|mp3|m4a)$/i;
const VIDEO = /\.(mp4|webm|mov)$/i;

/** The kind of a file URL: image, audio, video or file. */
export function mediaKind(url) {
  const path = url.split("?")[0];
  if (IMAGE.test(path)) return "image";
  if (AUDIO.test(path)) return "audio";
  if (VIDEO.test(path)) return "video";
  return "file";
}

function copyButton(text, what) {
  const button = h("button", { type: "button", class: "small", "aria-label": `Copy ${what}` }, "Copy");
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      // Clipboard access needs a secure context; select the text instead so Ctrl+C works.
      const range = document.createRange();
      range.selectNodeContents(button.parentElement.parentElement.querySelector("pre"));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      button.textContent = "Selected";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });
  return button;
}

/** One file: the player or picture, and a download link. */
export function mediaView(url, name) {
  const kind = mediaKind(url);
  const file = url.split("/").pop();
  let media = null;
  if (kind === "image") media = h("img", { alt: `${name}: ${file}`, loading: "lazy" });
  if (kind === "audio") media = h("audio", { controls: true, preload: "metadata", "aria-label": `${name}: ${file}` });
  if (kind === "video") media = h("video", { controls: true, preload: "metadata", "aria-label": `${name}: ${file}` });
  const link = h("a", { download: file, class: "download" }, `Download ${file}`);
  if (media) setFileUrl(media, "src", url);
  setFileUrl(link, "href", url);
  // An image can be edited next: the edit form (endpoints.js) listens for this event.
  const send = kind === "image" ? h("button", { type: "button", class: "small send-to-edit" }, "Send to edit") : null;
  send?.addEventListener("click", () => window.dispatchEvent(new CustomEvent("flow:send-to-edit", { detail: { url } })));
  return h("div", { class: `media media-${kind}` }, media, link, send);
}

/**
 * A job's outputs as [{name, urls, value}]: media and saved files get the URLs the gateway gives in
 * `files` (a batch, or a list of saved paths, several); a file already shown by another output is not shown twice: a media
 * output (`record.media`) shows its files, then the others add only what is new.
 */
export function outputsOf(record) {
  const outputs = record.outputs && typeof record.outputs === "object" ? record.outputs : {};
  const files = record.files || {};
  const items = Object.entries(outputs).map(([name, value]) => {
    let urls = [];
    const isFile = (v) => v && typeof v === "object" && typeof v.url === "string";
    if (files[name]) urls = Array.isArray(files[name]) ? files[name] : [files[name]];
    else if (isFile(value)) urls = [value.url];
    else if (Array.isArray(value) && value.length && value.every(isFile)) urls = value.map((v) => v.url);
    return { name, value, urls };
  });
  const shown = new Set();
  const kept = new Map();
  // Media outputs first (a batch is one list), then single files, so that an output repeating
  // them adds only what is new; shown in their own order.
  const media = new Set(Array.isArray(record.media) ? record.media : []);
  const rank = (item) => (media.has(item.name) ? 0 : item.urls.length === 1 && !Array.isArray(item.value) ? 1 : 2);
  for (const item of [...items].sort((a, b) => rank(a) - rank(b))) {
    if (!item.urls.length) { kept.set(item.name, item); continue; }
    const fresh = item.urls.filter((u) => !shown.has(u));
    fresh.forEach((u) => shown.add(u));
    if (fresh.length) kept.set(item.name, { ...item, urls: fresh });
  }
  return items.filter((item) => kept.has(item.name)).map((item) => kept.get(item.name));
}

/** One named output: its files (pictures and players), or its text with a copy button. */
export function outputView({ name, value, urls }) {
  const head = h("h4", { class: "output-name" }, name);
  if (urls && urls.length) return h("div", { class: "output", "data-output": name }, head, urls.map((u) => mediaView(u, name)));
  const text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  return h("div", { class: "output output-text", "data-output": name },
    h("div", { class: "output-head" }, head, copyButton(text, name)), h("pre", { tabindex: 0 }, text));
}

function definitionList(obj, label) {
  const entries = Object.entries(obj || {});
  if (!entries.length) return null;
  return h("dl", { class: "kv", "aria-label": label }, entries.map(([k, v]) =>
    [h("dt", {}, k), h("dd", {}, typeof v === "string" ? v : JSON.stringify(v))]));
}

/** A finished (or failed) job: outputs, error, seeds, parameters, timings. */
export function resultView(record) {
  const parts = [];
  if (record.error) {
    const where = record.error.node ? ` (node ${record.error.node}${record.error.node_type ? `, ${record.error.node_type}` : ""})` : "";
    parts.push(h("p", { class: "error job-error", role: "alert" }, `${record.error.type || "error"}: ${record.error.message || ""}${where}`));
  }
  const items = outputsOf(record);
  if (items.length) parts.push(h("div", { class: "outputs" }, items.map(outputView)));
  const seeds = definitionList(record.seeds, "Seeds used");
  if (seeds) parts.push(h("div", { class: "meta" }, h("h4", {}, "Seeds"), seeds));
  const params = definitionList(record.params, "Parameters");
  if (params) parts.push(h("details", { class: "meta" }, h("summary", {}, "Parameters"), params));
  const facts = [];
  if (record.duration !== undefined) facts.push(`took ${seconds(record.duration)}`);
  if (record.executed) facts.push(`${record.executed.length} ran`);
  if (record.cached && record.cached.length) facts.push(`${record.cached.length} from cache`);
  if (facts.length) parts.push(h("p", { class: "muted" }, facts.join(" · ")));
  return h("div", { class: "result-body", "data-job": record.id, "data-state": record.state },
    h("p", { class: "result-state" }, badge(record.state), " ", record.name || "", " ",
      h("code", { class: "muted" }, record.id || "")), parts);
}

// -- the Outputs view: recent results as cards ----------------------------------------------------

let timer = null;

export async function refreshOutputs() {
  const grid = document.getElementById("output-grid");
  let page;
  try { page = await get("/jobs?state=finished&limit=40"); } catch (err) { fill(grid, h("p", { class: "error" }, err.message)); return; }
  const cards = page.jobs.filter((job) => job.outputs && Object.keys(job.outputs).length).map((job) =>
    h("article", { class: "card", "data-job": job.id },
      h("h3", {}, job.name, " ", h("span", { class: "muted small" }, when(job.ended))),
      outputsOf(job).map(outputView),
      definitionList(job.seeds, "Seeds used"),
      job.params && Object.keys(job.params).length ? h("details", {}, h("summary", {}, "Parameters"), definitionList(job.params, "Parameters")) : null));
  fill(grid, cards.length ? cards : h("p", { class: "muted" }, "No outputs yet: run an endpoint or a graph."));
}

export function initOutputs(isVisible) {
  onEvent((event) => {
    if (event.event === "job.finished" && isVisible()) {
      clearTimeout(timer);
      timer = setTimeout(refreshOutputs, 300);
    }
  });
}
