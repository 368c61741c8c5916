// NexaraVision operator console: plain JavaScript, no framework, no build step, nothing loaded from
// another origin. Pages are hash routes (#/wall, #/events, #/event/<id>, #/cameras); every text from
// the server goes through textContent (never innerHTML). Paths are relative to /ui/ so the console works
// under any serve.route_prefix.
"use strict";

const SPARK_POINTS = 60;
const state = {
  me: null,            // {user, role, csrf, pre_alert, enter_threshold}
  incidents: new Map(), // event_id -> folded incident
  scores: new Map(),    // camera_id -> [score, ...] (sparkline history, this page's polls)
  lastEnd: new Map(),   // camera_id -> last_window_end_s seen
  frames: new Map(),    // camera_id -> <img> of its latest analysed picture (kept across refreshes)
  source: null,         // EventSource
  timer: null,
};
const main = document.getElementById("main");

function h(tag, attrs, ...children) {
  const el = document.createElementNS(
    ["svg", "polyline", "line", "text", "circle"].includes(tag) ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml",
    tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = {};
  if (method !== "GET") headers["X-CSRF-Token"] = state.me ? state.me.csrf : "";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = data.error || {};
    if (resp.status === 401 && path !== "api/login") signedOut();
    throw new ApiError(resp.status, err.code || "http_error", err.message || resp.statusText);
  }
  return data;
}

const fmtTime = (unix) => unix ? new Date(unix * 1000).toLocaleString() : "-";
const fmtP = (p) => p === null || p === undefined ? "-" : p.toFixed(2);
const roleAtLeast = (need) => ["viewer", "operator", "admin"].indexOf(state.me.role) >=
  ["viewer", "operator", "admin"].indexOf(need);

// --- session ---------------------------------------------------------------------------------------

function signedOut() {
  state.me = null;
  if (state.source) { state.source.close(); state.source = null; }
  document.getElementById("nav").hidden = true;
  document.getElementById("signout").hidden = true;
  document.getElementById("live").hidden = true;
  document.getElementById("who").textContent = "";
  renderLogin();
}

function renderLogin() {
  stopTimer();
  const err = h("div", { class: "error", id: "login-error" });
  const name = h("input", { id: "login-name", name: "username", autocomplete: "username", placeholder: "user name", required: true });
  const pass = h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", placeholder: "password", required: true });
  const form = h("form", { class: "login", id: "login-form" }, h("h1", {}, "Sign in"), name, pass,
    h("button", { type: "submit", id: "login-submit" }, "Sign in"), err);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    try {
      await api("api/login", { method: "POST", body: { name: name.value, password: pass.value } });
      await start();
    } catch (e) {
      err.textContent = e.message;
    }
  });
  main.replaceChildren(form);
  name.focus();
}

async function start() {
  try {
    state.me = await api("api/session");
  } catch (e) {
    if (e.status !== 401) main.replaceChildren(h("p", { class: "error" }, e.message));
    return;
  }
  document.getElementById("nav").hidden = false;
  document.getElementById("signout").hidden = false;
  document.getElementById("who").textContent = `${state.me.user} (${state.me.role})`;
  await loadIncidents();
  openStream();
  route();
}

document.getElementById("signout").addEventListener("click", async () => {
  try { await api("api/logout", { method: "POST" }); } finally { signedOut(); }
});

// --- live events: one SSE connection while signed in ---------------------------------------------

let streamOffset = 0;

async function loadIncidents() {
  const data = await api("api/incidents");
  state.incidents = new Map(data.incidents.map((i) => [i.event_id, i]));
  streamOffset = data.offset;
}

function openStream() {
  if (state.source) state.source.close();
  const live = document.getElementById("live");
  state.source = new EventSource(`api/stream?offset=${streamOffset}`);
  state.source.onopen = () => { live.hidden = false; };
  state.source.onerror = () => { live.hidden = true; };
  state.source.addEventListener("incident", (msg) => {
    const inc = JSON.parse(msg.data);
    const isNew = !state.incidents.has(inc.event_id);
    state.incidents.set(inc.event_id, inc);
    if (isNew && inc.review === null) toast(`new alert on ${inc.camera_id}`);
    const page = currentPage();
    if (page.name === "events") renderEventRows();
    if (page.name === "event" && page.arg === inc.event_id) renderEventDetails(inc);
  });
}

