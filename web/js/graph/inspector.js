// The side panel of the selected node: its literal inputs as a form, its links, its problems.

import { fill, h } from "../dom.js";
import { buildField } from "../forms.js";
import { isLink, linkOnly } from "./model.js";

/** Fill `panel` for node `id` of `graph`; `runParams` holds values for inputs bound to params. */
export function renderInspector(panel, graph, id, { view, runParams, onChange }) {
  if (!id || !graph.nodes.has(id)) {
    fill(panel, h("h3", {}, "Inspector"), h("p", { class: "muted" },
      "Select a node to edit its inputs. Add nodes from the list; drag from an output (right) to an input (left) to link them, or press an output then an input. Arrow keys move a focused node; Delete removes it."));
    return;
  }
  const node = graph.nodes.get(id);
  const spec = graph.spec(id);
  const problems = view.problems.get(id) || [];
  const parts = [h("h3", {}, id, " ", h("small", { class: "muted" }, node.type))];
  if (spec) parts.push(h("p", { class: "muted" }, spec.description));
  else parts.push(h("p", { class: "error" }, `unknown node type ${node.type}`));
  for (const p of problems.filter((q) => !q.input)) parts.push(h("p", { class: "error", role: "alert" }, p.message));

  for (const [name, inp] of Object.entries(graph.inputsOf(id))) {
    const value = node.inputs[name];
    const errors = problems.filter((p) => p.input === name).map((p) => p.message).join("; ");
    const sources = linkChoices(graph, id, name);
    const linkSelect = h("select", { "aria-label": `link ${id}.${name} from an output` },
      h("option", { value: "" }, isLink(value) ? "unlink" : "link from…"),
      sources.map((s) => h("option", { value: `${s.node}\u0000${s.output}`, selected: isLink(value) && value.from === s.node && value.output === s.output },
        `${s.node}.${s.output} (${s.type})`)));
    linkSelect.addEventListener("change", () => {
      if (linkSelect.value === "") graph.setInput(id, name, undefined);
      else {
        const [src, output] = linkSelect.value.split("\u0000");
        graph.connect(src, output, id, name);
      }
      onChange(true);
    });
    const param = graph.paramOf(id, name);
    let body;
    if (isLink(value)) {
      body = h("div", { class: "field linked", "data-field": name },
        h("div", { class: "field-head" }, h("span", { class: "label" }, name), h("span", { class: "type-tag", "data-type": inp.type }, inp.type)),
        h("p", {}, `from ${value.from}.${value.output}`), linkSelect,
        errors ? h("small", { class: "error", role: "alert" }, errors) : null);
    } else if (linkOnly(inp)) {
      body = h("div", { class: `field${errors ? " has-error" : ""}`, "data-field": name },
        h("div", { class: "field-head" }, h("span", { class: "label" }, name), h("span", { class: "type-tag", "data-type": inp.type }, inp.type)),
        h("small", { class: "help" }, `${inp.description} — link an ${inp.type} output here`), linkSelect,
        errors ? h("small", { class: "error", role: "alert" }, errors) : null);
    } else {
      const schema = { ...(inp.schema || {}), description: inp.description, "x-flow-type": inp.type, "x-flow-widget": inp.widget };
      if (!inp.required) schema.default = inp.default;
      const current = param ? (param in runParams ? runParams[param] : graph.params[param].default ?? value) : value;
      const field = buildField(name, schema, { value: current, required: inp.required && !param, label: param ? `${name} (param ${param})` : name });
      const save = () => {
        const v = field.get();
        if (param) { if (v === undefined) delete runParams[param]; else runParams[param] = v; }
        else graph.setInput(id, name, v);
        onChange(false);
      };
      field.input.addEventListener("change", save);
      field.input.addEventListener("input", save);
      field.error(errors);
      field.element.append(linkSelect);
      body = field.element;
    }
    parts.push(body);
  }
  if (spec && spec.variadic) parts.push(variadicAdder(graph, id, onChange));
  const remove = h("button", { type: "button", class: "danger" }, `Delete ${id}`);
  remove.addEventListener("click", () => view.remove(id));
  parts.push(h("div", { class: "actions" }, remove));
  fill(panel, h("form", { class: "inspector-form", onsubmit: (e) => e.preventDefault(), "aria-label": `inputs of ${id}` }, parts));
}

function linkChoices(graph, id, input) {
  const out = [];
  for (const src of graph.nodes.keys()) {
    for (const [output, spec] of Object.entries(graph.outputsOf(src))) {
      if (!graph.linkProblem(src, output, id, input)) out.push({ node: src, output, type: spec.type });
    }
  }
  return out;
}

function variadicAdder(graph, id, onChange) {
  const name = h("input", { type: "text", pattern: "[A-Za-z_][A-Za-z0-9_]*", "aria-label": "name of a new input", placeholder: "name" });
  const add = h("button", { type: "button" }, "Add input");
  add.addEventListener("click", () => {
    const n = name.value.trim();
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(n)) return;
    graph.setInput(id, n, "");
    onChange(true);
  });
  return h("div", { class: "field" }, h("span", { class: "label" }, `More inputs (${graph.spec(id).variadic.type})`), h("div", { class: "inline" }, name, add));
}
