// Small DOM and formatting helpers shared by the views.

/** Create an element: h("a", {href, class, onclick}, children...). Falsy children are skipped. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "hidden" || key === "disabled" || key === "checked") el[key] = Boolean(value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function bytes(n) {
  if (n === null || n === undefined) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i && n < 10 ? 1 : 0)} ${units[i]}`;
}

export function seconds(s) {
  if (s === null || s === undefined) return "";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

export function when(epoch) {
  if (!epoch) return "";
  const d = new Date(epoch * 1000);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

/** A labelled progress bar; `set(fraction, label)` updates it (null fraction: indeterminate). */
export function progressBar(label = "progress") {
  const bar = h("progress", { max: 1, "aria-label": label });
  const text = h("span", { class: "progress-text" });
  const element = h("div", { class: "progress" }, bar, text);
  return {
    element,
    set(fraction, note = "") {
      if (fraction === null || fraction === undefined) bar.removeAttribute("value");
      else bar.value = Math.max(0, Math.min(1, fraction));
      text.textContent = note;
    },
    /** Mark the bar's state (failed, cancelled, finished): failed shows red, with `note` as its label. */
    state(state, note) {
      element.dataset.state = state;
      if (state === "failed") text.setAttribute("role", "alert"); // read out, like other errors
      if (note !== undefined) text.textContent = note;
    },
  };
}

/** Show a message in the page's banner (errors the person should see); empty hides it. */
export function banner(message) {
  const el = document.getElementById("banner");
  el.textContent = message || "";
  el.hidden = !message;
}

/** A state badge (queued, running, finished, failed, cancelled...). */
export function badge(state) {
  return h("span", { class: `badge state-${state}`, "data-state": state }, state);
}
