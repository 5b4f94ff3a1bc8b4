// Drawing the graph (node boxes and wires) and moving and connecting by pointer or keyboard.

import { h } from "../dom.js";
import { isLink, linkOnly } from "./model.js";

const SVG = "http://www.w3.org/2000/svg";

function summary(value) {
  if (value === undefined) return "";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > 24 ? `${text.slice(0, 23)}…` : text;
}

/** The canvas: renders `graph`, calls `onSelect(id)` and `onChange()`; `state` holds run and problem marks. */
export class GraphView {
  constructor(graph, { canvas, layer, wires, onSelect, onChange, say, onZoom = () => {} }) {
    Object.assign(this, { graph, canvas, layer, wires, onSelect, onChange, say, onZoom });
    this.selected = null;
    this.armed = null; // {node, output} chosen by click or keyboard, waiting for an input
    this.marks = new Map(); // node id -> {state, progress, message}
    this.problems = new Map(); // node id -> [{input, message}]
    // Zoom and pan: the stage (wires and nodes) is scaled and moved; node positions stay unscaled.
    this.stage = layer.parentElement;
    this.zoom = 1;
    this.pan = { x: 0, y: 0 };
    canvas.addEventListener("pointerdown", (e) => {
      const background = e.target === canvas || e.target === layer || e.target === wires || e.target === this.stage;
      if (background) { this.disarm(); this.select(null); }
      if ((background && e.button === 0) || e.button === 1) this.dragPan(e);
    });
    canvas.addEventListener("keydown", (e) => this.canvasKey(e));
    // Ctrl+wheel (and a pinch) zooms at the pointer; the wheel alone pans.
    canvas.addEventListener("wheel", (e) => {
      e.preventDefault();
      const px = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? canvas.clientHeight : 1;
      if (e.ctrlKey || e.metaKey) {
        const r = canvas.getBoundingClientRect();
        this.zoomAt(Math.exp(-e.deltaY * px * 0.002), e.clientX - r.left, e.clientY - r.top);
      } else {
        const sideways = e.shiftKey && !e.deltaX;
        this.panBy(-(sideways ? e.deltaY : e.deltaX) * px, -(sideways ? 0 : e.deltaY) * px);
      }
    }, { passive: false });
    // Focusing a node out of view scrolls the canvas: turn that scroll into pan.
    canvas.addEventListener("scroll", () => {
      if (!canvas.scrollLeft && !canvas.scrollTop) return;
      const dx = canvas.scrollLeft;
      const dy = canvas.scrollTop;
      canvas.scrollLeft = 0;
      canvas.scrollTop = 0;
      this.panBy(-dx, -dy);
    });
  }

  // -- zoom and pan --------------------------------------------------------------------------------

  applyTransform() {
    this.stage.style.transform = `translate(${this.pan.x}px, ${this.pan.y}px) scale(${this.zoom})`;
    this.canvas.style.backgroundPosition = `${this.pan.x}px ${this.pan.y}px`;
    this.canvas.style.backgroundSize = `${20 * this.zoom}px ${20 * this.zoom}px`;
    this.canvas.dataset.zoom = String(Math.round(this.zoom * 100) / 100);
    this.onZoom(this.zoom);
  }

  panBy(dx, dy) {
    this.pan.x += dx;
    this.pan.y += dy;
    this.applyTransform();
  }

  /** Zoom by `factor` keeping the canvas point (x, y) still (the centre when not given). */
  zoomAt(factor, x = this.canvas.clientWidth / 2, y = this.canvas.clientHeight / 2) {
    const zoom = Math.min(2.5, Math.max(0.2, this.zoom * factor));
    const k = zoom / this.zoom;
    this.pan.x = x - (x - this.pan.x) * k;
    this.pan.y = y - (y - this.pan.y) * k;
    this.zoom = zoom;
    this.applyTransform();
  }