// --- routing ---------------------------------------------------------------------------------------

function currentPage() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  return { name: name || "wall", arg: decodeURIComponent(rest.join("/")) };
}

function stopTimer() { if (state.timer) { clearInterval(state.timer); state.timer = null; } }

function route() {
  if (!state.me) return;
  stopTimer();
  const page = currentPage();
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.page === page.name || (page.name === "event" && a.dataset.page === "events"));
  }
  if (page.name === "events") renderEvents();
  else if (page.name === "event") renderEvent(page.arg);
  else if (page.name === "cameras") renderCameras();
  else renderWall();
}
window.addEventListener("hashchange", route);

// --- wall ------------------------------------------------------------------------------------------

function cellState(source, cell) {
  if (["backoff", "connecting"].includes(source.state)) return "reconnecting";
  if (["failed", "ended"].includes(source.state)) return source.state;
  if (cell.signal !== "ok") return "no signal";
  if (cell.alert_active) return "ALERT";
  if (cell.last_score !== null && cell.last_score >= state.me.pre_alert) return "pre-alert";
  return "quiet";
}

function sparkline(scores) {
  const w = 200, hgt = 40;
  // newest score at the right edge; one point per status poll that saw a new window
  const step = w / (SPARK_POINTS - 1);
  const pts = scores.map((s, i) => `${w - (scores.length - 1 - i) * step},${hgt - s * hgt}`).join(" ");
  const y = hgt - state.me.enter_threshold * hgt;
  return h("svg", { class: "spark", viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: "none" },
    h("line", { x1: 0, x2: w, y1: y, y2: y }), h("polyline", { points: pts }));
}

async function refreshWall(grid) {
  let cams;
  try { cams = (await api("api/cameras")).cameras; } catch (e) { return; }
  const tiles = [];
  for (const src of cams) {
    for (const cell of src.cells) {
      const hist = state.scores.get(cell.camera_id) || [];
      if (cell.last_score !== null && state.lastEnd.get(cell.camera_id) !== cell.last_window_end_s) {
        hist.push(cell.last_score);
        if (hist.length > SPARK_POINTS) hist.shift();
        state.lastEnd.set(cell.camera_id, cell.last_window_end_s);
      }
      state.scores.set(cell.camera_id, hist);
      const st = cellState(src, cell);
      tiles.push(h("div", { class: `tile ${st.replace(" ", "-")}`, "data-camera": cell.camera_id },
        h("div", { class: "meta" }, h("span", { class: "name" }, cell.camera_id),
          h("span", { class: `state ${st.replace(" ", "-")}` }, st)),
        framePicture(cell.camera_id),
        sparkline(hist),
        h("div", { class: "meta" },
          h("span", {}, `score ${fmtP(cell.last_score)}`),
          h("span", {}, `${cell.fps_analysed === null ? "-" : cell.fps_analysed.toFixed(1)} fps`),
          h("span", {}, `${cell.alerts} alerts`)),
        qualityLine(cell.quality)));
    }
    if (!src.cells.length) {
      tiles.push(h("div", { class: "tile" }, h("div", { class: "name" }, src.source_id),
        h("div", { class: "nopic" }, `${src.state}${src.error ? ": " + src.error : ""}`)));
    }
  }
  grid.replaceChildren(...(tiles.length ? tiles : [h("p", { class: "muted" }, "No cameras. Add one on the Cameras page.")]));
}

// The same <img> per camera across refreshes: a new src replaces the picture once it has loaded, so the
// tile never blinks; the query string only defeats the browser cache (the server sends no-store too).
function framePicture(cameraId) {
  let img = state.frames.get(cameraId);
  if (!img) {
    img = h("img", { class: "pic", alt: `latest frame of ${cameraId}` });
    img.addEventListener("error", () => img.classList.add("missing"));
    img.addEventListener("load", () => img.classList.remove("missing"));
    state.frames.set(cameraId, img);
  }
  img.src = `api/cameras/${encodeURIComponent(cameraId)}/frame.jpg?t=${Date.now()}`;
  return img;
}

function qualityLine(q) {
  if (!q || (q.review_precision === null && q.score_psi === null)) return null;
  const parts = [];
  if (q.review_precision !== null) parts.push(`precision ${fmtP(q.review_precision)} of ${q.reviews_counted}`);
  if (q.score_psi !== null) parts.push(`PSI ${q.score_psi.toFixed(2)}`);
  const warn = q.precision_warning || q.drift_warning;
  return h("div", { class: `meta quality${warn ? " warn" : ""}` }, h("span", {}, parts.join(" · ")));
}

