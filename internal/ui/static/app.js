// Slipway UI: a single page over /api/v1. No framework and no build step: pages are functions that fetch JSON
// and build DOM nodes with el(), which only ever sets text (never HTML), so data from the API cannot inject markup.
"use strict";

const TOKEN_KEY = "slipway.token";
const PROJECT_KEY = "slipway.project"; // the project chosen in the header's switcher (sent as Slipway-Project)
const main = document.getElementById("main");
let timers = [];   // polls of the current page, stopped when the page changes
let pageSeq = 0;   // bumped per page: a late answer for a page the user left is dropped
let me = null;        // the signed-in token (whoami): its role decides which buttons are shown
let shownPath = null; // the page on screen: re-rendering it (a refresh) keeps it until the new one is built

// ---- DOM and formatting helpers ----

function el(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") n.className = v;
    else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else n.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    n.append(c instanceof Node ? c : String(c));
  }
  return n;
}

// fill replaces node's children; like el(), it skips null, undefined and false (replaceChildren would print them).
function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter(c => c !== undefined && c !== null && c !== false));
}

const link = (href, text) => el("a", { href: "/ui/" + href, "data-link": true }, text);
const enc = encodeURIComponent;

function badge(state) {
  const s = String(state || "");
  const cls = /^(READY|ACTIVE|SUCCEEDED|OK|yes|PROMOTED|passed|promoted)$/.test(s) ? "ok"
    : /^(FAILED|NEEDS_ATTENTION|REJECTED|ERROR|CANCELED|no|ROLLED_BACK|failed|rolled_back)$/.test(s) ? "bad"
    : /^(CREATING|UPDATING|RUNNING|IN_PROGRESS|ACCEPTED|PENDING|QUEUED|STARTING|DELETING|INACTIVE)$/.test(s) ? "warn" : "";
  return el("span", { class: "badge " + cls }, s);
}

function when(t) {
  if (!t) return "–";
  const d = new Date(t);
  const secs = (Date.now() - d.getTime()) / 1000;
  const ago = secs < 90 ? Math.round(secs) + " s ago" : secs < 5400 ? Math.round(secs / 60) + " min ago"
    : secs < 172800 ? Math.round(secs / 3600) + " h ago" : Math.round(secs / 86400) + " days ago";
  return el("span", { title: d.toISOString() }, ago);
}

// clockTime shows a time as local YYYY-MM-DD HH:MM:SS.
const clockTime = t => new Date(t).toLocaleString("sv-SE");

function num(v, digits = 3) {
  if (v === null || v === undefined || v === "") return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  return Number(v.toPrecision(digits)).toString();
}

function bytes(v) {
  if (!v) return "0 B";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return num(v) + " " + u[i];
}

const plural = (n, noun) => num(n) + " " + noun + (n === 1 ? "" : "s");

function kv(obj) {
  const entries = Object.entries(obj || {});
  if (!entries.length) return "–";
  return entries.map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : v)).join(", ");
}

