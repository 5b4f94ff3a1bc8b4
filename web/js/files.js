// The gateway's output folder, to turn saved paths (e.g. a list of saved images) into /files/ URLs.

import { token } from "./api.js";

let root = null; // the output folder's path on the server, once known ("/srv/out/")

/** The output folder learnt so far, or null. */
export function learnedRoot() {
  return root;
}

/** Remember the output folder (learnt from an output given both as a path and a URL); returns it. */
export function learnRoot(path) {
  if (path) root = path;
  return path;
}

function savedPaths(record) {
  const files = record.files || {};
  const paths = [];
  for (const [name, value] of Object.entries(record.outputs || {})) {
    if (files[name]) continue;
    for (const p of Array.isArray(value) ? value : [value]) {
      if (typeof p === "string" && p.length < 4096 && p.startsWith("/") && /\.[A-Za-z0-9]+$/.test(p)) paths.push(p);
    }
  }
  return paths;
}

/**
 * Learn the output folder from a job whose saved files have paths but no URLs (a list of paths, as
 * image.save's `paths` gives): ask the gateway which tail of the path it serves, longest first.
 */
export async function findOutputRoot(record) {
  if (root) return root;
  for (const [name, url] of Object.entries(record.files || {})) {
    const given = (record.outputs || {})[name];
    const rel = String(url).replace(/^\/files\//, "");
    if (typeof given === "string" && given.endsWith(`/${rel}`)) return learnRoot(given.slice(0, given.length - rel.length));
  }
  const [path] = savedPaths(record);
  if (!path) return null;
  const parts = path.split("/");
  for (let k = 1; k < parts.length; k += 1) {
    const rel = parts.slice(k).join("/");
    if (!rel) continue;
    // GET (the gateway answers no HEAD), dropped once the status is known: no body is read.
    const stop = new AbortController();
    try {
      const response = await fetch(`/files/${rel.split("/").map(encodeURIComponent).join("/")}`,
        { headers: { Range: "bytes=0-0", ...(token() ? { Authorization: `Bearer ${token()}` } : {}) }, signal: stop.signal });
      stop.abort();
      if (response.ok) return learnRoot(path.slice(0, path.length - rel.length));
    } catch { return null; }
  }
  return null;
}