function renderWall() {
  const grid = h("div", { class: "tiles", id: "wall" });
  main.replaceChildren(h("h1", {}, "Wall"), grid);
  refreshWall(grid);
  state.timer = setInterval(() => refreshWall(grid), 2000);
}

// --- events list -----------------------------------------------------------------------------------

const filters = { camera: "", tier: "", review: "", since: "", until: "" };

function reviewState(inc) { return inc.review ? inc.review.verdict : "unreviewed"; }

function matches(inc) {
  if (filters.camera && inc.camera_id !== filters.camera) return false;
  if (filters.tier && inc.tier !== filters.tier) return false;
  if (filters.review && reviewState(inc) !== filters.review) return false;
  const t = inc.first_logged_unix_s;
  if (filters.since && t < Date.parse(filters.since) / 1000) return false;
  if (filters.until && t >= Date.parse(filters.until) / 1000) return false;
  return true;
}

function select(id, key, options) {
  const el = h("select", { id, onchange: () => { filters[key] = el.value; renderEventRows(); } },
    options.map(([v, label]) => h("option", { value: v, selected: filters[key] === v }, label)));
  return el;
}

function renderEvents() {
  const all = [...state.incidents.values()];
  const cams = [...new Set(all.map((i) => i.camera_id))].sort();
  const tiers = [...new Set(all.map((i) => i.tier))].sort();
  const since = h("input", { type: "datetime-local", id: "f-since", value: filters.since,
    onchange: () => { filters.since = since.value; renderEventRows(); } });
  const until = h("input", { type: "datetime-local", id: "f-until", value: filters.until,
    onchange: () => { filters.until = until.value; renderEventRows(); } });
  main.replaceChildren(
    h("h1", {}, "Events"),
    h("div", { class: "filters" },
      select("f-camera", "camera", [["", "all cameras"], ...cams.map((c) => [c, c])]),
      select("f-tier", "tier", [["", "all tiers"], ...tiers.map((t) => [t, t])]),
      select("f-review", "review", [["", "any review state"], ["unreviewed", "unreviewed"],
        ["confirmed", "confirmed"], ["dismissed", "dismissed"]]),
      h("label", {}, "from ", since), h("label", {}, "to ", until)),
    h("table", { id: "events" }, h("thead", {}, h("tr", {},
      ["started", "camera", "tier", "state", "peak", "mean", "windows", "duration", "review"].map((c) => h("th", {}, c)))),
    h("tbody", { id: "event-rows" })));
  renderEventRows();
}

function renderEventRows() {
  const body = document.getElementById("event-rows");
  if (!body) return;
  const rows = [...state.incidents.values()].filter(matches)
    .sort((a, b) => (b.first_logged_unix_s || 0) - (a.first_logged_unix_s || 0))
    .map((inc) => h("tr", { class: "row", "data-event": inc.event_id, onclick: () => { location.hash = `#/event/${encodeURIComponent(inc.event_id)}`; } },
      h("td", {}, fmtTime(inc.first_logged_unix_s)), h("td", {}, inc.camera_id), h("td", {}, inc.tier),
      h("td", {}, h("span", { class: `badge ${inc.state}` }, inc.state)),
      h("td", {}, fmtP(inc.peak_probability)), h("td", {}, fmtP(inc.mean_probability)), h("td", {}, inc.windows),
      h("td", {}, `${((inc.end_s ?? inc.at_s) - inc.start_s).toFixed(1)} s`),
      h("td", {}, h("span", { class: `badge ${reviewState(inc)}` }, reviewState(inc)))));
  body.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No events match."))]));
}

// --- one event -------------------------------------------------------------------------------------