function table(headers, rows, empty) {
  if (!rows.length) return el("p", { class: "muted" }, empty || "None.");
  return el("table", {},
    el("thead", {}, el("tr", {}, headers.map(h => el("th", { class: h.endsWith("#") ? "num" : "" }, h.replace(/#$/, ""))))),
    el("tbody", {}, rows.map(r => el("tr", {}, r.map((c, i) =>
      el("td", { class: headers[i].endsWith("#") ? "num" : "" }, c))))));
}

function props(pairs) {
  return el("dl", { class: "props" }, pairs.filter(p => p).map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

// ---- API ----

class APIError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

function token() { return sessionStorage.getItem(TOKEN_KEY) || localStorage.getItem(TOKEN_KEY); }

// authHeaders are every API call's: the token, and the project chosen in the switcher (none: the token's only
// project, else default).
function authHeaders() {
  const h = { Authorization: "Bearer " + token() };
  const p = sessionStorage.getItem(PROJECT_KEY);
  if (p) h["Slipway-Project"] = p;
  return h;
}

async function api(path, opts = {}) {
  const res = await fetch(path, { ...opts, headers: { ...authHeaders(), ...(opts.headers || {}) } });
  if (res.status === 401) {
    signOut("Your token was not accepted (" + await problemText(res) + "). Sign in again.");
    throw new APIError(401, "signed out");
  }
  if (!res.ok) throw new APIError(res.status, await problemText(res));
  const type = res.headers.get("Content-Type") || "";
  return type.includes("json") ? res.json() : res.text();
}

async function problemText(res) {
  try {
    const p = await res.json();
    return p.detail || p.title || res.statusText;
  } catch {
    return res.status + " " + res.statusText;
  }
}

function errorBox(err) {
  return el("div", { class: "error", role: "alert" }, err instanceof Error ? err.message : String(err));
}

// actionButton is a button that POSTs to path (after confirm, when given), shows the server's refusal next to
// it, and calls done after success. Only tokens that may change things see one: for the others the API would
// answer 403 anyway.
function actionButton(label, id, path, done, confirmText, method = "POST", body = undefined) {
  if (!canEdit()) return null;
  const status = el("span", { class: "action-status" });
  const button = el("button", { type: "button", id, onclick: async () => {
    if (confirmText && !window.confirm(confirmText)) return;
    button.disabled = true;
    fill(status, " working…");
    try {
      const res = await (body === undefined ? api(path, { method }) : sendJSON(path, method, body));
      fill(status);
      await done(res);
    } catch (err) {
      fill(status, errorBox(err));
    } finally {
      button.disabled = false;
    }
  } }, label);
  return el("span", { class: "action" }, button, status);
}

// actionForm is a form (only for tokens that may change things) whose submit runs send() and shows the server's
// refusal next to its button, keeping what the person typed.
function actionForm(id, label, fields, send) {
  if (!canEdit()) return null;
  const status = el("span", { class: "action-status" });
  const button = el("button", { type: "submit", id: id + "-submit" }, label);
  const form = el("form", { class: "action-form", id, onsubmit: async ev => {
    ev.preventDefault();
    if (!form.reportValidity()) return;
    button.disabled = true;
    fill(status, " working…");
    try {
      await send();
      fill(status);
    } catch (err) {
      fill(status, errorBox(err));
    } finally {
      button.disabled = false;
    }
  } }, fields.map(([text, input]) => el("label", {}, text, input)), button, status);
  return form;
}

// nameInput is a text field for a name of the API's form (models, deployments, aliases, tokens, rules), checked
// by the browser before the server refuses it.
const nameInput = (id, value = "") => el("input", { type: "text", id, value, required: true, pattern: "[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?",
  title: "1-64 lowercase letters, digits, '.', '_' or '-', starting and ending with a letter or digit" });
const numberInput = (id, value, min, max) => el("input", { type: "number", id, value: String(value), min: String(min), max: String(max), required: true });

async function sendJSON(path, method, body) {
  return api(path, { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

// ---- tokens (admin) ----

// tokensPage lists the API tokens (never their secrets, which the server does not keep), creates one and shows
// its secret once, and revokes.
async function tokensPage() {
  const listBox = el("div");
  const created = el("div", { id: "token-created" });
  async function refreshList() {
    const list = await api("/api/v1/tokens");
    fill(listBox, table(["name", "role", "id", "created", "last used", "expires", "revoked", ""], list.items.map(t => [
      t.name, t.role, el("code", {}, t.id), when(t.created_at), t.last_used_at ? when(t.last_used_at) : "never",
      t.expires_at ? when(t.expires_at) : "never", t.revoked_at ? when(t.revoked_at) : "–",
      t.revoked_at ? null : actionButton("Revoke", "revoke-" + t.name, "/api/v1/tokens/" + enc(t.id), refreshList,
        "Revoke token " + t.name + "? Everything using it is refused from now on.", "DELETE")]), "No tokens."));
  }
  await refreshList();
  const name = nameInput("token-name");
  const role = el("select", { id: "token-role" }, ["viewer", "predict", "editor", "admin"].map(r => el("option", { value: r }, r)));
  const form = actionForm("create-token", "Create", [["name", name], ["role", role]], async () => {
    const t = await sendJSON("/api/v1/tokens", "POST", { name: name.value, role: role.value });
    fill(created, el("div", { class: "note" }, "Token ", el("strong", {}, t.name), " (" + t.role + "). Copy it now: it is not shown again.",
      el("pre", { id: "token-secret" }, t.token)));
    name.value = "";
    await refreshList();
  });
  return el("div", {},
    el("h1", {}, "Tokens"),
    el("p", { class: "muted" }, "Roles: admin (everything), editor (register, deploy, run), viewer (read), predict (prediction endpoints only). Only a hash of each secret is stored."),
    created, listBox,
    el("h2", {}, "Create a token"), form);
}

// ---- audit log (admin) ----

// auditPage lists the audit log, newest page first, with filters, and checks its hash chain.
async function auditPage() {
  const params = new URLSearchParams(location.search);
  const inputs = {};
  for (const [key, hint] of [["actor", "token name or id"], ["target", "e.g. deployments/churn"], ["action", "e.g. createDeployment"], ["from", "24h or RFC 3339"]]) {
    inputs[key] = el("input", { id: "audit-" + key, name: key, placeholder: hint, value: params.get(key) || "" });
  }
  const filters = el("form", { class: "action-form", id: "audit-filter", onsubmit: ev => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, input] of Object.entries(inputs)) if (input.value.trim()) q.set(k, input.value.trim());
    navigate("/ui/audit" + (q.toString() ? "?" + q : ""));
  } }, Object.entries(inputs).map(([k, input]) => el("label", {}, k + " ", input)), el("button", { type: "submit" }, "Filter"));
  const q = new URLSearchParams();
  for (const k of Object.keys(inputs)) if (params.get(k)) q.set(k, params.get(k));
  q.set("limit", "1000");
  const page = await api("/api/v1/audit?" + q);
  const rows = page.items.slice().reverse().slice(0, 200).map(e => [
    e.seq, el("span", { title: e.time }, clockTime(e.time)), e.token_name || "–", e.action, e.target ? el("code", {}, e.target) : "–",
    e.status ? el("span", { class: "badge " + (e.status >= 400 ? "bad" : "ok") }, String(e.status)) : "–", e.problem || "–", e.client || "–"]);
  const verdict = el("div", { id: "audit-verify" });
  const verify = el("button", { id: "audit-verify-submit", onclick: async () => {
    const v = await api("/api/v1/audit/verify");
    fill(verdict, v.ok
      ? el("div", { class: "note" }, "The chain holds: " + plural(v.entries, "entry") + ", seq " + v.first_seq + " to " + v.last_seq + ". Head ", el("code", {}, v.head))
      : errorBox("The chain is broken at entry " + v.broken_at + ": " + v.reason));
  } }, "Verify the chain");
  return el("div", {},
    el("h1", {}, "Audit log"),
    el("p", { class: "muted" }, "Every call that may change state, every refused call, and the server's starts and stops. Entries are hash-chained: verifying recomputes every hash. Export with ",
      el("code", {}, "slipway audit export"), "."),
    filters, el("p", {}, verify, " ", verdict),
    table(["seq", "time", "actor", "action", "target", "status", "problem", "client"], rows, "No entries match."),
    page.items.length > 200 ? el("p", { class: "muted" }, "Showing the newest 200 of the first 1000 matches: narrow the filters, or use the CLI.") : null);
}

// ---- pages and routing ----

const routes = [
  [/^$/, () => navigate("/ui/deployments", true)],
  [/^models$/, modelsPage],
  [/^models\/([^/]+)$/, modelPage],
  [/^models\/([^/]+)\/versions\/(\d+)$/, versionPage],
  [/^deployments$/, deploymentsPage],
  [/^deployments\/([^/]+)$/, deploymentPage],
  [/^runs$/, runsPage],
  [/^runs\/(jr-[^/]+)$/, jobRunPage],
  [/^pipeline-runs\/(pr-[^/]+)$/, pipelineRunPage],
  [/^batch$/, batchListPage],
  [/^batch\/([^/]+)$/, batchPage],
  [/^schedules$/, schedulesPage],
  [/^tokens$/, tokensPage],
  [/^audit$/, auditPage],
];

function navigate(href, replace) {
  if (replace) history.replaceState(null, "", href); else history.pushState(null, "", href);
  render();
}

document.addEventListener("click", e => {
  const a = e.target.closest("a[data-link]");
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", render);

function stopTimers() {
  timers.forEach(clearInterval);
  timers = [];
}

// every runs fn now and then every ms while the page is shown.
function every(ms, fn) {
  fn();
  timers.push(setInterval(fn, ms));
}

async function render() {
  stopTimers();
  const seq = ++pageSeq;
  if (!token()) return loginPage();
  document.getElementById("nav").hidden = false;
  const path = decodeURIComponent(location.pathname.replace(/^\/ui\/?/, "").replace(/\/$/, ""));
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", path.startsWith(a.getAttribute("href").slice(4)));
  }
  for (const [re, page] of routes) {
    const m = path.match(re);
    if (!m) continue;
    if (shownPath !== path) fill(main, el("p", { class: "muted" }, "Loading…"));
    shownPath = path;
    try {
      const node = await page(...m.slice(1));
      if (node && seq === pageSeq) fill(main, node);
    } catch (err) {
      if (seq === pageSeq && !(err instanceof APIError && err.status === 401)) fill(main, errorBox(err));
    }
    return;
  }
  fill(main, el("h1", {}, "Not found"), el("p", {}, "No page at ", el("code", {}, location.pathname), ". ",
    link("deployments", "Go to the deployments.")));
}

// ---- sign in ----

function loginPage(message) {
  shownPath = null;
  document.getElementById("nav").hidden = true;
  document.getElementById("who").replaceChildren();
  const input = el("input", { type: "password", id: "token", autocomplete: "off", placeholder: "token", required: true });
  const remember = el("input", { type: "checkbox", id: "remember" });
  const status = el("div");
  const form = el("form", { class: "login", onsubmit: async e => {
    e.preventDefault();
    const t = input.value.trim();
    const res = await fetch("/api/v1/whoami", { headers: { Authorization: "Bearer " + t } });
    if (!res.ok) {
      fill(status, errorBox("Sign-in failed: " + await problemText(res)));
      return;
    }
    (remember.checked ? localStorage : sessionStorage).setItem(TOKEN_KEY, t);
    showWho(await res.json());
    render();
  } },
  el("h1", {}, "Sign in"),
  el("p", {}, "Paste an API token. The server wrote the admin token to ", el("code", {}, "DATA_DIR/admin.token"),
    " on first start; ", el("code", {}, "slipway tokens create NAME --role viewer"), " makes a read-only one."),
  message ? el("div", { class: "note" }, message) : null,
  input,
  el("label", {}, remember, " Remember on this browser (otherwise until the tab closes)"),
  el("p", {}, el("button", { type: "submit" }, "Sign in")),
  status);
  fill(main, form);
  input.focus();
}

function signOut(message) {
  me = null;
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(PROJECT_KEY);
  localStorage.removeItem(TOKEN_KEY);
  stopTimers();
  loginPage(message);
}

// myRole is the token's role in the project the pages show: its global role, else its role in that project.
const myRole = () => me ? (me.role || (me.projects || {})[me.project] || "") : "";
const canEdit = () => myRole() === "editor" || myRole() === "admin";

function showWho(who) {
  me = who;
  for (const admin of ["/ui/tokens", "/ui/audit"]) document.querySelector('#nav a[href="' + admin + '"]').hidden = me.role !== "admin";
  const picker = el("select", { id: "project", title: "Project", "aria-label": "Project" });
  picker.onchange = async () => {
    sessionStorage.setItem(PROJECT_KEY, picker.value);
    showWho(await api("/api/v1/whoami"));
    shownPath = null;
    render();
  };
  fill(picker, el("option", { value: me.project || "" }, me.project || "project…"));
  fill(document.getElementById("who"), picker, " ", me.name + " (" + myRole() + ")",
    el("button", { type: "button", id: "signout", onclick: () => signOut() }, "Sign out"));
  // The switcher lists the projects this token may see (one only: the select is just a label).
  api("/api/v1/projects").then(list => {
    fill(picker, list.items.map(p => el("option", { value: p.name, selected: p.name === me.project }, p.name)));
    if (!me.project && list.items.length) picker.onchange(); // a token of several projects: start in the first
  }).catch(() => {});
}

// ---- catalog ----

async function modelsPage() {
  const list = await api("/api/v1/models?limit=500");
  return el("div", {},
    el("h1", {}, "Models"),
    el("p", { class: "muted" }, plural(list.total, "model") + ". Register one below or with ", el("code", {}, "slipway models push DIR --model NAME"), "."),
    table(["model", "latest#", "aliases", "tags", "updated"], list.items.map(m => [
      link("models/" + enc(m.name), m.name), m.latest_version, kv(m.aliases), kv(m.tags), when(m.updated_at)]),
    "No models yet."),
    registerForm());
}

// registerForm uploads an artifact (an archive or a single model file) and its optional metadata.json as a new
// version, waits for the registration checks, and opens the version's page (READY, or FAILED with the checks).
function registerForm() {
  const model = nameInput("register-model");
  const artifact = el("input", { type: "file", id: "register-artifact", required: true });
  const metadata = el("input", { type: "file", id: "register-metadata", accept: ".json,application/json" });
  const form = actionForm("register", "Register", [["model", model], ["artifact (.zip, .tar.gz or one model file)", artifact],
    ["metadata.json (optional)", metadata]], async () => {
    const body = new FormData();
    if (metadata.files.length) body.append("metadata", metadata.files[0]);
    body.append("artifact", artifact.files[0]);
    const v = await api("/api/v1/models/" + enc(model.value) + "/versions", { method: "POST", body });
    navigate("/ui/models/" + enc(v.model) + "/versions/" + v.version);
  });
  return form && [el("h2", {}, "Register a version"),
    el("p", { class: "muted" }, "The upload is checked as the CLI's is: the model is loaded in a replica and given its sample input."), form];
}

async function modelPage(name) {
  const [model, versions] = await Promise.all([
    api("/api/v1/models/" + enc(name)), api("/api/v1/models/" + enc(name) + "/versions?limit=500")]);
  const aliasesOf = v => Object.entries(model.aliases || {}).filter(([, n]) => n === v.version).map(([a]) => "@" + a).join(" ");
  return el("div", {},
    el("div", { class: "crumbs" }, link("models", "Models"), " / ", name),
    el("h1", {}, name),
    model.description ? el("p", {}, model.description) : null,
    props([["aliases", kv(model.aliases)], ["tags", kv(model.tags)], ["created", when(model.created_at)]]),
    el("h2", {}, "Versions"),
    table(["version#", "state", "runtime", "aliases", "metrics", "created by", "created"], versions.items.map(v => [
      link("models/" + enc(name) + "/versions/" + v.version, String(v.version)), badge(v.state), v.runtime,
      aliasesOf(v), kv(v.metrics), v.created_by, when(v.created_at)]), "No versions."));
}

async function versionPage(name, version) {
  const v = await api("/api/v1/models/" + enc(name) + "/versions/" + version);
  const columns = s => table(["column", "dtype", "shape", "allowed"], ((s && s.columns) || []).map(c => [
    c.name, c.dtype, c.shape ? JSON.stringify(c.shape) : "", c.allowed ? c.allowed.join(", ") : ""]), "No schema.");
  return el("div", {},
    el("div", { class: "crumbs" }, link("models", "Models"), " / ", link("models/" + enc(name), name), " / version " + version),
    el("h1", {}, name + " version " + version, " ", badge(v.state)),
    v.description ? el("p", {}, v.description) : null,
    v.reason ? el("div", { class: "error" }, v.reason) : null,
    props([["runtime", v.runtime], ["created", [when(v.created_at), " by ", v.created_by]],
      ["aliases", (v.aliases || []).map(a => "@" + a).join(" ") || "–"], ["digest", el("code", {}, v.digest)],
      ["size", bytes(v.size)], ["tags", kv(v.tags)]]),
    el("h2", {}, "Checks at registration"),
    table(["check", "result", "message"], (v.checks || []).map(c => [el("code", {}, c.id), badge(c.passed ? "yes" : "no"), c.message])),
    el("h2", {}, "Metrics"), props(Object.entries(v.metrics || {}).map(([k, x]) => [k, num(x, 4)])),
    el("h2", {}, "Provenance"), props(Object.entries(v.provenance || {}).map(([k, x]) => [k, String(x)])),
    v.taxonomy ? [el("h2", {}, "Taxonomy"), props(Object.entries(v.taxonomy).map(([k, x]) => [k, typeof x === "object" ? kv(x) : String(x)]))] : null,
    v.environment ? [el("h2", {}, "Environment"), props([["python", v.environment.python || "–"], ["packages", kv(v.environment.packages)]])] : null,
    el("h2", {}, "Input schema"), columns(v.input_schema),
    el("h2", {}, "Output schema"), columns(v.output_schema),
    el("h2", {}, "Files"),
    table(["path", "size#", "sha256"], (v.files || []).map(f => [f.path, bytes(f.size), el("code", {}, f.sha256.slice(0, 16) + "…")])),
    v.state === "READY" ? deployForm(name, Number(version)) : null,
    v.state === "READY" ? aliasForm(name, Number(version)) : null);
}

// aliasForm points an alias (champion, staging, ...) at this version; deployments that follow it move too.
function aliasForm(model, version) {
  const alias = nameInput("alias-name", "champion");
  const form = actionForm("set-alias", "Point here", [["alias", alias]], async () => {
    await sendJSON("/api/v1/models/" + enc(model) + "/aliases/" + enc(alias.value), "PUT", { version });
    await render();
  });
  return form && [el("h2", {}, "Alias"), el("p", { class: "muted" }, "Deployments that follow the alias move to this version."), form];
}

// deployForm creates a deployment of this version; the deployment's page follows it from CREATING to ACTIVE.
function deployForm(model, version) {
  const name = nameInput("deploy-name", model);
  const replicas = numberInput("deploy-replicas", 1, 1, 64);
  const batch = numberInput("deploy-batch", 0, 0, 100000);
  const form = actionForm("deploy", "Deploy", [["name", name], ["replicas", replicas], ["batch rows (0: off)", batch]], async () => {
    const spec = { name: name.value, model, version, replicas: Number(replicas.value) };
    if (Number(batch.value) > 1) spec.batching = { max_batch_size: Number(batch.value), max_wait_ms: 0 };
    const d = await sendJSON("/api/v1/deployments", "POST", spec);
    navigate("/ui/deployments/" + enc(d.name));
  });
  return form && [el("h2", {}, "Deploy this version"), form];
}

// ---- deployments ----

async function deploymentsPage() {
  const list = await api("/api/v1/deployments?limit=500");
  return el("div", {},
    el("h1", {}, "Deployments"),
    el("p", { class: "muted" }, plural(list.total, "deployment") + ". Create one from a model version's page or with ", el("code", {}, "slipway deploy NAME --model MODEL@ALIAS"), "."),
    table(["deployment", "state", "model", "replicas", "canary / shadow", "updated"], list.items.map(d => [
      link("deployments/" + enc(d.name), d.name), badge(d.state), d.model + ":" + d.version + aliasNote(d),
      readyCount(d) + " / " + d.replicas, sides(d), when(d.updated_at)]), "No deployments yet."));
}

// aliasNote says whether a deployment made by an alias follows it or stays on the version it named then.
const aliasNote = d => !d.alias ? "" : d.follow_alias ? " (follows @" + d.alias + ")" : " (pinned, from @" + d.alias + ")";
const readyCount = d => (d.replica_status || []).filter(r => r.state === "READY").length;
const sides = d => [d.canary ? "canary v" + d.canary.version + " " + d.canary.weight + "%" + (d.canary.analysis ? " (analysed)" : "") : "",
  d.shadow ? "shadow v" + d.shadow.version + (d.shadow.compare ? " (compared)" : "") : ""].filter(Boolean).join(", ") || "–";

// replicasNote says how many replicas serve, and how they scale.
function replicasNote(d) {
  const a = d.autoscaling;
  let note = d.scaled_to_zero ? "scaled to zero: the next request starts a replica" : d.ready_replicas + " ready of " + (a ? (d.autoscaling_status || {}).current : d.replicas);
  if (a) note += " (autoscaling " + a.min_replicas + "–" + a.max_replicas + ", " + a.target_in_flight + " requests in flight per replica)";
  if (d.load === "lazy") note += "; lazy: the first request starts the replicas";
  return note;
}

// autoscalingSection shows what the autoscaler sees and its last decisions (cold starts included).
function autoscalingSection(d) {
  const st = d.autoscaling_status;
  if (!d.autoscaling || !st) return [];
  return [el("h2", {}, "Autoscaling"),
    props([["replicas", st.current + " now, " + st.desired + " desired"], ["load", st.load.toFixed(2) + " requests in flight or queued"],
      ["policy", d.autoscaling.min_replicas + "–" + d.autoscaling.max_replicas + " replicas, target " + d.autoscaling.target_in_flight +
        " per replica, scale down after " + d.autoscaling.scale_down_after_s + " s of low load"]]),
    table(["when", "side", "version#", "change", "load#", "reason"], st.decisions.map(x => [
      when(x.at), x.side, x.version, x.direction + " " + x.from + " → " + x.to, x.load.toFixed(2), x.reason]), "No scaling decisions yet.")];
}

// rolloutStep is a rollout step as the CLI writes it: shadow=10m, canary=50:10m.
function rolloutStep(s) {
  return s.shadow ? "shadow=" + s.shadow : "canary=" + s.canary + ":" + s.for;
}

// rolloutsSection shows a deployment's latest rollouts: state, steps (the current one marked), and every
// decision with the gates' evidence; a running one can be canceled.
function rolloutsSection(base, rs, refresh) {
  if (!rs.length) return [el("p", { class: "muted" }, "No rollouts. A rollout moves a candidate version through shadow and canary steps, " +
    "judged by gates (slipway rollouts start, or POST " + base + "/rollouts).")];
  return rs.slice(0, 5).map(r => el("div", { class: "rollout", id: "rollout-" + r.id },
    el("h3", {}, "Rollout " + r.id + ": version " + r.from_version + " → " + r.version + " ", badge(r.state),
      r.state === "RUNNING" ? actionButton("Cancel", "cancel-rollout-" + r.id, base + "/rollouts/" + enc(r.id) + "/cancel", refresh,
        "Cancel the rollout of version " + r.version + "? Its canary or shadow is removed; version " + r.from_version + " keeps serving.") : null),
    el("p", {}, r.steps.map((s, i) => el("span", { class: i === r.step && r.state === "RUNNING" ? "badge warn" : "" },
      (i + 1) + ". " + rolloutStep(s))).flatMap((x, i) => i ? [" → ", x] : [x]),
    r.state === "RUNNING" ? " (step " + (r.step + 1) + ", " + (r.step_phase || "") + ")" : ""),
    r.reason ? el("div", { class: r.state === "PROMOTED" ? "note" : "error" }, r.reason) : null,
    table(["time", "step#", "decision", "why", "gates"], r.decisions.slice().reverse().map(d => [
      when(d.time), d.step + 1, badge(d.action), d.message,
      (d.checks || []).map(c => el("div", { class: c.passed ? "" : "error" },
        (c.passed ? "✓ " : "✗ ") + c.gate + " " + num(c.threshold) + ": " + c.evidence))]), "No decision yet.")));
}

// replaysSection shows a deployment's latest replays: progress, and the report of a finished one.
function replaysSection(base, rs, refresh) {
  if (!rs.length) return [el("p", { class: "muted" }, "No replays. A replay sends captured requests to a candidate version offline " +
    "and compares its answers with the live ones (slipway replays start, or POST " + base + "/replays).")];
  return rs.slice(0, 3).map(r => el("div", { class: "replay", id: "replay-" + r.id },
    el("h3", {}, "Replay " + r.id + ": version " + r.spec.version + ", " + r.sent + " of " + r.total + " requests ", badge(r.state),
      r.state === "RUNNING" ? actionButton("Cancel", "cancel-replay-" + r.id, base + "/replays/" + enc(r.id) + "/cancel", refresh,
        "Cancel the replay to version " + r.spec.version + "? Its replicas stop.") : null),
    r.reason ? el("p", { class: r.state === "FAILED" ? "error" : "muted" }, r.reason) : null,
    r.report && r.report.requests ? shadowReport(r.report, "Replayed version " + r.report.version + " against the captured answers of version " +
      r.report.live_version + ", " + when(r.spec.from) + " to " + when(r.spec.to)) : null));
}

async function deploymentPage(name) {
  const base = "/api/v1/deployments/" + enc(name);
  const d = await api(base);
  const summary = el("div");
  const charts = el("div", { class: "charts" });
  const drift = el("div");
  const shadow = el("div", { id: "shadow-comparison" });
  const quality = el("div", { id: "performance" });
  const rollouts = el("div", { id: "rollouts" });
  const replays = el("div", { id: "replays" });
  const alerts = el("div");
  const logs = el("pre", { class: "log", id: "deployment-log" });
  const range = el("select", { id: "range", onchange: () => refreshMetrics() },
    ["60m", "6h", "24h"].map(r => el("option", { value: r }, "last " + r.replace("m", " min").replace("h", " h"))));
  const driftRange = el("select", { id: "drift-range", onchange: () => refreshDrift() },
    el("option", { value: "1h" }, "last hour"), el("option", { value: "24h" }, "last 24 h"),
    el("option", { value: "" }, "last full drift window (stored)"));
  const seq = pageSeq;

  const showSummary = d => fill(summary,
    el("h1", {}, name, " ", badge(d.state)),
    el("div", { class: "toolbar" },
      d.state === "INACTIVE"
        ? actionButton("Activate", "activate", base + "/activate", refreshDetails)
        : actionButton("Deactivate", "deactivate", base + "/deactivate", refreshDetails,
          "Deactivate " + name + "? Its replicas stop and its URLs answer 503 until it is activated again."),
      d.canary ? actionButton("Promote canary", "promote-canary", base, refreshDetails,
        "Make version " + d.canary.version + " the deployment's version (all traffic)?", "PATCH",
        { version: d.canary.version, canary: { weight: 0 } }) : null,
      d.canary ? actionButton("Remove canary", "remove-canary", base, refreshDetails,
        "Remove the canary (version " + d.canary.version + ")? Its traffic goes back to version " + d.version + ".", "PATCH",
        { canary: { weight: 0 } }) : null),
    d.reason ? el("div", { class: "error" }, d.reason) : null,
    props([["model", [link("models/" + enc(d.model), d.model), " version ",
      link("models/" + enc(d.model) + "/versions/" + d.version, String(d.version)), aliasNote(d)]],
    ["replicas", replicasNote(d)], ["canary / shadow", sides(d)],
    ...(d.holdout ? [["holdout", num(d.holdout.share * 100) + "% of the requests (Slipway-Holdout: true)"]] : []),
    ["batching", d.batching ? "up to " + d.batching.max_batch_size + " rows, wait " + d.batching.max_wait_ms + " ms" : "off"],
    ["timeout", d.timeout_ms + " ms"], ["queue", d.max_queue + " requests"],
    ["URLs", Object.values(d.urls || {}).map(u => el("div", {}, el("code", {}, location.origin + u)))]]),
    el("h2", {}, "Replicas"),
    table(["replica", "version#", "state", "pid#", "restarts#", "in flight#", "started", "last error"], (d.replica_status || []).map(r => [
      r.id, r.version, badge(r.state), r.pid || r.address || "–", r.restarts, r.in_flight, when(r.started_at), r.last_error || ""])),
    ...autoscalingSection(d));
  showSummary(d);
  const update = await updateForm(d, base, () => refreshDetails()).catch(errorBox);

  async function refreshMetrics() {
    try {
      const m = await api(base + "/metrics?from=" + range.value);
      if (seq !== pageSeq) return;
      fill(charts, ...metricCharts(m));
    } catch (err) { if (seq === pageSeq) fill(charts, errorBox(err)); }
  }
  async function refreshDetails() {
    try {
      const fresh = await api(base);
      if (seq === pageSeq) showSummary(fresh);
    } catch (err) { if (seq === pageSeq) fill(summary, errorBox(err)); }
  }
  async function refreshDrift() {
    try {
      const r = await api(base + "/drift" + (driftRange.value ? "?from=" + driftRange.value : ""));
      if (seq === pageSeq) fill(drift, driftReport(r));
    } catch (err) {
      if (seq === pageSeq) fill(drift, el("div", { class: "note" }, err.message));
    }
  }
  async function refreshShadow() {
    if (!d.shadow || !d.shadow.compare) {
      fill(shadow, el("p", { class: "muted" }, d.shadow
        ? "The shadow's answers are dropped: update the deployment with \"shadow\": {\"compare\": true} to compare them."
        : "No shadow. A shadow gets a copy of every request; with \"compare\": true its answers are compared with the live ones here."));
      return;
    }
    try {
      const r = await api(base + "/shadow?from=24h");
      if (seq === pageSeq) fill(shadow, shadowReport(r));
    } catch (err) { if (seq === pageSeq) fill(shadow, errorBox(err)); }
  }
  async function refreshQuality() {
    try {
      const r = await api(base + "/performance?from=24h");
      if (seq === pageSeq) fill(quality, performanceReport(r.items || []));
    } catch (err) { if (seq === pageSeq) fill(quality, errorBox(err)); }
  }
  async function refreshRollouts() {
    try {
      const r = await api(base + "/rollouts");
      if (seq === pageSeq) fill(rollouts, ...rolloutsSection(base, r.items || [], refreshRollouts));
    } catch (err) { if (seq === pageSeq) fill(rollouts, errorBox(err)); }
  }
  async function refreshReplays() {
    try {
      const r = await api(base + "/replays");
      if (seq === pageSeq) fill(replays, ...replaysSection(base, r.items || [], refreshReplays));
    } catch (err) { if (seq === pageSeq) fill(replays, errorBox(err)); }
  }
  async function refreshAlerts() {
    try {
      const [rules, h] = await Promise.all([api(base + "/alerts"), api(base + "/alerts/history?limit=20")]);
      if (seq !== pageSeq) return;
      fill(alerts,
        table(["rule", "watches", "window", "then", "state", "value#", ""], (rules.items || []).map(r => [
          r.name, r.metric + " " + r.op + " " + num(r.threshold), r.window, alertThen(r), badge(r.state), num(r.value),
          actionButton("Delete", "delete-alert-" + r.name, base + "/alerts/" + enc(r.id), refreshAlerts,
            "Delete the alert rule " + r.name + "?", "DELETE")]), "No alert rules."),
        el("h3", {}, "History"),
        table(["time", "rule", "state", "value#", "threshold#", "message"], (h.items || []).map(a => [
          when(a.time), a.rule, badge(a.state), num(a.value), num(a.threshold), a.message]), "No alert has changed state."));
    } catch (err) { if (seq === pageSeq) fill(alerts, errorBox(err)); }
  }
  const alertRule = await alertForm(base, () => refreshAlerts()).catch(errorBox);
  let after = null;
  const lines = [];
  async function refreshLogs() {
    try {
      const q = after === null ? "since=15m&limit=1000" : "after=" + after + "&limit=1000";
      const page = await api(base + "/logs?" + q);
      if (seq !== pageSeq) return;
      if (page.next !== undefined && page.next !== null) after = page.next;
      for (const l of page.items || []) lines.push(l.time + " " + l.kind + (l.replica ? " " + l.replica : "") + " " + l.line);
      lines.splice(0, Math.max(0, lines.length - 200));
      logs.textContent = lines.length ? lines.join("\n") : "No log lines in the last 15 minutes.";
      logs.scrollTop = logs.scrollHeight;
    } catch (err) { if (seq === pageSeq) logs.textContent = err.message; }
  }

  every(5000, refreshMetrics);
  timers.push(setInterval(refreshDetails, 5000));
  every(5000, refreshLogs);
  every(60000, refreshDrift);
  every(30000, refreshShadow);
  every(60000, refreshQuality);
  every(3000, refreshRollouts);
  every(3000, refreshReplays);
  every(30000, refreshAlerts);
  return el("div", {},
    el("div", { class: "crumbs" }, link("deployments", "Deployments"), " / ", name),
    summary,
    update,
    el("h2", {}, "Traffic"),
    el("div", { class: "toolbar" }, range, el("span", { class: "muted" }, "per minute, refreshed every 5 s; the last point is the minute in progress")),
    charts,
    el("h2", {}, "Input drift"),
    el("div", { class: "toolbar" }, driftRange),
    drift,
    el("h2", {}, "Model quality"), quality,
    el("h2", {}, "Rollouts"), rollouts,
    el("h2", {}, "Shadow comparison"), shadow,
    el("h2", {}, "Replays"), replays,
    el("h2", {}, "Alerts"), alerts, alertRule,
    el("h2", {}, "Logs"), logs);
}

// updateForm moves a deployment to another READY version of its model and/or another replica count, with
// the zero-downtime update of the API (new replicas ready before the switch). Only changed fields are sent.
async function updateForm(d, base, done) {
  if (!canEdit()) return null;
  const versions = await api("/api/v1/models/" + enc(d.model) + "/versions?limit=500");
  const version = el("select", { id: "update-version" }, versions.items.filter(v => v.state === "READY").map(v =>
    el("option", { value: String(v.version), selected: v.version === d.version }, "version " + v.version + (v.version === d.version ? " (serving)" : ""))));
  const replicas = numberInput("update-replicas", d.replicas, 1, 64);
  const form = actionForm("update", "Apply", [["version", version], ["replicas", replicas]], async () => {
    const patch = {};
    if (Number(version.value) !== d.version) patch.version = Number(version.value);
    if (Number(replicas.value) !== d.replicas) patch.replicas = Number(replicas.value);
    if (!Object.keys(patch).length) throw new Error("Nothing to change: pick another version or replica count.");
    const fresh = await sendJSON(base, "PATCH", patch);
    d.version = fresh.version;
    d.replicas = fresh.replicas;
    await done();
  });
  const ready = versions.items.filter(v => v.state === "READY");
  const canaryVersion = el("select", { id: "canary-version" }, ready.map(v => el("option", { value: String(v.version) }, "version " + v.version)));
  const weight = numberInput("canary-weight", 10, 1, 99);
  // The analysis promotes by setting the version, which a deployment following an alias refuses.
  const analysis = el("input", { type: "checkbox", id: "canary-analysis", checked: !d.follow_alias });
  const canary = actionForm("canary", "Start canary", [["version", canaryVersion], ["% of requests", weight],
    ["analysis (promote or remove it by its error rate)", analysis]], async () => {
    await sendJSON(base, "PATCH", { canary: { version: Number(canaryVersion.value), weight: Number(weight.value),
      analysis: analysis.checked ? {} : null } });
    await done();
  });
  return [el("h2", {}, "Update"),
    d.follow_alias ? el("p", { class: "muted" }, "Picking another version pins it: the deployment stops following @" + d.alias + ".") : null, form,
    el("h2", {}, "Canary"),
    el("p", { class: "muted" }, "A share of the requests goes to another version, on its own replica; starting one replaces the current canary. " +
      "Promote or remove it with the buttons at the top, or let the analysis decide (every 60 s with at least 50 canary requests: " +
      "removed at the first interval with more than 1% 5xx, promoted after 5 passed)."), canary];
}

const alertThen = r => [r.webhook ? "webhook " + r.webhook.url : "", r.action ? "start " + r.action.kind + " " + r.action.target : ""]
  .filter(Boolean).join(", ") || "log only";

// alertForm adds a rule to the deployment: a figure above or below a threshold over a window, posted to a
// webhook and/or starting a pipeline (retraining) when it fires.
async function alertForm(base, done) {
  if (!canEdit()) return null;
  const pipelines = await api("/api/v1/pipelines");
  const name = nameInput("alert-name");
  const metric = el("select", { id: "alert-metric" }, ["drift_share", "error_rate", "latency_p99_ms", "requests", "accuracy", "precision",
    "recall", "f1", "roc_auc", "log_loss", "mae", "rmse", "r2", "estimated_accuracy", "estimated_precision", "estimated_recall",
    "estimated_f1", "estimated_roc_auc"].map(m => el("option", { value: m }, m)));
  const op = el("select", { id: "alert-op" }, el("option", { value: "above" }, "above"), el("option", { value: "below" }, "below"));
  const threshold = el("input", { type: "number", id: "alert-threshold", step: "any", required: true });
  const windowInput = el("input", { type: "text", id: "alert-window", value: "1h", required: true, pattern: "[0-9]+(s|m|h)", title: "a duration such as 15m or 1h" });
  const webhook = el("input", { type: "url", id: "alert-webhook", placeholder: "https://… (optional)" });
  const pipeline = el("select", { id: "alert-pipeline" }, el("option", { value: "" }, "none"),
    pipelines.items.map(p => el("option", { value: p.name }, p.name)));
  const form = actionForm("alert", "Add rule", [["name", name], ["figure", metric], ["is", op], ["threshold", threshold],
    ["over", windowInput], ["webhook", webhook], ["start pipeline", pipeline]], async () => {
    const rule = { name: name.value, metric: metric.value, op: op.value, threshold: Number(threshold.value), window: windowInput.value };
    if (webhook.value) rule.webhook = { url: webhook.value };
    if (pipeline.value) rule.action = { kind: "pipeline", target: pipeline.value };
    await sendJSON(base + "/alerts", "POST", rule);
    name.value = "";
    await done();
  });
  return [el("h3", {}, "Add an alert rule"), form];
}

// metricCharts draws the minute points. The minute in progress is added where it means something already:
// its request counts, its latency once it has requests, the replicas' CPU and memory once they were sampled.
function metricCharts(m) {
  const full = m.points || [];
  const cur = m.current && m.current.time ? m.current : null;
  const upToNow = ready => (cur && ready(cur) ? full.concat([cur]) : full);
  const series = (pts, field, label, scale = 1) => ({ label, points: pts.map(p => [Date.parse(p.time), (p[field] || 0) * scale]) });
  const requests = upToNow(() => true), latency = upToNow(c => c.requests > 0), replicas = upToNow(c => c.replicas > 0);
  return [
    lineChart("Requests per minute", "requests-chart", [series(requests, "status_2xx", "2xx"), series(requests, "status_4xx", "4xx"),
      series(requests, "status_5xx", "5xx"), series(requests, "rejected", "429 rejected")]),
    lineChart("Latency (ms)", "latency-chart", [series(latency, "latency_p50_ms", "p50"), series(latency, "latency_p99_ms", "p99"),
      series(latency, "latency_max_ms", "max")]),
    lineChart("Replica CPU (% of one core)", "cpu-chart", [series(replicas, "cpu_utilization", "CPU", 100)]),
    lineChart("Replica memory (MiB)", "memory-chart", [series(replicas, "memory_bytes", "resident", 1 / 1048576)]),
  ];
}

// lineChart draws series of [time ms, value] points as an SVG line chart with a value axis from 0.
function lineChart(title, id, series) {
  const W = 400, H = 150, L = 44, B = 18, T = 6, R = 8;
  const all = series.flatMap(s => s.points);
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n);
    return n;
  };
  const wrap = el("div", { class: "chart", id, "data-points": String(all.length) }, el("h3", {}, title));
  if (!all.length) {
    add("text", { x: L, y: H / 2 }, "no requests in this range yet");
    wrap.append(svg);
    return wrap;
  }
  const t0 = Math.min(...all.map(p => p[0])), t1 = Math.max(...all.map(p => p[0]), t0 + 60000);
  const vmax = niceMax(Math.max(...all.map(p => p[1])));
  const x = t => L + (W - L - R) * (t - t0) / (t1 - t0);
  const y = v => T + (H - T - B) * (1 - v / vmax);
  for (const f of [0, 0.5, 1]) {
    add("line", { class: "grid", x1: L, x2: W - R, y1: y(vmax * f), y2: y(vmax * f) });
    add("text", { x: L - 4, y: y(vmax * f) + 3, "text-anchor": "end" }, num(vmax * f));
  }
  const clock = t => new Date(t).toTimeString().slice(0, 5);
  add("text", { x: L, y: H - 4 }, clock(t0));
  add("text", { x: W - R, y: H - 4, "text-anchor": "end" }, clock(t1));
  series.forEach((s, i) => {
    if (!s.points.length) return;
    add("polyline", { class: "s" + i, points: s.points.map(p => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ") });
    if (s.points.length <= 30) { // a point or a few: show them, a line through one point is invisible
      for (const p of s.points) add("circle", { class: "s" + i, cx: x(p[0]).toFixed(1), cy: y(p[1]).toFixed(1), r: 2.2 });
    }
  });
  const last = s => s.points.length ? num(s.points[s.points.length - 1][1]) : "–";
  wrap.append(svg, el("div", { class: "legend" }, series.map((s, i) => el("span", {}, el("i", { class: "s" + i }), s.label + " " + last(s)))));
  return wrap;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  return [1, 2, 5, 10].map(m => m * p).find(m => m >= v);
}

function driftReport(r) {
  const features = (r.features || []).concat((r.outputs || []).map(o => ({ ...o, feature: o.feature + " (output)" })));
  return el("div", { id: "drift-report" },
    el("p", {}, r.dataset_drift ? badge("DRIFT") : badge("OK"), " ",
      num(r.rows) + " rows captured from " + clockTime(r.from) + " to " + clockTime(r.to) +
      ", compared with the baseline of version " + r.version + "; " + num((r.drift_share || 0) * 100) + "% of the features drifted" +
      (r.stored ? " (stored window)." : ".")),
    table(["feature", "method", "statistic#", "p-value#", "threshold#", "drifted", "PSI#", "rows#", "missing#"], features.map(f => [
      f.feature, f.method, num(f.statistic), num(f.p_value), num(f.threshold), badge(f.drifted ? "DRIFT" : "OK"), num(f.psi),
      num(f.rows), num(f.missing)])));
}

// performanceReport shows each window's quality from ground truth next to CBPE's label-free estimate
// (GET .../performance): the estimate is there before the labels, for classifiers with a probability output.
function performanceReport(ps) {
  if (!ps.length) return el("p", { class: "muted" }, "No quality figures in the last 24 h: no ground truth, and no predicted probabilities to estimate from.");
  if (ps.every(p => p.task === "regression")) {
    return table(["window", "labelled#", "MAE#", "RMSE#", "R²#"], ps.map(p => [clockTime(p.from), num(p.labelled),
      num(p.regression && p.regression.mae), num(p.regression && p.regression.rmse), num(p.regression && p.regression.r2)]));
  }
  const pair = (c, e, k) => (c ? num(c[k]) : "–") + " / " + (e && e[k] !== undefined ? num(e[k]) : "–");
  const calib = e => !e ? "–" : (e.references || []).map(r => "v" + r.version + ": " +
    (r.calibration === "isotonic" ? "calibrated on " + num(r.rows) + " labelled rows" : "scores as probabilities")).join("; ");
  return el("div", {},
    el("p", { class: "muted" }, "Each figure as realized from ground truth / as estimated without labels (CBPE, valid under covariate shift with calibrated scores; see docs/monitoring.md)."),
    table(["window", "labelled#", "rows estimated#", "accuracy#", "precision#", "recall#", "F1#", "ROC AUC#", "calibration"], ps.map(p => {
      const c = p.classification, e = p.estimated;
      return [clockTime(p.from), num(p.labelled), e ? num(e.rows) : "–", pair(c, e, "accuracy"), pair(c, e, "precision"),
        pair(c, e, "recall"), pair(c, e, "f1"), pair(c, e, "roc_auc"), calib(e)];
    })));
}

// shadowReport shows how the shadow's answers compare with the live version's (GET .../shadow).
function shadowReport(r, title) {
  if (!r.requests) return el("p", { class: "muted" }, "No compared requests in the last 24 h.");
  const pct = v => v === null || v === undefined ? "–" : num(v * 100) + "%";
  return el("div", {},
    el("p", {}, (title || "Shadow version " + r.version + " against live version " + r.live_version + ", last 24 h") + ": " +
      num(r.requests) + " requests, " + num(r.compared) + " rows answered by both."),
    props([["agreement", pct(r.agreement)], ["mean / max abs. difference", num(r.mean_abs_diff) + " / " + num(r.max_abs_diff)],
      ["errors (live / shadow)", num(r.errors.live) + " / " + num(r.errors.shadow)],
      ["p99 latency (live / shadow)", num(r.latency_p99_ms.live) + " ms / " + num(r.latency_p99_ms.shadow) + " ms"]]),
    (r.by_feature_slice || []).map(f => [el("h3", {}, "Agreement by " + f.feature + " (quartiles)"),
      table(["from#", "to#", "rows#", "agreement#"], f.bins.map(b => [num(b.low), num(b.high), num(b.rows), pct(b.agreement)]))]));
}

// ---- runs ----

const TERMINAL = /^(SUCCEEDED|FAILED|CANCELED|SKIPPED)$/;

function duration(a, b) {
  if (!a) return "–";
  const s = ((b ? Date.parse(b) : Date.now()) - Date.parse(a)) / 1000;
  return s < 120 ? num(s, 2) + " s" : num(s / 60, 2) + " min";
}

async function runsPage() {
  const [pipelines, jobs, pipelineDefs, jobDefs] = await Promise.all([api("/api/v1/pipeline-runs?limit=50"),
    api("/api/v1/job-runs?limit=100"), api("/api/v1/pipelines"), api("/api/v1/jobs")]);
  const required = p => Object.entries(p.spec.params || {}).filter(([, v]) => v === null).map(([k]) => k);
  return el("div", {},
    el("h1", {}, "Runs"),
    el("h2", {}, "Pipelines"),
    table(["pipeline", "steps#", "parameters (defaults)", "description", ""], pipelineDefs.items.map(p => [
      p.name, (p.spec.steps || []).length, kv(p.spec.params), p.spec.description || "",
      required(p).length ? el("span", { class: "muted" }, "needs " + required(p).join(", ") + ": ", el("code", {}, "slipway pipelines run " + p.name))
        : actionButton("Run now", "run-pipeline-" + p.name, "/api/v1/pipelines/" + enc(p.name) + "/runs",
          run => navigate("/ui/pipeline-runs/" + run.id), null, "POST", {})]), "No pipelines. Create one with slipway pipelines create FILE."),
    el("h2", {}, "Jobs"),
    table(["job", "entrypoint", "arguments", "description", ""], jobDefs.items.map(j => [
      j.name, el("code", {}, j.entrypoint), (j.args || []).join(" "), j.description || "",
      actionButton("Run now", "run-job-" + j.name, "/api/v1/jobs/" + enc(j.name) + "/runs",
        run => navigate("/ui/runs/" + run.id), null, "POST", {})]), "No jobs. Create one with slipway jobs create."),
    el("h2", {}, "Pipeline runs"),
    table(["run", "pipeline", "state", "trigger", "steps", "started", "duration"], pipelines.items.map(p => [
      link("pipeline-runs/" + p.id, p.id), p.pipeline, badge(p.state), p.trigger,
      (p.steps || []).filter(s => s.state === "SUCCEEDED").length + " / " + (p.steps || []).length + " succeeded",
      when(p.started_at || p.created_at), duration(p.started_at || p.created_at, p.finished_at)]), "No pipeline runs yet."),
    el("h2", {}, "Job runs"),
    table(["run", "job / step", "state", "exit#", "started", "duration", "outputs"], jobs.items.map(j => [
      link("runs/" + j.id, j.id), j.job || (j.pipeline_run ? j.pipeline_run + " / " + j.step : "–"), badge(j.state),
      j.exit_code ?? "–", when(j.started_at || j.created_at), duration(j.started_at, j.finished_at), kv(j.outputs)]), "No job runs yet."));
}

async function jobRunPage(id) {
  const base = "/api/v1/job-runs/" + enc(id);
  const info = el("div");
  const log = el("pre", { class: "log", id: "run-log" }, "Loading…");
  const seq = pageSeq;
  async function refresh() {
    try {
      const [r, text] = await Promise.all([api(base), api(base + "/logs")]);
      if (seq !== pageSeq) return;
      fill(info,
        el("h1", {}, "Run " + id, " ", badge(r.state)),
        TERMINAL.test(r.state) ? null : el("div", { class: "toolbar" },
          actionButton("Cancel", "cancel", base + "/cancel", refresh, "Cancel run " + id + "? Its processes are stopped.")),
        r.reason ? el("div", { class: "error" }, r.reason) : null,
        props([["job", r.job || "–"], ["pipeline run", r.pipeline_run ? link("pipeline-runs/" + r.pipeline_run, r.pipeline_run + " / " + r.step) : "–"],
          ["attempt", r.attempt], ["exit code", r.exit_code ?? "–"], ["args", (r.args || []).join(" ") || "–"],
          ["started", when(r.started_at)], ["duration", duration(r.started_at, r.finished_at)], ["by", r.created_by],
          ["outputs", kv(r.outputs)]]));
      log.textContent = text || "(no output yet)";
      log.scrollTop = log.scrollHeight;
      if (TERMINAL.test(r.state)) stopTimers();
    } catch (err) { if (seq === pageSeq) fill(info, errorBox(err)); }
  }
  every(2000, refresh);
  return el("div", {}, el("div", { class: "crumbs" }, link("runs", "Runs"), " / " + id), info, el("h2", {}, "Logs"), log);
}

async function pipelineRunPage(id) {
  const p = await api("/api/v1/pipeline-runs/" + enc(id));
  if (!TERMINAL.test(p.state)) timers.push(setInterval(() => { if (location.pathname.endsWith(id)) render(); }, 3000));
  return el("div", {},
    el("div", { class: "crumbs" }, link("runs", "Runs"), " / " + id),
    el("h1", {}, "Pipeline run " + id, " ", badge(p.state)),
    el("div", { class: "toolbar" },
      TERMINAL.test(p.state) ? null : actionButton("Cancel", "cancel", "/api/v1/pipeline-runs/" + enc(id) + "/cancel", render,
        "Cancel pipeline run " + id + "? Its running steps are stopped."),
      p.state === "FAILED" || p.state === "CANCELED"
        ? actionButton("Retry", "retry", "/api/v1/pipeline-runs/" + enc(id) + "/retry", render) : null),
    p.reason ? el("div", { class: "error" }, p.reason) : null,
    props([["pipeline", p.pipeline], ["trigger", p.trigger], ["parameters", kv(p.params)], ["started", when(p.started_at || p.created_at)],
      ["duration", duration(p.started_at || p.created_at, p.finished_at)]]),
    el("h2", {}, "Steps"),
    table(["step", "kind", "after", "state", "attempts#", "job run", "outputs", "reason"], (p.steps || []).map(s => [
      s.name, s.kind, (s.depends_on || []).join(", ") || "–", badge(s.state), s.attempts,
      s.job_run ? link("runs/" + s.job_run, s.job_run) : "–", kv(s.outputs), s.reason || ""])));
}

// ---- batch predictions and schedules ----

const batchTarget = b => b.output.table ? (b.output.connection || "default") + " table " + b.output.table
  : (b.output.format || "file") + (b.output.size ? ", " + bytes(b.output.size) : "");

function progress(done, total) {
  const pct = total > 0 ? Math.min(100, 100 * done / total) : 0;
  return el("span", {}, el("progress", { max: 100, value: pct.toFixed(1) }), " ", num(done) + " / " + (total ? num(total) : "?") + " rows");
}

async function batchListPage() {
  const list = await api("/api/v1/batch-predictions?limit=100");
  return el("div", {},
    el("h1", {}, "Batch predictions"),
    el("p", { class: "muted" }, plural(list.total, "batch prediction") + ". Start one with ", el("code", {}, "slipway batch run --model MODEL@ALIAS --input FILE --output-format parquet"), "."),
    table(["run", "state", "model", "progress", "rows/s#", "output", "created", "duration"], list.items.map(b => [
      link("batch/" + enc(b.id), b.id), badge(b.state), b.model + ":" + b.version, progress(b.rows_done, b.rows_total),
      num(b.rows_per_second), batchTarget(b), when(b.created_at), duration(b.started_at, b.finished_at)]), "No batch predictions yet."));
}

async function batchPage(id) {
  const base = "/api/v1/batch-predictions/" + enc(id);
  const info = el("div");
  const seq = pageSeq;
  async function refresh() {
    try {
      const b = await api(base);
      if (seq !== pageSeq) return;
      const done = TERMINAL.test(b.state);
      fill(info,
        el("h1", {}, "Batch prediction " + id, " ", badge(b.state)),
        el("div", { class: "toolbar" },
          done ? null : actionButton("Cancel", "cancel", base + "/cancel", refresh, "Cancel batch prediction " + id + "?"),
          done ? actionButton("Delete", "delete", base, () => navigate("/ui/batch"),
            "Delete batch prediction " + id + " and its output file?", "DELETE") : null,
          b.state === "SUCCEEDED" && b.output.download ? downloadButton(base + "/output", id + "." + (b.output.format || "out")) : null),
        b.reason ? el("div", { class: "error" }, b.reason) : null,
        props([["model", link("models/" + enc(b.model) + "/versions/" + b.version, b.model + " version " + b.version)],
          ["progress", progress(b.rows_done, b.rows_total)], ["skipped rows", num(b.rows_skipped)],
          ["rows per second", num(b.rows_per_second)], ["input", kv(b.spec.input)], ["output", batchTarget(b)],
          ["created", [when(b.created_at), b.created_by ? " by " + b.created_by : ""]],
          ["duration", duration(b.started_at, b.finished_at)]]),
        el("h2", {}, "Errors"),
        table(["chunk#", "rows", "message"], (b.errors || []).map(e => [e.chunk, num(e.row_start) + "–" + num(e.row_end), e.message]), "None."));
      if (done) stopTimers();
    } catch (err) { if (seq === pageSeq) fill(info, errorBox(err)); }
  }
  every(2000, refresh);
  return el("div", {}, el("div", { class: "crumbs" }, link("batch", "Batch predictions"), " / " + id), info);
}

// downloadButton fetches a file with the token (a plain link would carry none) and hands it to the browser.
function downloadButton(path, filename) {
  const status = el("span", { class: "action-status" });
  const button = el("button", { type: "button", id: "download", onclick: async () => {
    button.disabled = true;
    try {
      const res = await fetch(path, { headers: authHeaders() });
      if (!res.ok) throw new APIError(res.status, await problemText(res));
      const url = URL.createObjectURL(await res.blob());
      const a = el("a", { href: url, download: filename });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      fill(status);
    } catch (err) {
      fill(status, errorBox(err));
    } finally {
      button.disabled = false;
    }
  } }, "Download output");
  return el("span", { class: "action" }, button, status);
}

async function schedulesPage() {
  const list = await api("/api/v1/schedules?limit=500");
  const target = sc => sc.target.kind + " " + sc.target.name;
  const lastRun = sc => !sc.last_run_id ? "–" : sc.last_run_id.startsWith("jr-") ? link("runs/" + sc.last_run_id, sc.last_run_id)
    : sc.last_run_id.startsWith("pr-") ? link("pipeline-runs/" + sc.last_run_id, sc.last_run_id) : link("batch/" + enc(sc.last_run_id), sc.last_run_id);
  return el("div", {},
    el("h1", {}, "Schedules"),
    el("p", { class: "muted" }, plural(list.total, "schedule") + ". Create one with ", el("code", {}, "slipway schedules create NAME --cron EXPR --pipeline P"), "."),
    table(["schedule", "cron", "timezone", "starts", "policy", "last tick", "next tick", "last run"], list.items.map(sc => [
      sc.name, el("code", {}, sc.cron), sc.timezone || "UTC", target(sc), sc.concurrency_policy || "allow",
      when(sc.last_tick_at), sc.next_tick_at ? clockTime(sc.next_tick_at) : "–", lastRun(sc)]), "No schedules yet."));
}

// ---- start ----

(async () => {
  if (token()) {
    try {
      showWho(await api("/api/v1/whoami"));
    } catch (err) {
      if (!(err instanceof APIError && err.status === 401)) fill(main, errorBox(err));
      return;
    }
  }
  render();
})();
