// Form fields built from JSON Schema: endpoint request bodies and node inputs share them.

import { h } from "./dom.js";

let uid = 0;
let modelChoices = []; // the models on disk ({ref, kind} or bare refs), offered by the model pickers

/** Set the models the model pickers offer (each picker keeps those of its kind, and the unrecognised). */
export function setModelChoices(models) {
  modelChoices = models;
}

/** The refs of `models` a picker for `kind` offers: that kind, or any kind when either is unknown. */
function refsOfKind(models, kind) {
  return models
    .filter((m) => typeof m === "string" || !kind || !m.kind || m.kind === kind)
    .map((m) => (typeof m === "string" ? m : m.ref));
}

/** The schema without a null alternative (`anyOf: [{...}, {type: null}]`), and whether null is allowed. */
function unwrapNullable(schema) {
  const alts = schema.anyOf || schema.oneOf;
  if (!alts) return [schema, false];
  const rest = alts.filter((s) => s.type !== "null");
  const nullable = rest.length < alts.length;
  return [rest.length === 1 ? { ...schema, ...rest[0], anyOf: undefined, oneOf: undefined } : schema, nullable];
}

function kindOf(schema, flowType) {
  if (schema.enum) return "enum";
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  if (type === "boolean" || flowType === "BOOL") return "bool";
  if (type === "integer" || flowType === "INT") return "int";
  if (type === "number" || flowType === "FLOAT") return "float";
  if (type === "string" || flowType === "TEXT") return "text";
  return "json";
}

