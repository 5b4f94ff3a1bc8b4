// The graph being edited: a workflow document plus node positions, and the rules for links.

// Which output types may link into an input is the engine's rule (engine/types.py), served with each
// input of GET /nodes as `accepts`; the editor keeps no copy of it.

/** Whether an output of type `source` may feed the input described by `inp` (a /nodes input entry).
 * An input of an unknown node type carries no rule: any link goes, and validation names the type. */
export function accepts(inp, source) {
  return !inp.accepts || inp.accepts.includes(source);
}

/** Whether the input takes links only (media): /nodes gives a literal schema only to inputs that take literals. */
export function linkOnly(inp) {
  return inp.schema === undefined;
}

export function isLink(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value) && "from" in value;
}

/** A workflow under edit. `catalogue` is GET /nodes (type -> {inputs, outputs, variadic...}). */
export class Graph {
  constructor(catalogue) {
    this.catalogue = catalogue;
    this.clear();
  }

  clear() {
    this.nodes = new Map(); // id -> {type, version, inputs, meta}
    this.head = {}; // name, description, version, endpoint
    this.params = {};
    this.outputs = null;
    this.changed();
  }

  changed() {
    this.version = (this.version || 0) + 1;
  }

  spec(id) {
    const node = this.nodes.get(id);
    return node ? this.catalogue[node.type] : undefined;
  }

  /** Declared inputs of a node plus its variadic ones: name -> input description. */
  inputsOf(id) {
    const spec = this.spec(id);
    const node = this.nodes.get(id);
    // An unknown type: every input as a JSON one that takes literals and any link (no `accepts`).
    if (!spec) return Object.fromEntries(Object.keys(node.inputs).map((n) => [n, { type: "JSON", description: "", schema: {}, accepts: null }]));
    const inputs = { ...spec.inputs };
    if (spec.variadic) {
      for (const name of Object.keys(node.inputs)) if (!inputs[name]) inputs[name] = { ...spec.variadic, required: true, variadicInput: true };
    }
    return inputs;
  }

  outputsOf(id) {
    const spec = this.spec(id);
    return spec ? spec.outputs : {};
  }

  freshId(type) {
    const base = type.split(".").pop().replace(/[^A-Za-z0-9_]/g, "_");
    let n = 1;
    while (this.nodes.has(`${base}${n}`)) n += 1;
    return `${base}${n}`;
  }

  addNode(type, x = 40, y = 40, id = null) {
    id = id || this.freshId(type);
    const version = this.catalogue[type]?.version;
    this.nodes.set(id, { type, version, inputs: {}, meta: { x: Math.round(x), y: Math.round(y) } });
    this.changed();
    return id;
  }

  /** Remove a node and everything that refers to it (links into others, param binds, outputs). */
  removeNode(id) {
    this.nodes.delete(id);
    for (const node of this.nodes.values()) {
      for (const [name, value] of Object.entries(node.inputs)) if (isLink(value) && value.from === id) delete node.inputs[name];
    }
    for (const [name, param] of Object.entries(this.params)) {
      param.bind = param.bind.filter((b) => b.node !== id);
      if (!param.bind.length) delete this.params[name];
    }
    if (this.outputs) {
      for (const [name, link] of Object.entries(this.outputs)) if (link.from === id) delete this.outputs[name];
      if (!Object.keys(this.outputs).length) this.outputs = null;
    }
    this.changed();
  }

  /** Why a link from (src, output) into (dst, input) is not allowed, or "" when it is. */
  linkProblem(src, output, dst, input) {
    if (src === dst) return "a node cannot feed itself";
    const out = this.outputsOf(src)[output];
    const inp = this.inputsOf(dst)[input];
    if (!out || !inp) return "unknown port";
    if (!accepts(inp, out.type)) return `${out.type} does not fit a ${inp.type} input`;
    if (this.reaches(dst, src)) return "that link would make a cycle";
    return "";
  }

  /** Whether `to` is downstream of `from` (following links). */
  reaches(from, to) {
    const seen = new Set();
    const stack = [from];
    while (stack.length) {
      const id = stack.pop();
      if (id === to) return true;
      if (seen.has(id)) continue;
      seen.add(id);
      for (const [other, node] of this.nodes) {
        if (Object.values(node.inputs).some((v) => isLink(v) && v.from === id)) stack.push(other);
      }
    }
    return false;
  }

  connect(src, output, dst, input) {
    const problem = this.linkProblem(src, output, dst, input);
    if (problem) throw new Error(problem);
    this.nodes.get(dst).inputs[input] = { from: src, output };
    this.changed();
  }

  /** Set a literal (undefined removes it, so the default applies). */
  setInput(id, input, value) {
    const node = this.nodes.get(id);
    if (value === undefined) delete node.inputs[input];
    else node.inputs[input] = value;
    this.changed();
  }

  /** The links as [{from, output, to, input}]. */
  links() {
    const out = [];
    for (const [to, node] of this.nodes) {
      for (const [input, value] of Object.entries(node.inputs)) if (isLink(value)) out.push({ from: value.from, output: value.output, to, input });
    }
    return out;
  }

  /** Param bound to (node, input), if any. */
  paramOf(id, input) {
    return Object.entries(this.params).find(([, p]) => p.bind.some((b) => b.node === id && b.input === input))?.[0];
  }

  load(doc) {
    this.clear();
    const { nodes = {}, params = {}, outputs, ...head } = doc;
    this.head = head;
    this.params = JSON.parse(JSON.stringify(params));
    this.outputs = outputs ? JSON.parse(JSON.stringify(outputs)) : null;
    for (const [id, node] of Object.entries(nodes)) {
      // The version the node was saved with travels on: the engine upgrades an older one when it loads the document.
      this.nodes.set(id, { type: node.type, version: node.version, inputs: JSON.parse(JSON.stringify(node.inputs || {})), meta: { ...(node.meta || {}) } });
    }
    this.layout();
    this.changed();
  }

  /** Place nodes that have no position: columns by depth (how many links lead to them). */
  layout() {
    const depth = new Map();
    const visit = (id, trail = new Set()) => {
      if (depth.has(id)) return depth.get(id);
      if (trail.has(id)) return 0;
      trail.add(id);
      const node = this.nodes.get(id);
      let d = 0;
      for (const v of Object.values(node ? node.inputs : {})) if (isLink(v) && this.nodes.has(v.from)) d = Math.max(d, visit(v.from, trail) + 1);
      depth.set(id, d);
      return d;
    };
    const rows = new Map();
    for (const [id, node] of this.nodes) {
      const d = visit(id);
      if (Number.isFinite(node.meta.x) && Number.isFinite(node.meta.y)) continue;
      const r = rows.get(d) || 0;
      rows.set(d, r + 1);
      node.meta.x = 30 + d * 280;
      node.meta.y = 30 + r * 220;
    }
  }

  /** The workflow document (positions kept in each node's `meta`; each node's type version, see engine/upgrade.py). */
  toDoc() {
    const doc = { ...this.head, nodes: {} };
    for (const [id, node] of this.nodes) {
      const version = node.version ?? this.catalogue[node.type]?.version;
      doc.nodes[id] = version === undefined ? { type: node.type, inputs: node.inputs } : { type: node.type, version, inputs: node.inputs };
      if (node.meta && Object.keys(node.meta).length) doc.nodes[id].meta = node.meta;
    }
    if (Object.keys(this.params).length) doc.params = this.params;
    if (this.outputs) doc.outputs = this.outputs;
    return doc;
  }
}
