// Talking to the gateway: JSON requests with the API token, the token prompt, and live events.

const TOKEN_KEY = "flow.token";

/** An error answered by the gateway: its type, message, status and problems (node, input, message). */
export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `the gateway answered ${status}`);
    this.status = status;
    this.type = error.type || "http_error";
    this.problems = error.problems || [];
    this.body = body;
  }
}

export function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

let asking = null; // one prompt at a time, shared by every request that got a 401

/** Ask the person for the token (once, however many requests need it); resolves when given. */
export function askToken(message = "") {
  if (asking) return asking;
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  document.getElementById("token-error").textContent = message;
  input.value = "";
  asking = new Promise((resolve) => {
    const done = () => {
      const value = input.value.trim();
      if (!value) return;
      localStorage.setItem(TOKEN_KEY, value);
      dialog.removeEventListener("close", done);
      asking = null;
      resolve(value);
    };
    dialog.addEventListener("close", done);
    dialog.addEventListener("cancel", (e) => e.preventDefault(), { once: true }); // Esc cannot skip it
    dialog.showModal();
    input.focus();
  });
  return asking;
}

function withToken(headers = {}) {
  const t = token();
  return t ? { ...headers, Authorization: `Bearer ${t}` } : headers;
}

/** fetch a gateway path; JSON in and out; a 401 asks for the token and retries. */
export async function request(method, path, body, { raw = false, headers = {} } = {}) {
  const init = { method, headers: withToken(headers) };
  if (body !== undefined) {
    if (raw) init.body = body;
    else {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    document.getElementById("token-button").hidden = false;
    await askToken(token() ? "That token was refused; try again." : "");
    return request(method, path, body, { raw, headers });
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: { message: text } }; }
  if (!response.ok && response.status !== 202) throw new ApiError(response.status, data);
  return data;
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body);
export const del = (path) => request("DELETE", path);

/**
 * Point `el[attr]` (an <img>/<audio>/<video> src or an <a> href) at a gateway file. Without a token
 * the URL is used as is; with one, the file is fetched with the Authorization header and shown from
 * a blob URL (the gateway takes ?token= only on event streams, so tokens stay out of URLs and logs).
 */
export async function setFileUrl(el, attr, url) {
  if (!token() || !url) {
    el[attr] = url;
    return;
  }
  const response = await fetch(url, { headers: withToken() });
  if (!response.ok) return;
  el[attr] = URL.createObjectURL(await response.blob());
}

// -- live events -------------------------------------------------------------------------------

const listeners = new Set();
const recent = new Map(); // job id -> its events so far (late subscribers replay them)
const RECENT_JOBS = 200;

/** Call `fn(event)` for every gateway event; returns the function that stops it. */
export function onEvent(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** The events seen so far of one job (to catch up on what came before its id was known). */
export function eventsOf(jobId) {
  return recent.get(jobId) || [];
}

function remember(event) {
  if (!event.job_id) return;
  if (!recent.has(event.job_id)) {
    recent.set(event.job_id, []);
    if (recent.size > RECENT_JOBS) recent.delete(recent.keys().next().value);
  }
  const list = recent.get(event.job_id);
  if (event.event !== "node.progress" || list.length < 500) list.push(event);
}

function setConnection(state, text) {
  const el = document.getElementById("conn");
  el.dataset.state = state;
  el.textContent = text;
}

/** Keep one WebSocket to /ws open, reconnecting with a growing delay; events go to the listeners. */
export function connectEvents() {
  let delay = 500;
  const open = () => {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const t = token();
    const ws = new WebSocket(`${scheme}//${location.host}/ws${t ? "?token=" + encodeURIComponent(t) : ""}`);
    ws.onopen = () => {
      delay = 500;
      setConnection("live", "live");
      for (const fn of listeners) fn({ event: "connection.open" });
    };
    ws.onmessage = (message) => {
      let event;
      try { event = JSON.parse(message.data); } catch { return; }
      remember(event);
      for (const fn of listeners) {
        try { fn(event); } catch (err) { console.error(err); }
      }
    };
    ws.onclose = () => {
      setConnection("down", `reconnecting in ${Math.round(delay / 1000)} s…`);
      setTimeout(open, delay);
      delay = Math.min(delay * 1.5, 4000);
    };
  };
  open();
}