  /** Zoom and pan so every node shows (at most at 100%). */
  fit() {
    const boxes = [...this.layer.querySelectorAll(".gnode")];
    this.canvas.scrollLeft = 0;
    this.canvas.scrollTop = 0;
    if (!boxes.length) { this.zoom = 1; this.pan = { x: 0, y: 0 }; this.applyTransform(); return; }
    const left = Math.min(...boxes.map((b) => b.offsetLeft));
    const top = Math.min(...boxes.map((b) => b.offsetTop));
    const right = Math.max(...boxes.map((b) => b.offsetLeft + b.offsetWidth));
    const bottom = Math.max(...boxes.map((b) => b.offsetTop + b.offsetHeight));
    const pad = 24;
    const w = Math.max(1, this.canvas.clientWidth - 2 * pad);
    const hgt = Math.max(1, this.canvas.clientHeight - 2 * pad);
    this.zoom = Math.min(1, Math.max(0.2, Math.min(w / (right - left), hgt / (bottom - top))));
    this.pan.x = pad + (w - (right - left) * this.zoom) / 2 - left * this.zoom;
    this.pan.y = pad + (hgt - (bottom - top) * this.zoom) / 2 - top * this.zoom;
    this.applyTransform();
  }

  /** The top-left of the visible part of the graph, in node coordinates. */
  visibleOrigin() {
    return { x: Math.max(0, -this.pan.x / this.zoom), y: Math.max(0, -this.pan.y / this.zoom) };
  }

  dragPan(e) {
    e.preventDefault();
    const x0 = this.pan.x;
    const y0 = this.pan.y;
    const move = (ev) => {
      this.canvas.classList.add("panning");
      this.pan.x = x0 + ev.clientX - e.clientX;
      this.pan.y = y0 + ev.clientY - e.clientY;
      this.applyTransform();
    };
    const up = () => {
      this.canvas.classList.remove("panning");
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
    this.canvas.focus({ preventScroll: true });
  }

  canvasKey(e) {
    if (e.key === "Escape") { this.disarm(); return; }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "+" || e.key === "=") { e.preventDefault(); this.zoomAt(1.2); } else if (e.key === "-" || e.key === "_") { e.preventDefault(); this.zoomAt(1 / 1.2); } else if (e.key === "0") { e.preventDefault(); this.fit(); } else if (e.target === this.canvas) {
      // Arrow keys on the focused background pan the view.
      const step = e.shiftKey ? 200 : 50;
      const moves = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
      if (moves[e.key]) { e.preventDefault(); this.panBy(...moves[e.key]); }
    }
  }

  render() {
    const boxes = [];
    for (const id of this.graph.nodes.keys()) boxes.push(this.box(id));
    this.layer.replaceChildren(...boxes);
    this.drawWires();
  }

  box(id) {
    const node = this.graph.nodes.get(id);
    const spec = this.graph.spec(id);
    const mark = this.marks.get(id) || {};
    const problems = this.problems.get(id) || [];
    const inputs = this.graph.inputsOf(id);
    const rows = Object.entries(inputs).map(([name, inp]) => {
      const value = node.inputs[name];
      const linked = isLink(value);
      const param = this.graph.paramOf(id, name);
      const bad = problems.filter((p) => p.input === name);
      const port = h("button", { type: "button", class: "port in", "data-node": id, "data-input": name, "data-type": inp.type,
        "aria-label": `input ${name} (${inp.type}) of ${id}${linked ? `, linked from ${value.from}.${value.output}` : ""}` });
      port.addEventListener("click", (e) => { e.stopPropagation(); this.portClicked(id, name); });
      let shown = "";
      if (linked) shown = `← ${value.from}.${value.output}`;
      else if (param) shown = `param ${param}`;
      else if (!linkOnly(inp)) shown = summary(value !== undefined ? value : inp.default);
      return h("li", { class: `row in${bad.length ? " has-problem" : ""}${inp.required && value === undefined && !param ? " missing" : ""}`, "data-input": name },
        port, h("span", { class: "port-name" }, name), h("span", { class: "type-tag", "data-type": inp.type }, inp.type),
        h("span", { class: "value" }, shown),
        bad.length ? h("span", { class: "problem", role: "note" }, bad.map((p) => p.message).join("; ")) : null);
    });
    const outs = Object.entries(this.graph.outputsOf(id)).map(([name, out]) => {
      const port = h("button", { type: "button", class: `port out${this.armed && this.armed.node === id && this.armed.output === name ? " armed" : ""}`,
        "data-node": id, "data-output": name, "data-type": out.type, "aria-label": `output ${name} (${out.type}) of ${id}` });
      port.addEventListener("click", (e) => { e.stopPropagation(); this.arm(id, name); });
      port.addEventListener("pointerdown", (e) => this.dragWire(e, id, name));
      return h("li", { class: "row out", "data-output": name },
        h("span", { class: "type-tag", "data-type": out.type }, out.type), h("span", { class: "port-name" }, name), port);
    });
    const general = problems.filter((p) => !p.input || !inputs[p.input]);
    const remove = h("button", { type: "button", class: "icon", "aria-label": `Delete node ${id}`, title: "Delete (Del)" }, "×");
    remove.addEventListener("click", (e) => { e.stopPropagation(); this.remove(id); });
    const head = h("div", { class: "gnode-head" }, h("span", { class: "gnode-title" }, id), h("span", { class: "gnode-type" }, node.type), remove);
    const progress = mark.progress !== undefined ? h("progress", { max: 1, value: mark.progress, "aria-label": `progress of ${id}` }) : null;
    const el = h("div", {
      class: `gnode${this.selected === id ? " selected" : ""}${problems.length ? " has-problem" : ""}${spec ? "" : " unknown"}`,
      "data-node": id, "data-type": node.type, "data-state": mark.state || "idle", tabindex: 0, role: "group",
      "aria-label": `node ${id}, ${node.type}${mark.state ? `, ${mark.state}` : ""}${problems.length ? ", has problems" : ""}`,
      style: `left:${node.meta.x}px;top:${node.meta.y}px`,
    }, head, h("ul", { class: "ports" }, rows, outs), progress,
    mark.message ? h("p", { class: "gnode-message" }, mark.message) : null,
    general.length ? h("p", { class: "problem", role: "note" }, general.map((p) => p.message).join("; ")) : null);
    head.addEventListener("pointerdown", (e) => this.dragNode(e, id, el));
    el.addEventListener("click", () => this.select(id));
    el.addEventListener("keydown", (e) => this.key(e, id, el));
    return el;
  }

