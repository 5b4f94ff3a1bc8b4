// The presets picker of an endpoint form (GET /presets): a chosen preset replaces the form's fields
// with the preset's open params, and the request becomes {"preset": NAME, ...those params}.

import { get } from "./api.js";
import { fill, h } from "./dom.js";
import { buildForm } from "./forms.js";

let listed = [];

/** Read the presets once (empty when the gateway has none or is older). */
export async function loadPresets() {
  try { listed = (await get("/presets")).presets || []; } catch { listed = []; }
  return listed;
}

/** The picker for endpoint `ep` whose own fields are `form`, or null when no preset belongs to it. */
export function presetPicker(ep, form) {
  const mine = listed.filter((p) => p.endpoint === ep.path);
  if (!mine.length) return null;
  const id = `preset-${ep.path.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  const area = h("div", { class: "preset-fields" });
  let chosen = null; // {preset, form}
  const select = h("select", { id, name: "preset" },
    h("option", { value: "" }, "none: set every param"),
    mine.map((p) => h("option", { value: p.name, title: p.description }, p.name)));
  select.addEventListener("change", () => {
    const preset = mine.find((p) => p.name === select.value);
    chosen = preset ? { preset, form: buildForm(preset.request || { properties: {} }) } : null;
    form.element.hidden = Boolean(chosen);
    // hidden fields sit out the browser's validation (a required prompt the preset does not take)
    for (const control of form.element.querySelectorAll("input, select, textarea")) control.disabled = Boolean(chosen);
    const fixed = preset ? Object.entries(preset.fixed || {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ") : "";
    fill(area, chosen ? [h("p", { class: "muted" }, preset.description), fixed ? h("p", { class: "muted" }, `Fixed: ${fixed}`) : null,
      chosen.form.element] : []);
  });
  const element = h("div", { class: "preset-picker" }, h("label", { for: id }, "Preset "), select, area);
  return {
    element,
    /** The request body: the preset's name and params, or the endpoint form's `values`. */
    body(values) { return chosen ? { preset: chosen.preset.name, ...chosen.form.values() } : values; },
  };
}