function traceChart(trace, start) {
  const w = 600, hgt = 160, pad = 20;
  const t0 = start, t1 = Math.max(...trace.map((p) => p.at_s), start + 1);
  const x = (t) => pad + ((t - t0) / (t1 - t0)) * (w - 2 * pad);
  const y = (p) => hgt - pad - p * (hgt - 2 * pad);
  const line = (key) => trace.map((p) => `${x(p.at_s)},${y(p[key])}`).join(" ");
  const thr = y(state.me.enter_threshold);
  return h("svg", { class: "trace", id: "trace", viewBox: `0 0 ${w} ${hgt}` },
    h("line", { x1: pad, x2: w - pad, y1: thr, y2: thr, stroke: "#555", "stroke-dasharray": "4 4" }),
    h("polyline", { class: "peak", points: line("peak") }), h("polyline", { class: "mean", points: line("mean") }),
    trace.map((p) => [h("circle", { class: "peak", cx: x(p.at_s), cy: y(p.peak), r: 3 }),
      h("circle", { class: "mean", cx: x(p.at_s), cy: y(p.mean), r: 3 })]),
    h("text", { x: pad, y: 12 }, "peak (red) and mean (blue) probability over the incident"),
    h("text", { x: pad, y: hgt - 4 }, `${t0.toFixed(1)} s`), h("text", { x: w - pad - 40, y: hgt - 4 }, `${t1.toFixed(1)} s`));
}

async function renderEvent(eventId) {
  main.replaceChildren(h("p", { class: "muted" }, "loading..."));
  let inc;
  try { inc = await api(`api/incidents/${encodeURIComponent(eventId)}`); } catch (e) {
    main.replaceChildren(h("p", { class: "error" }, e.message)); return;
  }
  const video = h("video", { id: "clip", controls: true, preload: "auto", muted: true, playsinline: true,
    src: `api/events/${encodeURIComponent(eventId)}/clip` });
  video.addEventListener("error", () => {
    document.getElementById("clip-note").textContent = inc.has_clip ? "the clip is not ready yet or cannot be played" : "no evidence clip";
  });
  main.replaceChildren(
    h("h1", {}, h("a", { href: "#/events" }, "Events"), ` / ${inc.camera_id} / ${eventId}`),
    h("div", { class: "event" },
      h("div", {}, video, h("div", { id: "clip-note", class: "muted" }), h("div", { id: "trace-box" })),
      h("div", {}, h("div", { id: "details" }), h("div", { id: "review-box" }))));
  renderEventDetails(inc);
}

// the peak window's probability from each ensemble member (older logs have none)
function membersList(members) {
  const names = Object.keys(members || {}).sort();
  if (!names.length) return h("dd", { class: "muted" }, "not logged for this event");
  return h("dd", { id: "members" }, h("ul", { class: "members" },
    names.map((n) => h("li", {}, h("span", {}, n), " ", h("b", {}, fmtP(members[n]))))));
}

function renderEventDetails(inc) {
  const details = document.getElementById("details");
  if (!details) return;
  document.getElementById("trace-box").replaceChildren(h("h2", {}, "Score trace"), traceChart(inc.trace, inc.start_s));
  const rv = inc.review;
  details.replaceChildren(h("dl", {},
    h("dt", {}, "camera"), h("dd", {}, inc.camera_id),
    h("dt", {}, "state"), h("dd", {}, inc.state + (inc.end_reason ? ` (${inc.end_reason})` : "")),
    h("dt", {}, "tier"), h("dd", {}, inc.tier),
    h("dt", {}, "stream time"), h("dd", {}, `${inc.start_s.toFixed(1)} s to ${(inc.end_s ?? inc.at_s).toFixed(1)} s`),
    h("dt", {}, "logged"), h("dd", {}, `${fmtTime(inc.first_logged_unix_s)} to ${fmtTime(inc.last_logged_unix_s)}`),
    h("dt", {}, "peak / mean"), h("dd", {}, `${fmtP(inc.peak_probability)} / ${fmtP(inc.mean_probability)} over ${inc.windows} windows`),
    h("dt", {}, "members"), membersList(inc.members),
    h("dt", {}, "review"), h("dd", { id: "review-state" },
      rv ? `${rv.verdict} by ${rv.user} at ${fmtTime(rv.reviewed_unix_s)}${rv.note ? ": " + rv.note : ""}` : "unreviewed")));
  const box = document.getElementById("review-box");
  if (!roleAtLeast("operator")) { box.replaceChildren(h("p", { class: "muted" }, "Reviewing needs the operator role.")); return; }
  if (box.childElementCount) return; // keep a note being typed when a live update arrives
  const note = h("textarea", { id: "review-note", rows: 3, placeholder: "note (optional)", maxlength: 2000 });
  const send = async (verdict) => {
    try {
      await api(`../v1/events/${encodeURIComponent(inc.event_id)}/review`, { method: "POST", body: { verdict, note: note.value || null } });
      const fresh = await api(`api/incidents/${encodeURIComponent(inc.event_id)}`);
      state.incidents.set(fresh.event_id, fresh);
      note.value = "";
      renderEventDetails(fresh);
      toast(`${verdict}`);
    } catch (e) { toast(e.message); }
  };
  box.replaceChildren(h("div", { class: "review" }, h("h2", {}, "Review"), note,
    h("div", {}, h("button", { class: "ok", id: "confirm", type: "button", onclick: () => send("confirmed") }, "Confirm"), " ",
      h("button", { class: "danger", id: "dismiss", type: "button", onclick: () => send("dismissed") }, "Dismiss (false alarm)"))));
}