  portCenter(selector) {
    const port = this.layer.querySelector(selector);
    if (!port) return null;
    const a = port.getBoundingClientRect();
    const b = this.layer.getBoundingClientRect();
    return { x: (a.left - b.left + a.width / 2) / this.zoom, y: (a.top - b.top + a.height / 2) / this.zoom };
  }

  drawWires() {
    const paths = [];
    for (const link of this.graph.links()) {
      const a = this.portCenter(`.port.out[data-node="${CSS.escape(link.from)}"][data-output="${CSS.escape(link.output)}"]`);
      const b = this.portCenter(`.port.in[data-node="${CSS.escape(link.to)}"][data-input="${CSS.escape(link.input)}"]`);
      if (!a || !b) continue;
      const type = this.graph.outputsOf(link.from)[link.output]?.type || "";
      paths.push(this.path(a, b, `wire type-${type}`, { from: link.from, to: link.to, input: link.input }));
    }
    if (this.temp) paths.push(this.temp);
    this.wires.replaceChildren(...paths);
  }

  path(a, b, cls, data = {}) {
    const p = document.createElementNS(SVG, "path");
    const dx = Math.max(40, Math.abs(b.x - a.x) / 2);
    p.setAttribute("d", `M${a.x},${a.y} C${a.x + dx},${a.y} ${b.x - dx},${b.y} ${b.x},${b.y}`);
    p.setAttribute("class", cls);
    for (const [k, v] of Object.entries(data)) p.dataset[k] = v;
    return p;
  }

  select(id) {
    if (this.selected === id) return;
    this.selected = id;
    for (const el of this.layer.querySelectorAll(".gnode")) el.classList.toggle("selected", el.dataset.node === id);
    this.onSelect(id);
  }

  remove(id) {
    this.graph.removeNode(id);
    this.marks.delete(id);
    this.problems.delete(id);
    if (this.selected === id) this.select(null);
    this.render();
    this.onChange();
    this.say(`Deleted node ${id}`);
  }

  // -- connecting: drag from an output onto an input, or click (or Enter on) one then the other --

  arm(id, output) {
    this.armed = { node: id, output };
    this.highlight(id, output);
    this.layer.querySelectorAll(".port.out").forEach((p) => p.classList.toggle("armed", p.dataset.node === id && p.dataset.output === output));
    this.say(`Output ${id}.${output} chosen: now choose an input (Esc cancels)`);
  }

  disarm() {
    this.armed = null;
    this.highlight(null);
    this.layer.querySelectorAll(".port.armed").forEach((p) => p.classList.remove("armed"));
  }

  highlight(id, output) {
    for (const port of this.layer.querySelectorAll(".port.in")) {
      const ok = id !== null && !this.graph.linkProblem(id, output, port.dataset.node, port.dataset.input);
      port.classList.toggle("compatible", id !== null && ok);
      port.classList.toggle("incompatible", id !== null && !ok);
    }
  }

