// The Products view: list products, create one (name, image upload, source URLs, notes), run the product
// workflow on it (POST /products/{id}/describe), see what it wrote and edit it (PATCH /products/{id}).

import { del, get, post, request, setFileUrl } from "./api.js";
import { badge, banner, fill, h, when } from "./dom.js";

let selected = null; // the product shown in the detail pane

/** Set up the create form once. */
export function initProducts() {
  const form = document.getElementById("product-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const status = document.getElementById("product-form-status");
    const data = new FormData();
    data.append("name", form.elements.name.value.trim());
    for (const file of form.elements.images.files) data.append("images", file, file.name);
    if (form.elements.source_urls.value.trim()) data.append("source_urls", form.elements.source_urls.value.trim());
    if (form.elements.notes.value.trim()) data.append("notes", form.elements.notes.value.trim());
    fill(status, "Saving…");
    try {
      const product = await request("POST", "/products", data, { raw: true });
      form.reset();
      fill(status, `Created ${product.name}.`);
      await refreshProducts();
      await showProduct(product.id);
    } catch (err) {
      fill(status, h("span", { class: "error" }, err.message));
    }
  });
}

/** Reload the list (and the selected product). */
export async function refreshProducts() {
  const list = document.getElementById("product-list");
  try {
    const page = await get("/products?limit=100");
    fill(list, page.products.length ? page.products.map(row) : h("li", { class: "muted" }, "No products yet."));
  } catch (err) {
    banner(err.message);
  }
}

function row(product) {
  const open = h("a", { href: `#products/${product.id}`, class: "product-link", dataset: { id: product.id } },
    product.name);
  open.addEventListener("click", (event) => { event.preventDefault(); showProduct(product.id); });
  const state = product.describe ? badge(product.describe.state) : h("span", { class: "muted" }, "not described");
  return h("li", { class: selected === product.id ? "selected" : "" }, open, " ", state);
}

/** Show one product: its images, sources, the describe controls and the description editor. */
export async function showProduct(id) {
  const pane = document.getElementById("product-detail");
  let product;
  try {
    product = await get(`/products/${encodeURIComponent(id)}`);
  } catch (err) {
    fill(pane, h("p", { class: "error" }, err.message));
    return;
  }
  selected = product.id;
  const images = h("div", { class: "product-images" });
  for (const image of product.images) {
    const img = h("img", { alt: `${product.name} picture`, width: 96, height: 96, class: "thumb" });
    if (image.path) setFileUrl(img, "src", `/files/${image.path}`);
    else img.src = image.url;
    images.append(img);
  }
  const d = product.description || {};
  const field = (id, label, value, rows = 0) => h("p", {},
    h("label", { for: id }, label), h("br"),
    rows ? h("textarea", { id, rows }, value || "") : h("input", { id, value: value || "" }));
  const describeStatus = h("p", { id: "describe-status", role: "status", "aria-live": "polite" },
    product.describe ? describeLine(product.describe) : "");
  const describe = h("form", { id: "describe-form", class: "inline-form" },
    h("label", { for: "describe-tone" }, "Tone"), h("input", { id: "describe-tone", value: product.describe?.tone || "neutral" }),
    h("label", { for: "describe-language" }, "Language"), h("input", { id: "describe-language", value: product.describe?.language || "en", size: 6 }),
    h("label", { for: "describe-model" }, "Model"), h("input", { id: "describe-model", placeholder: "default" }),
    h("label", { for: "describe-vision-model" }, "Vision model"), h("input", { id: "describe-vision-model", placeholder: "default" }),
    h("button", { type: "submit", class: "primary", id: "describe-button" }, "Describe"));
  describe.addEventListener("submit", (event) => { event.preventDefault(); runDescribe(product.id, describeStatus); });
  const save = h("button", { type: "button", id: "save-description", class: "primary" }, "Save description");
  save.addEventListener("click", () => saveDescription(product.id));
  const remove = h("button", { type: "button", class: "danger", id: "delete-product" }, "Delete product");
  remove.addEventListener("click", async () => {
    if (!confirm(`Delete ${product.name}?`)) return;
    try { await del(`/products/${product.id}`); } catch (err) { banner(err.message); }
    selected = null;
    fill(pane);
    refreshProducts();
  });
  fill(pane,
    h("h3", { id: "product-title" }, product.name),
    h("p", { class: "muted" }, `created ${when(product.created)} · updated ${when(product.updated)}`),
    images,
    product.source_urls.length ? h("ul", { class: "sources" }, product.source_urls.map((u) =>
      h("li", {}, h("a", { href: u, rel: "noopener noreferrer", target: "_blank" }, u)))) : null,
    product.notes ? h("p", {}, h("strong", {}, "Notes: "), product.notes) : null,
    describe, describeStatus,
    h("fieldset", { id: "description-editor" }, h("legend", {}, "Description"),
      field("desc-title", "Title", d.title),
      field("desc-short", "Short", d.short, 2),
      field("desc-long", "Long", d.long, 6),
      field("desc-features", "Features (one per line)", (d.features || []).join("\n"), 4),
      field("desc-attributes", "Attributes (JSON object)", JSON.stringify(d.attributes || {}, null, 2), 4),
      h("p", { class: "muted", id: "desc-meta" }, d.language ? `language ${d.language} · tone ${d.tone}` : ""),
      save, h("span", { id: "save-status", role: "status" })),
    remove);
  refreshProducts();
}

function describeLine(run) {
  const parts = [`last run: ${run.state}`, run.tone ? `tone ${run.tone}` : "", run.language || ""];
  const line = h("span", {}, parts.filter(Boolean).join(" · "), " ");
  if (run.url) line.append(h("a", { href: `#jobs`, title: run.job }, "job"));
  if (run.error) line.append(" ", h("span", { class: "error" }, run.error));
  return line;
}

async function runDescribe(id, status) {
  const value = (el) => document.getElementById(el).value.trim();
  const body = { tone: value("describe-tone") || "neutral", language: value("describe-language") || "en" };
  if (value("describe-model")) body.model = value("describe-model");
  if (value("describe-vision-model")) body.vision_model = value("describe-vision-model");
  const button = document.getElementById("describe-button");
  button.disabled = true;
  fill(status, "Describing… (the job shows every step)");
  try {
    const answer = await post(`/products/${id}/describe?timeout=600`, body);
    if (answer.job && answer.job.state !== "finished") fill(status, `Still running: job ${answer.job.id}`);
    await showProduct(id);
  } catch (err) {
    fill(status, h("span", { class: "error" }, err.message));
    button.disabled = false;
  }
}

async function saveDescription(id) {
  const value = (el) => document.getElementById(el).value;
  const status = document.getElementById("save-status");
  let attributes;
  try {
    attributes = JSON.parse(value("desc-attributes") || "{}");
  } catch (err) {
    fill(status, h("span", { class: "error" }, `Attributes are not JSON: ${err.message}`));
    return;
  }
  const current = await get(`/products/${id}`);
  const description = {
    ...(current.description || {}),
    title: value("desc-title"), short: value("desc-short"), long: value("desc-long"),
    features: value("desc-features").split("\n").map((s) => s.trim()).filter(Boolean), attributes,
  };
  try {
    await request("PATCH", `/products/${id}`, { description });
    fill(status, " Saved.");
  } catch (err) {
    fill(status, h("span", { class: "error" }, ` ${err.message}`));
  }
}