// --- cameras ---------------------------------------------------------------------------------------

async function refreshCameras(table) {
  let cams;
  try { cams = (await api("api/cameras")).cameras; } catch (e) { return; }
  const admin = roleAtLeast("admin");
  const rows = [];
  for (const src of cams) {
    rows.push(h("tr", { "data-source": src.source_id },
      h("td", {}, h("strong", {}, src.source_id)), h("td", {}, src.url), h("td", {}, src.state),
      h("td", {}, src.fps_in === null ? "-" : src.fps_in.toFixed(1)), h("td", {}, src.frames_in),
      h("td", {}, `${src.reconnects} / ${src.corrupt_packets}`), h("td", {}, `${src.queued} / ${src.in_flight}`),
      h("td", {}, admin ? h("button", { class: "danger", type: "button", onclick: async () => {
        if (!confirm(`Remove camera ${src.source_id}?`)) return;
        try { await api(`api/cameras/${encodeURIComponent(src.source_id)}`, { method: "DELETE" }); toast(`removed ${src.source_id}`); }
        catch (e) { toast(e.message); }
        refreshCameras(table);
      } }, "Remove") : "")));
    for (const c of src.cells) {
      rows.push(h("tr", { class: "cell" }, h("td", {}, `\u2003${c.camera_id}`), h("td", { class: "muted" }, `signal ${c.signal}`),
        h("td", {}, c.alert_active ? "ALERT" : ""), h("td", {}, c.fps_analysed === null ? "-" : c.fps_analysed.toFixed(1)),
        h("td", {}, c.frames_analysed),
        h("td", { colspan: 3 }, `scored ${c.windows_scored}, dropped ${c.windows_dropped}, failed ${c.windows_failed}, ` +
          `no signal ${c.windows_no_signal}, cuts ${c.cuts}, alerts ${c.alerts}, last ${fmtP(c.last_score)}`)));
    }
  }
  table.tBodies[0].replaceChildren(...rows);
}

function renderCameras() {
  const table = h("table", { id: "cameras" }, h("thead", {}, h("tr", {},
    ["camera", "source", "state", "fps", "frames", "reconnects / corrupt", "queued / in flight", ""].map((c) => h("th", {}, c)))),
  h("tbody", {}));
  const parts = [h("h1", {}, "Cameras"), table];
  if (roleAtLeast("admin")) {
    const id = h("input", { id: "cam-id", placeholder: "id", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9_.-]*" });
    const url = h("input", { id: "cam-url", placeholder: "rtsp://... or file path", required: true, size: 40 });
    const grid = h("input", { id: "cam-grid", placeholder: "grid RxC (optional)", size: 14 });
    const form = h("form", { class: "inline", id: "add-camera" }, id, url, grid, h("button", { type: "submit" }, "Add camera"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const cam = { id: id.value, url: url.value };
      const m = /^(\d+)x(\d+)$/i.exec(grid.value.trim());
      if (m) cam.grid = { rows: +m[1], cols: +m[2] };
      try { await api("api/cameras", { method: "POST", body: cam }); toast(`added ${cam.id}`); form.reset(); }
      catch (e) { toast(e.message); }
      refreshCameras(table);
    });
    parts.push(h("h2", {}, "Add a camera"), form);
  } else {
    parts.push(h("p", { class: "muted" }, "Adding and removing cameras needs the admin role."));
  }
  main.replaceChildren(...parts);
  refreshCameras(table);
  state.timer = setInterval(() => refreshCameras(table), 3000);
}

start();