function jsonText(value) {
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

/**
 * One labelled field for `name` described by `schema` (JSON Schema plus x-flow-type, x-flow-widget,
 * default, description). Returns {element, get(), set(value), error(message), input, name}. `get()`
 * returns undefined when the field is left empty and is optional (the default then applies).
 */
export function buildField(name, schema, { value, required = false, models = modelChoices, label = name } = {}) {
  const [s, nullable] = unwrapNullable(schema || {});
  let flowType = schema["x-flow-type"] || schema.flowType;
  // A param that takes any value (JSON, e.g. a template's {name}) whose default is text is a text
  // field: typing `world` must not need quotes, and the badge says what the field takes.
  if ((flowType === "JSON" || flowType === "ANY") && !s.type && !s.enum && typeof schema.default === "string") {
    flowType = "TEXT";
  }
  const kind = kindOf(s, flowType);
  // The control comes from the presentation hint (a /nodes input's `widget`, an endpoint request
  // property's `x-flow-widget`), never from names or descriptions. The vocabulary is engine/node.py's
  // WIDGETS: model, multiline, file, image, seed; without one a field gets the control its type implies.
  const widget = schema["x-flow-widget"] || null;
  const id = `f${++uid}-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  const helpId = `${id}-help`;
  const errorId = `${id}-error`;
  const initial = value !== undefined ? value : schema.default;
  let input;
  let extra = null;
  let get;
  let set;

  if (kind === "enum") {
    input = h("select", { id });
    if (nullable || !required) input.append(h("option", { value: "" }, "—"));
    for (const option of s.enum) input.append(h("option", { value: JSON.stringify(option) }, String(option)));
    get = () => (input.value === "" ? undefined : JSON.parse(input.value));
    set = (v) => { input.value = v === undefined || v === null ? "" : JSON.stringify(v); };
  } else if (kind === "bool") {
    input = h("input", { id, type: "checkbox" });
    get = () => input.checked;
    set = (v) => { input.checked = Boolean(v); };
  } else if (kind === "int" || kind === "float") {
    input = h("input", { id, type: "number", inputmode: kind === "int" ? "numeric" : "decimal" });
    if (s.minimum !== undefined) input.min = s.minimum;
    if (s.maximum !== undefined) input.max = s.maximum;
    input.step = s.multipleOf || (kind === "int" ? 1 : "any");
    if (widget === "seed") input.placeholder = "random";
    get = () => (input.value === "" ? undefined : Number(input.value));
    set = (v) => { input.value = v === undefined || v === null ? "" : String(v); };
  } else if (kind === "text" && widget === "model") {
    // The model picker: "(default)" first and selected (the server's default applies), then the local
    // models of the kind this input takes (x-flow-model-kind), then "other".
    input = h("select", { id });
    input.dataset.modelKind = schema["x-flow-model-kind"] || "";
    const shownDefault = typeof schema.default === "string" && schema.default ? ` — ${schema.default}` : "";
    const noDefault = required && (schema.default === undefined || schema.default === null);
    input.append(h("option", { value: "" }, noDefault ? "(choose a model)" : `(default)${shownDefault}`));
    const refs = [...new Set(refsOfKind(models, schema["x-flow-model-kind"]).filter((r) => typeof r === "string" && r))];
    for (const ref of refs) input.append(h("option", { value: ref }, ref));
    input.append(h("option", { value: "\u0000other" }, "other…"));
    const other = h("input", { type: "text", "aria-label": `${label}: other model reference`, hidden: true,
      placeholder: "hf:ORG/NAME, ollama:NAME or a local folder" });
    input.addEventListener("change", () => {
      other.hidden = input.value !== "\u0000other";
      if (!other.hidden) other.focus();
    });
    extra = other;
    get = () => {
      const v = input.value === "\u0000other" ? other.value.trim() : input.value;
      return v === "" ? undefined : v;
    };
    set = (v) => {
      if (!v) { input.selectedIndex = 0; return; }
      if (![...input.options].some((o) => o.value === v)) input.insertBefore(h("option", { value: v }, v), input.lastChild);
      input.value = v;
    };
  } else if (kind === "text") {
    // A data URL is long too: an image hint gets a text area beside its file picker.
    const long = widget === "multiline" || widget === "image";
    input = long ? h("textarea", { id, rows: 3 }) : h("input", { id, type: "text" });
    if (widget === "file") input.placeholder = "a path in the input folder";
    if (s.maxLength !== undefined && s.maxLength < 1e6) input.maxLength = s.maxLength;
    if (s.minLength) input.minLength = s.minLength;
    get = () => (input.value === "" && !required && schema.default === undefined ? undefined : input.value);
    set = (v) => { input.value = v === undefined || v === null ? "" : String(v); };
    if (widget === "image") {
      // An image sent as base64: a file picker fills the field with a data URL.
      const picker = h("input", { type: "file", accept: "image/*", "aria-label": `${label}: choose a file` });
      picker.addEventListener("change", () => {
        const file = picker.files[0];
        if (!file) return;
        const reader = new FileReader();
        reader.onload = () => { input.value = reader.result; input.dispatchEvent(new Event("input")); };
        reader.readAsDataURL(file);
      });
      extra = picker;
    }
  } else {
    input = h("textarea", { id, rows: 2, spellcheck: "false", placeholder: "JSON, or plain text" });
    // JSON fields take JSON; anything that does not parse is sent as a string.
    get = () => {
      const text = input.value.trim();
      if (text === "") return required ? "" : undefined;
      try { return JSON.parse(text); } catch { return input.value; }
    };
    set = (v) => { input.value = jsonText(v); };
  }

  if (required && kind !== "bool") input.required = true;
  input.name = name;
  input.setAttribute("aria-describedby", `${helpId} ${errorId}`);
  // A model picker starts on "(default)" unless given a value: the default is the server's to apply.
  set(widget === "model" && value === undefined ? undefined : initial);

  const typeTag = flowType ? h("span", { class: "type-tag", "data-type": flowType }, flowType) : null;
  const labelEl = h("label", { for: id }, label, required ? h("span", { class: "req", title: "required", "aria-hidden": "true" }, " *") : null);
  const help = h("small", { id: helpId, class: "help" }, describe(s, schema));
  const errorEl = h("small", { id: errorId, class: "error", role: "alert" });
  const element = h("div", { class: `field field-${kind}`, "data-field": name },
    h("div", { class: "field-head" }, labelEl, typeTag), input, extra, help, errorEl);
  return {
    name, element, input, get, set,
    error(message) {
      errorEl.textContent = message || "";
      element.classList.toggle("has-error", Boolean(message));
      input.setAttribute("aria-invalid", message ? "true" : "false");
    },
  };
}

function describe(s, schema) {
  const bits = [schema.description || s.description || ""];
  const range = [];
  if (s.minimum !== undefined) range.push(`min ${s.minimum}`);
  if (s.exclusiveMinimum !== undefined) range.push(`> ${s.exclusiveMinimum}`);
  if (s.maximum !== undefined && s.maximum < 1e12) range.push(`max ${s.maximum}`); // not a seed's 2^53
  if (s.multipleOf !== undefined) range.push(`multiple of ${s.multipleOf}`);
  if (range.length) bits.push(`(${range.join(", ")})`);
  if (schema.default !== undefined && schema.default !== null && schema.default !== "") {
    bits.push(`· default: ${jsonText(schema.default)}`);
  }
  return bits.filter(Boolean).join(" ");
}

/** Fields for every property of an object schema; returns {element, fields, values(), showProblems()}. */
export function buildForm(schema, { models = modelChoices } = {}) {
  const required = new Set(schema.required || []);
  const fields = Object.entries(schema.properties || {}).map(([name, prop]) =>
    buildField(name, prop, { required: required.has(name), models }));
  const element = h("div", { class: "fields" }, fields.map((f) => f.element));
  return {
    element, fields,
    values() {
      const body = {};
      for (const f of fields) {
        const v = f.get();
        if (v !== undefined) body[f.name] = v;
      }
      return body;
    },
    clearErrors() { for (const f of fields) f.error(""); },
  };
}