  portClicked(id, input) {
    if (!this.armed) { this.select(id); return; }
    this.link(this.armed.node, this.armed.output, id, input);
    this.disarm();
  }

  link(src, output, dst, input) {
    const problem = this.graph.linkProblem(src, output, dst, input);
    if (problem) { this.say(`Cannot link ${src}.${output} to ${dst}.${input}: ${problem}`); return false; }
    this.graph.connect(src, output, dst, input);
    this.problems.delete(dst);
    this.render();
    this.onChange();
    this.say(`Linked ${src}.${output} to ${dst}.${input}`);
    return true;
  }

  dragWire(e, id, output) {
    if (e.button !== 0) return;
    e.preventDefault();
    const start = this.portCenter(`.port.out[data-node="${CSS.escape(id)}"][data-output="${CSS.escape(output)}"]`);
    const origin = this.layer.getBoundingClientRect();
    let moved = false;
    this.highlight(id, output);
    const move = (ev) => {
      moved = moved || Math.hypot(ev.clientX - e.clientX, ev.clientY - e.clientY) > 4;
      this.temp = this.path(start, { x: (ev.clientX - origin.left) / this.zoom, y: (ev.clientY - origin.top) / this.zoom }, "wire temp");
      this.drawWires();
    };
    const up = (ev) => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
      this.temp = null;
      this.drawWires();
      if (!moved) return; // a click: the click handler arms the port
      this.highlight(null);
      const target = document.elementFromPoint(ev.clientX, ev.clientY);
      const port = target && target.closest(".port.in, .gnode");
      if (!port) { this.say("Dropped outside an input: no link made"); return; }
      if (port.classList.contains("port")) { this.link(id, output, port.dataset.node, port.dataset.input); return; }
      // Dropped on a node's body: take its first free compatible input.
      const dst = port.dataset.node;
      const free = Object.keys(this.graph.inputsOf(dst)).find((name) => !isLink(this.graph.nodes.get(dst).inputs[name]) && !this.graph.linkProblem(id, output, dst, name));
      if (free) this.link(id, output, dst, free);
      else this.say(`${dst} has no free input that takes ${id}.${output}`);
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
  }

  // -- moving ------------------------------------------------------------------------------------

  dragNode(e, id, el) {
    if (e.button !== 0 || e.target.closest("button")) return;
    e.preventDefault();
    const node = this.graph.nodes.get(id);
    const x0 = node.meta.x;
    const y0 = node.meta.y;
    this.select(id);
    const move = (ev) => {
      node.meta.x = Math.max(0, Math.round(x0 + (ev.clientX - e.clientX) / this.zoom));
      node.meta.y = Math.max(0, Math.round(y0 + (ev.clientY - e.clientY) / this.zoom));
      el.style.left = `${node.meta.x}px`;
      el.style.top = `${node.meta.y}px`;
      this.drawWires();
    };
    const up = () => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
      this.onChange();
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
  }

  key(e, id, el) {
    if (e.target !== el) return; // keys in ports and buttons keep their own meaning
    const node = this.graph.nodes.get(id);
    const step = e.shiftKey ? 50 : 10;
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (moves[e.key]) {
      e.preventDefault();
      node.meta.x = Math.max(0, node.meta.x + moves[e.key][0]);
      node.meta.y = Math.max(0, node.meta.y + moves[e.key][1]);
      el.style.left = `${node.meta.x}px`;
      el.style.top = `${node.meta.y}px`;
      this.drawWires();
      this.onChange();
    } else if (e.key === "Delete" || e.key === "Backspace") {
      e.preventDefault();
      this.remove(id);
    } else if (e.key === "Enter") {
      this.select(id);
      const first = document.querySelector("#inspector input, #inspector select, #inspector textarea");
      if (first) first.focus();
    }
  }

  /** Mark a node's run state (running, finished, cached, failed) and progress, in place. */
  mark(id, patch) {
    const mark = { ...(this.marks.get(id) || {}), ...patch };
    this.marks.set(id, mark);
    const old = this.layer.querySelector(`.gnode[data-node="${CSS.escape(id)}"]`);
    if (!old) return;
    const focused = document.activeElement === old;
    const box = this.box(id);
    old.replaceWith(box);
    if (focused) box.focus();
    this.drawWires();
  }
}
