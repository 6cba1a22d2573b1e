// The admin UI: one page, no framework, no third-party code (docs/adr/0006).
// Every view reads and writes the JSON endpoints under /_/api/, with the
// session cookie and the CSRF token the login returned. Text from the
// server is only ever put into the page as text nodes (never innerHTML).
"use strict";

const state = { csrf: null, user: null, timer: null };

// h("div", {class: "x", onclick: f}, "text", child) -> element
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body, contentType) {
  const headers = {};
  if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = contentType || "application/json";
    payload = typeof body === "string" ? body : JSON.stringify(body);
  }
  const r = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  const text = await r.text();
  let data = text;
  if ((r.headers.get("content-type") || "").includes("json")) {
    try { data = JSON.parse(text); } catch (_) { /* keep the text */ }
  }
  if (r.status === 401 && path !== "/_/api/session") {
    state.csrf = null;
    location.hash = "#/login";
    throw new ApiError(r.status, data);
  }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

const view = () => document.getElementById("view");

function show(...nodes) {
  view().replaceChildren(...nodes);
}

function errorBox(e) {
  return h("div", { class: "msg error", role: "alert" }, e.message || String(e));
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

function duration(s) {
  const d = Math.floor(s / 86400), hh = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return d ? `${d}d ${hh}h` : hh ? `${hh}h ${m}m` : `${m}m ${s % 60}s`;
}

function tile(k, v, id) {
  return h("div", { class: "tile" }, h("div", { class: "k" }, k), h("div", { class: "v", id }, v));
}

// ---- login -------------------------------------------------------------

function loginView() {
  document.getElementById("top").hidden = true;
  const msg = h("div");
  const logIn = async (body, wrong) => {
    msg.replaceChildren();
    try {
      const s = await api("POST", "/_/api/session", body);
      state.csrf = s.csrf_token;
      state.user = s.user;
      location.hash = "#/dashboard";
    } catch (e) {
      msg.replaceChildren(errorBox(e.status === 401 ? new Error(wrong) : e));
    }
  };
  const pw = h("input", { type: "password", id: "password", autocomplete: "current-password", required: true });
  const form = h("form", { class: "card login", id: "login-form" },
    h("h1", {}, "DeltaGlider Proxy"),
    h("label", { for: "password" }, "Admin password"), pw,
    h("button", { class: "primary", type: "submit", id: "login-button" }, "Log in"), msg);
  form.addEventListener("submit", (ev) => { ev.preventDefault(); logIn({ password: pw.value }, "Wrong password."); });
  // IAM users with the admin permission log in with an access key.
  const keyId = h("input", { type: "text", id: "access-key-id", autocomplete: "username", required: true });
  const secret = h("input", { type: "password", id: "secret-access-key", autocomplete: "current-password", required: true });
  const keyForm = h("form", { class: "card login", id: "key-login-form" },
    h("strong", {}, "Or log in as an IAM user"),
    h("p", { class: "muted" }, "The user needs the admin permission (action admin on resource *)."),
    h("label", { for: "access-key-id" }, "Access key id"), keyId,
    h("label", { for: "secret-access-key" }, "Secret access key"), secret,
    h("button", { type: "submit", id: "key-login-button" }, "Log in with the key"));
  keyForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    logIn({ access_key_id: keyId.value.trim(), secret_access_key: secret.value }, "Wrong access key or secret.");
  });
  // Single sign-on providers (access.auth_providers): plain links, the
  // server does the rest (docs/iam.md, "Single sign-on").
  const sso = h("div", { class: "card login", id: "sso-login", hidden: true });
  api("GET", "/_/api/sso").then((r) => {
    if (!r.providers.length) return;
    sso.append(h("strong", {}, "Or sign in with single sign-on"),
      ...r.providers.map((p) => h("a", { class: "button", href: p.login_url, id: `sso-${p.name}` }, `Sign in with ${p.display_name}`)));
    sso.hidden = false;
  }).catch(() => {});
  show(form, sso, keyForm);
  pw.focus();
}

// ---- dashboard ---------------------------------------------------------

// A small line chart of `values` (SVG built through the DOM: no markup strings).
function sparkline(values, id) {
  const ns = "http://www.w3.org/2000/svg";
  const w = 240, hgt = 48, max = Math.max(...values, 1e-9);
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
  svg.setAttribute("class", "spark");
  svg.id = id;
  const line = document.createElementNS(ns, "polyline");
  const step = values.length > 1 ? w / (values.length - 1) : w;
  line.setAttribute("points", values.map((v, i) => `${(i * step).toFixed(1)},${(hgt - 2 - (v / max) * (hgt - 4)).toFixed(1)}`).join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#1f6feb");
  line.setAttribute("stroke-width", "2");
  svg.append(line);
  return svg;
}

function historyTiles(s) {
  const hist = s.history || [];
  if (!hist.length) {
    return h("p", { class: "muted", id: "history" }, `History appears after the first ${s.history_step_secs || 10} seconds.`);
  }
  const last = hist[hist.length - 1];
  const chart = (title, key, fmt) => h("div", { class: "tile" },
    h("div", { class: "k" }, title), h("div", { class: "v" }, fmt(last[key])), sparkline(hist.map((x) => x[key]), `spark-${key}`));
  return h("div", { class: "tiles", id: "history" },
    chart("Requests / s", "requests_per_sec", (v) => v.toFixed(1)),
    chart("Client errors (4xx)", "client_error_ratio", (v) => `${(100 * v).toFixed(1)} %`),
    chart("Server errors (5xx)", "server_error_ratio", (v) => `${(100 * v).toFixed(1)} %`),
    chart("Mean latency", "mean_latency_ms", (v) => `${v.toFixed(1)} ms`));
}

async function dashboardView() {
  const s = await api("GET", "/_/api/status");
  const rows = s.backends.map((b) => h("tr", {},
    h("td", {}, b.name), h("td", {}, b.kind),
    h("td", { class: b.healthy ? "ok" : "bad" }, b.healthy ? "healthy" : `down: ${b.error || ""}`),
    h("td", {}, b.encryption || "none"),
    h("td", {}, b.disk_total_bytes ? `${bytes(b.disk_free_bytes)} free of ${bytes(b.disk_total_bytes)}` : "–"),
    h("td", {}, b.writes_held ? h("span", { class: "bad" }, "writes held") : "")));
  show(
    h("h1", {}, "Dashboard"),
    h("div", { class: "tiles" },
      tile("Version", s.version, "version"),
      tile("Uptime", duration(s.uptime_secs), "uptime"),
      tile("Memory (RSS)", bytes(s.memory_rss_bytes), "memory"),
      tile("Requests in flight", s.requests_in_flight, "in-flight")),
    h("h2", {}, `Last ${Math.round(((s.history || []).length * (s.history_step_secs || 10)) / 60) || "few"} minutes`),
    historyTiles(s),
    h("h2", {}, "Backends"),
    h("table", { id: "backends" },
      h("thead", {}, h("tr", {}, ["Name", "Kind", "Health", "Encryption", "Disk", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)));
}

// ---- storage -----------------------------------------------------------

async function storageView() {
  const [stats, enc] = await Promise.all([api("GET", "/_/api/stats"), api("GET", "/_/api/encryption/status")]);
  const buckets = (stats.buckets || []).map((b) => h("tr", {},
    h("td", {}, b.bucket || b.name), h("td", {}, b.objects ?? "–"),
    h("td", {}, bytes(b.logical_bytes)), h("td", {}, bytes(b.stored_bytes)),
    h("td", {}, b.logical_bytes ? `${(100 * (1 - b.stored_bytes / b.logical_bytes)).toFixed(1)} %` : "–")));
  const backends = (enc.backends || []).map((b) => h("tr", {},
    h("td", {}, b.backend || b.name), h("td", {}, b.mode),
    h("td", {}, b.encrypted ?? "–"), h("td", {}, b.plaintext ?? "–"), h("td", {}, b.undecryptable ?? "–")));
  show(
    h("h1", {}, "Storage"),
    h("h2", {}, "Buckets: logical versus stored bytes"),
    h("table", { id: "buckets" },
      h("thead", {}, h("tr", {}, ["Bucket", "Objects", "Logical", "Stored", "Saved"].map((t) => h("th", {}, t)))),
      h("tbody", {}, buckets)),
    h("h2", {}, "Encryption coverage"),
    h("table", { id: "encryption" },
      h("thead", {}, h("tr", {}, ["Backend", "Mode", "Encrypted", "Plaintext", "Undecryptable"].map((t) => h("th", {}, t)))),
      h("tbody", {}, backends)));
}

// ---- users -------------------------------------------------------------

function secretCard(title, k) {
  return h("div", { class: "card", id: "new-secret" },
    h("strong", {}, title),
    h("p", {}, "The secret is shown this once. Store it now."),
    h("div", { class: "secret" }, "Access key id: ", h("span", { id: "new-access-key" }, k.access_key_id)),
    h("div", { class: "secret" }, "Secret access key: ", h("span", { id: "new-secret-key" }, k.secret_access_key)));
}

async function usersView(notice) {
  const [data, gdata] = await Promise.all([api("GET", "/_/api/iam/users"),
    api("GET", "/_/api/iam/groups").catch(() => ({ groups: [] }))]);
  const groups = gdata.groups || [];
  const users = data.users || data;
  const declarative = data.mode === "declarative";
  const msg = h("div");
  const act = (f) => async () => {
    try { await f(); } catch (e) { msg.replaceChildren(errorBox(e)); }
  };
  const rows = users.map((u) => h("tr", { "data-user": u.name },
    h("td", {}, u.name),
    h("td", {}, u.enabled ? "enabled" : h("span", { class: "bad" }, "disabled")),
    h("td", {}, (u.groups || []).join(", ")),
    h("td", {}, (u.access_keys || []).map((k) => h("div", {}, k.access_key_id))),
    h("td", {}, (u.permissions || []).map((p) =>
      h("div", {}, `${p.effect} ${p.actions.join(",")} on ${p.resources.join(",")}`))),
    h("td", {}, declarative ? "" : [
      h("button", { type: "button", class: "new-key", onclick: act(async () => {
        const k = await api("POST", `/_/api/iam/users/${encodeURIComponent(u.name)}/keys`);
        await usersView(secretCard(`New key for ${u.name}`, k));
      }) }, "New key"), " ",
      h("button", { type: "button", class: "danger delete-user", onclick: act(async () => {
        if (!confirm(`Delete user ${u.name} and all its keys?`)) return;
        await api("DELETE", `/_/api/iam/users/${encodeURIComponent(u.name)}`);
        await usersView();
      }) }, "Delete")])));

  const name = h("input", { type: "text", id: "new-user-name", placeholder: "user name", required: true });
  const access = h("select", { id: "new-user-access" },
    h("option", { value: "none" }, "no permissions yet"),
    h("option", { value: "read" }, "read and list everything"),
    h("option", { value: "full" }, "full access to every bucket"));
  const form = h("form", { class: "inline", id: "new-user-form" }, name, access,
    h("button", { class: "primary", type: "submit", id: "create-user" }, "Create user"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const k = await api("POST", "/_/api/iam/users", { name: name.value.trim() });
      const actions = { read: ["read", "list"], full: ["*"] }[access.value];
      if (actions) {
        await api("POST", `/_/api/iam/users/${encodeURIComponent(k.user)}/permissions`,
          { effect: "Allow", actions, resources: ["*"] });
      }
      await usersView(secretCard(`User ${k.user} created`, k));
    } catch (e) { msg.replaceChildren(errorBox(e)); }
  });
  show(h("h1", {}, "Users and keys"), notice || "", msg,
    declarative
      ? h("div", { class: "msg info", id: "iam-declarative" },
        "IAM is declarative (access.iam_mode): users and keys come from the configuration file and are read-only here.")
      : h("div", { class: "card" }, form),
    h("table", { id: "users" },
      h("thead", {}, h("tr", {}, ["User", "State", "Groups", "Access keys", "Permissions", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)),
    groupsCard(users, groups, declarative),
    declarative ? "" : permissionsCard(users, groups),
    users.length ? canCard(users) : "");
}

const enc = encodeURIComponent;

// Groups: members and permissions; create, delete, add and remove members.
function groupsCard(users, groups, declarative) {
  const msg = h("div", { id: "groups-msg" });
  const act = (f) => async () => {
    try { await f(); await usersView(); } catch (e) { msg.replaceChildren(errorBox(e)); }
  };
  const rows = groups.map((g) => {
    const others = users.filter((u) => !g.members.includes(u.name));
    const pick = h("select", { id: `member-pick-${g.name}` }, others.map((u) => h("option", { value: u.name }, u.name)));
    return h("tr", { "data-group": g.name },
      h("td", {}, g.name),
      h("td", {}, g.members.map((m) => h("div", { class: "member" }, m, declarative ? "" : [" ",
        h("button", { type: "button", class: "link member-remove", title: `Take ${m} out of ${g.name}`,
          onclick: act(() => api("DELETE", `/_/api/iam/groups/${enc(g.name)}/members/${enc(m)}`)) }, "×")]))),
      h("td", {}, (g.permissions || []).map((p) => h("div", {}, permText(p)))),
      h("td", {}, declarative ? "" : [...(others.length ? [pick, " ",
        h("button", { type: "button", id: `member-add-${g.name}`,
          onclick: act(() => api("PUT", `/_/api/iam/groups/${enc(g.name)}/members/${enc(pick.value)}`)) }, "Add member"), " "] : []),
        h("button", { type: "button", class: "danger", id: `group-delete-${g.name}`, onclick: act(async () => {
          if (!confirm(`Delete group ${g.name}? Its members lose what it gave them.`)) return;
          await api("DELETE", `/_/api/iam/groups/${enc(g.name)}`);
        }) }, "Delete")]));
  });
  const name = h("input", { type: "text", id: "group-name-new", placeholder: "group name" });
  const form = h("form", { class: "inline", id: "group-form" }, name,
    h("button", { type: "submit", id: "group-create" }, "Create group"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(() => api("POST", "/_/api/iam/groups", { name: name.value.trim() }))();
  });
  return h("div", { class: "card", id: "groups-card" }, h("strong", {}, "Groups"), msg,
    declarative ? "" : form,
    h("table", { id: "groups" },
      h("thead", {}, h("tr", {}, ["Group", "Members", "Permissions", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)));
}

function permText(p) {
  const cond = (p.conditions || []).map((c) => ` if ${c.op} ${c.key} ${c.values.join(",")}`).join("");
  return `${p.effect} ${p.actions.join(",")} on ${p.resources.join(",")}${cond}`;
}

// The permission editor: a user's or a group's permissions, each removable,
// and a form for a new one (effect, actions, resources, conditions).
function permissionsCard(users, groups) {
  const owners = users.map((u) => ["users", u.name, u.permissions || []])
    .concat(groups.map((g) => ["groups", g.name, g.permissions || []]));
  const owner = h("select", { id: "perm-owner" },
    owners.map(([k, n]) => h("option", { value: `${k}/${n}` }, `${k === "users" ? "user" : "group"} ${n}`)));
  const list = h("ol", { id: "perm-list" });
  const msg = h("div", { id: "perm-msg" });
  const current = () => owners.find(([k, n]) => `${k}/${n}` === owner.value);
  const render = () => {
    const o = current();
    list.replaceChildren(...(o ? o[2] : []).map((p, i) => h("li", { "data-index": i }, permText(p), " ",
      h("button", { type: "button", class: "link perm-remove", onclick: async () => {
        try {
          await api("DELETE", `/_/api/iam/${o[0]}/${enc(o[1])}/permissions/${i}`);
          await usersView();
        } catch (e) { msg.replaceChildren(errorBox(e)); }
      } }, "remove"))));
  };
  // The choice survives the page being drawn again after a change.
  if (state.permOwner && owners.some(([k, n]) => `${k}/${n}` === state.permOwner)) owner.value = state.permOwner;
  owner.addEventListener("change", () => { state.permOwner = owner.value; render(); });
  const effect = h("select", { id: "perm-effect" }, h("option", { value: "Allow" }, "Allow"), h("option", { value: "Deny" }, "Deny"));
  const actions = h("input", { type: "text", id: "perm-actions", placeholder: "actions: read, list, write, delete, admin, s3:GetObject, *" });
  const resources = h("input", { type: "text", id: "perm-resources", placeholder: "resources: bucket/prefix/*, *" });
  // Condition rows: the first has the plain ids, later ones end in -1, -2...
  // All must hold (AND), as in an IAM policy's Condition block.
  const conds = [];
  const condRows = h("div", { id: "perm-conds" });
  const addCond = () => {
    const n = conds.length ? `-${conds.length}` : "";
    const c = {
      op: h("input", { type: "text", id: `perm-cond-op${n}`, placeholder: n ? "and: StringLike" : "condition (optional): IpAddress" }),
      key: h("input", { type: "text", id: `perm-cond-key${n}`, placeholder: "aws:SourceIp" }),
      values: h("input", { type: "text", id: `perm-cond-values${n}`, placeholder: "192.168.1.0/24" }),
    };
    conds.push(c);
    condRows.append(h("div", { class: "inline" }, c.op, c.key, c.values));
  };
  addCond();
  const split = (v) => v.split(",").map((x) => x.trim()).filter((x) => x);
  const form = h("form", { id: "perm-form" },
    h("div", { class: "inline" }, effect, actions, resources),
    condRows,
    h("div", { class: "inline" },
      h("button", { type: "button", id: "perm-cond-more", onclick: addCond }, "+ condition"),
      h("button", { class: "primary", type: "submit", id: "perm-add" }, "Add permission")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const o = current();
    const body = { effect: effect.value, actions: split(actions.value), resources: split(resources.value) };
    const given = conds.filter((c) => c.op.value.trim())
      .map((c) => ({ op: c.op.value.trim(), key: c.key.value.trim(), values: split(c.values.value) }));
    if (given.length) body.conditions = given;
    try {
      await api("POST", `/_/api/iam/${o[0]}/${enc(o[1])}/permissions`, body);
      await usersView();
    } catch (e) { msg.replaceChildren(errorBox(e)); }
  });
  render();
  return h("div", { class: "card", id: "perm-card" }, h("strong", {}, "Permissions"),
    h("p", { class: "muted" }, "The grammar of docs/iam.md: an explicit Deny wins; nothing matching is a denial. Refused permissions say why."),
    owner, list, form, msg);
}

// "What can this user do on bucket/key?", judged by the server as a
// request would be (GET /_/api/iam/users/{name}/can).
function canCard(users) {
  const who = h("select", { id: "can-user" }, users.map((u) => h("option", { value: u.name }, u.name)));
  const bucket = h("input", { type: "text", id: "can-bucket", placeholder: "bucket (empty: the service)" });
  const key = h("input", { type: "text", id: "can-key", placeholder: "key (empty: the bucket)" });
  const out = h("div", { id: "can-result" });
  const form = h("form", { class: "inline", id: "can-form" }, who, bucket, key,
    h("button", { type: "submit", id: "can-check" }, "Check"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams({ bucket: bucket.value.trim(), key: key.value.trim() });
    try {
      const r = await api("GET", `/_/api/iam/users/${encodeURIComponent(who.value)}/can?${q}`);
      out.replaceChildren(h("table", { id: "can-table" },
        h("thead", {}, h("tr", {}, ["Action", "Decision", "Because"].map((t) => h("th", {}, t)))),
        h("tbody", {}, r.actions.map((a) => h("tr", { "data-action": a.action },
          h("td", {}, a.action),
          h("td", {}, a.allowed ? h("span", { class: "ok" }, "allowed") : h("span", { class: "bad" }, a.explicit ? "denied (explicit)" : "denied")),
          h("td", {}, a.rule))))));
    } catch (e) { out.replaceChildren(errorBox(e)); }
  });
  return h("div", { class: "card", id: "can-card" },
    h("strong", {}, "What can this user do?"),
    h("p", { class: "muted" }, "Every S3 action on the object (with a key), the bucket, or the service, judged as a request would be: the user's and its groups' permissions and the bucket policy."),
    form, out);
}

// ---- backends ----------------------------------------------------------

// 32 random bytes from the browser's CSPRNG, as 64 hex characters. The key
// stays in this page until Apply sends it, once, to be written to a key file.
function generateKey() {
  const b = new Uint8Array(32);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function encryptionCard(b, e, multi) {
  const name = b.name;
  const modes = ["none", "aes256-gcm-proxy"].concat(b.kind === "s3" ? ["sse-s3", "sse-kms"] : []);
  const current = e.mode || b.encryption || "none";
  const mode = h("select", { id: `enc-mode-${name}`, class: "enc-mode" },
    modes.map((m) => h("option", { value: m, selected: m === current }, m)));
  const kms = h("input", { type: "text", id: `kms-key-${name}`, placeholder: "KMS key id", hidden: true });
  const keyText = h("code", { id: `key-${name}`, class: "secret" });
  const stored = h("input", { type: "checkbox", id: `key-stored-${name}` });
  const apply = h("button", { type: "button", class: "primary", id: `enc-apply-${name}`, disabled: true }, "Apply");
  const banner = h("div", { class: "msg danger", id: `key-banner-${name}`, role: "alert", hidden: true },
    h("strong", {}, "Store this key now, somewhere other than this box. "),
    "The server keeps it only in a key file next to its configuration. If that file and your copy are lost, " +
    "every object encrypted with this key is lost with them: nobody can decrypt it, not even the server.");
  const keyBox = h("div", { class: "keybox", hidden: true },
    h("button", { type: "button", id: `gen-key-${name}`, onclick: () => {
      keyText.textContent = generateKey();
      banner.hidden = false;
      stored.checked = false;
      gate();
    } }, "Generate key"), " ", keyText, banner,
    h("label", { class: "check" }, stored, " I have stored this key safely"));
  const out = h("div", { id: `enc-result-${name}` });
  const gate = () => {
    const m = mode.value;
    keyBox.hidden = m !== "aes256-gcm-proxy";
    kms.hidden = m !== "sse-kms";
    const needsKey = m === "aes256-gcm-proxy";
    apply.disabled = needsKey ? !(keyText.textContent && stored.checked) : m === current;
  };
  mode.addEventListener("change", gate);
  stored.addEventListener("change", gate);
  apply.addEventListener("click", async () => {
    const body = { mode: mode.value };
    if (mode.value === "aes256-gcm-proxy") body.key = keyText.textContent;
    if (mode.value === "sse-kms") body.kms_key_id = kms.value.trim();
    apply.disabled = true;
    try {
      const r = await api("POST", `/_/api/backends/${encodeURIComponent(name)}/encryption`, body);
      keyText.textContent = "";
      banner.hidden = true;
      const start = h("button", { type: "button", class: "primary", id: `start-reencrypt-${name}`, onclick: async () => {
        try {
          await api("POST", `/_/api/reencrypt?backend=${encodeURIComponent(name)}`);
          location.hash = "#/jobs";
        } catch (err) { out.append(errorBox(err)); }
      } }, "Start re-encrypt job");
      out.replaceChildren(h("div", { class: "msg info" },
        h("div", { class: "ok" }, `Applied: ${name} now writes with ${body.mode}` + (r.key_id ? ` (key id ${r.key_id})` : "") + "."),
        r.key_file ? h("div", {}, `Key file: ${r.key_file}`) : "",
        r.reencrypt_proposed ? h("div", {}, "Objects written before keep their old form until a re-encrypt job rewrites them. ", start) : ""));
    } catch (err) {
      gate();
      const list = (err.body && err.body.problems) || [];
      out.replaceChildren(h("div", { class: "msg error", role: "alert" }, err.message,
        h("ul", { class: "problems" }, list.map((p) => h("li", {}, `${p.field || "(document)"}: ${p.message}`)))));
    }
  });
  gate();
  return h("div", { class: "card", id: `backend-${name}`, "data-backend": name },
    h("h2", {}, `${name} `, h("span", { class: "muted" }, b.kind), b.default ? h("span", { class: "muted" }, " · default") : ""),
    b.default || !multi ? "" : backendButtons(name),
    h("div", {}, `Encryption now: ${current}`,
      e.current_key_id ? ` · key id ${e.current_key_id}` : "",
      e.legacy_key_id ? ` · legacy key id ${e.legacy_key_id}` : ""),
    h("div", { class: "muted" }, `${e.encrypted ?? 0} encrypted, ${e.plaintext ?? 0} plaintext, ${e.undecryptable ?? 0} undecryptable`),
    h("div", { class: "inline" }, h("label", { for: `enc-mode-${name}` }, "Mode "), mode, " ", kms),
    keyBox, h("div", { class: "inline" }, apply), out);
}

async function backendsView(notice) {
  const [s, enc, cfg] = await Promise.all([api("GET", "/_/api/status"), api("GET", "/_/api/encryption/status"),
    api("GET", "/_/api/config?format=json").catch(() => null)]);
  const byName = Object.fromEntries((enc.backends || []).map((e) => [e.backend, e]));
  show(h("h1", {}, "Backends"), notice || "",
    h("p", { class: "muted" }, "Changing a backend's encryption applies live: new objects are written the new way at once. A re-encrypt job rewrites the objects written before."),
    ...s.backends.map((b) => encryptionCard(b, byName[b.name] || {}, s.backends.length > 1)),
    cfg ? addBackendCard() : "",
    cfg ? routesCard(s.backends.map((b) => b.name), (cfg.storage || {}).buckets || {}) : "");
}

// A new change starts: the notice of the previous one goes.
function clearNotices() {
  for (const id of ["route-saved", "backend-saved"]) document.getElementById(id)?.remove();
}

// The problems of a refused config change, or the error itself.
function problemsOf(e) {
  const ps = (e.body && e.body.problems) || [];
  return ps.length ? h("ul", { class: "problems" }, ps.map((p) => h("li", {}, `${p.field || "(document)"}: ${p.message}`))) : errorBox(e);
}

// "Make default" and "Remove" for a backend that is not the default. A
// backend that still holds buckets is removed only when asked again: its
// data stays where it is, unreachable until it is added back.
function backendButtons(name) {
  const out = h("div", { id: `backend-problems-${name}` });
  const remove = async (force) => {
    clearNotices();
    out.replaceChildren();
    try {
      await api("DELETE", `/_/api/backends/${enc(name)}` + (force ? "?force=true" : ""));
      await backendsView(h("div", { class: "msg ok", id: "backend-saved" }, `Backend ${name} removed; its data stays where it was.`));
    } catch (e) {
      out.replaceChildren(problemsOf(e));
      if (!force && e.status === 409 && /holds buckets/.test(e.message)) {
        out.append(h("button", { type: "button", class: "danger", id: `backend-force-remove-${name}`, onclick: () => remove(true) },
          "Remove anyway (its buckets become unreachable)"));
      }
    }
  };
  return h("div", { class: "inline" },
    h("button", { type: "button", id: `backend-default-${name}`, onclick: async () => {
      clearNotices();
      out.replaceChildren();
      try {
        await api("PATCH", "/_/api/config/storage", { default_backend: name });
        await backendsView(h("div", { class: "msg ok", id: "backend-saved" }, `Buckets without a route now go to ${name}.`));
      } catch (e) { out.replaceChildren(problemsOf(e)); }
    } }, "Make default"), " ",
    h("button", { type: "button", class: "danger", id: `backend-remove-${name}`, onclick: () => remove(false) }, "Remove"),
    out);
}

// A new backend: a directory on this box or an S3 upstream. Credentials
// left empty come from DGP_BACKEND_<NAME>_ACCESS_KEY_ID / _SECRET_ACCESS_KEY.
function addBackendCard() {
  const field = (id, label, attrs) => h("label", { class: "field" }, label, " ", h("input", Object.assign({ type: "text", id }, attrs || {})));
  const kind = h("select", { id: "backend-type-new" }, ["filesystem", "s3"].map((k) => h("option", { value: k }, k)));
  const fsFields = h("div", { class: "inline" }, field("backend-path-new", "Directory", { placeholder: "/srv/deltaglider/two" }));
  const s3Fields = h("div", { hidden: true },
    h("div", { class: "inline" }, field("backend-endpoint-new", "Endpoint", { placeholder: "https://s3.example.com" }), " ",
      field("backend-region-new", "Region", { placeholder: "us-east-1" }), " ",
      h("label", { class: "check" }, h("input", { type: "checkbox", id: "backend-path-style-new" }), " path-style")),
    h("div", { class: "inline" }, field("backend-key-id-new", "Access key id", { autocomplete: "off" }), " ",
      field("backend-secret-new", "Secret", { type: "password", autocomplete: "new-password" })),
    h("div", { class: "muted" }, "Empty credentials come from DGP_BACKEND_<NAME>_ACCESS_KEY_ID and _SECRET_ACCESS_KEY in the server's environment."));
  kind.addEventListener("change", () => { fsFields.hidden = kind.value !== "filesystem"; s3Fields.hidden = kind.value !== "s3"; });
  const out = h("div", { id: "backend-problems-new" });
  const value = (id) => document.getElementById(id).value.trim();
  const add = async () => {
    clearNotices();
    out.replaceChildren();
    const body = { name: value("backend-name-new"), type: kind.value };
    if (kind.value === "filesystem") body.path = value("backend-path-new");
    else {
      body.endpoint = value("backend-endpoint-new");
      if (value("backend-region-new")) body.region = value("backend-region-new");
      if (document.getElementById("backend-path-style-new").checked) body.force_path_style = true;
      if (value("backend-key-id-new")) body.access_key_id = value("backend-key-id-new");
      if (value("backend-secret-new")) body.secret_access_key = document.getElementById("backend-secret-new").value;
    }
    try {
      await api("POST", "/_/api/backends", body);
      await backendsView(h("div", { class: "msg ok", id: "backend-saved" }, `Backend ${body.name} added.`));
    } catch (e) { out.replaceChildren(problemsOf(e)); }
  };
  return h("div", { class: "card", id: "add-backend" },
    h("strong", {}, "Add a backend"),
    h("p", { class: "muted" }, "A directory on this box or an S3 upstream. It serves the buckets routed to it below; set its encryption once it is added."),
    h("div", { class: "inline" }, field("backend-name-new", "Name", { placeholder: "nas2" }), " ", h("label", { class: "field" }, "Type ", kind)),
    fsFields, s3Fields,
    h("div", { class: "inline" }, h("button", { type: "button", class: "primary", id: "backend-add", onclick: add }, "Add backend")),
    out);
}

// Per-bucket routing (storage.buckets) as a form: each row is applied as a
// JSON merge patch on the storage section, validated and applied live like
// a reload; the problems `config lint` would report show under the row.
function routesCard(backends, buckets) {
  const row = (name, b) => {
    const id = name === null ? "new" : name;
    const bucketName = name === null ? h("input", { type: "text", id: "route-name-new", placeholder: "bucket" }) : null;
    const backend = h("select", { id: `route-backend-${id}` },
      backends.map((n) => h("option", { value: n, selected: n === b.backend }, n)));
    const alias = h("input", { type: "text", id: `route-alias-${id}`, placeholder: "same name", value: b.alias || "" });
    const compression = h("input", { type: "checkbox", id: `route-compression-${id}`, checked: b.compression !== false });
    const prefixes = b.public ? [""] : (b.public_prefixes || []);
    const pub = h("input", { type: "text", id: `route-public-${id}`, placeholder: "none", value: prefixes.map((p) => p || "(whole bucket)").join(", ") });
    const ratio = h("input", { type: "text", id: `route-ratio-${id}`, placeholder: "default", size: 5, value: b.max_delta_ratio ?? "" });
    const deltaTypes = h("input", { type: "text", id: `route-delta-types-${id}`, placeholder: ".fw, .img", value: (b.delta_types || []).join(", ") });
    const wholeTypes = h("input", { type: "text", id: `route-passthrough-types-${id}`, placeholder: "none", value: (b.passthrough_types || []).join(", ") });
    const problems = h("div", { class: "route-problems", id: `route-problems-${id}` });
    const patch = async (entry, bucket) => {
      clearNotices();
      problems.replaceChildren();
      try {
        await api("PATCH", "/_/api/config/storage", { buckets: { [bucket]: entry } });
        await backendsView(h("div", { class: "msg ok", id: "route-saved" }, entry === null ? `Route for ${bucket} removed.` : `Route for ${bucket} applied.`));
      } catch (e) { problems.replaceChildren(problemsOf(e)); }
    };
    const list = (input) => (input.value.trim() === "" ? null : input.value.split(",").map((x) => x.trim()).filter((x) => x));
    const save = () => {
      const bucket = name === null ? bucketName.value.trim() : name;
      const pp = pub.value.trim() === "" ? null : pub.value.split(",").map((x) => x.trim()).map((x) => (x === "(whole bucket)" ? "" : x));
      const r = ratio.value.trim();
      patch({ backend: backend.value, alias: alias.value.trim() || null, compression: compression.checked ? null : false,
        public: null, public_prefixes: pp, max_delta_ratio: r === "" ? null : (isNaN(Number(r)) ? r : Number(r)),
        delta_types: list(deltaTypes), passthrough_types: list(wholeTypes) }, bucket);
    };
    return [h("tr", { "data-route": id },
      h("td", {}, name === null ? bucketName : name),
      h("td", {}, backend), h("td", {}, alias), h("td", {}, compression), h("td", {}, ratio), h("td", {}, deltaTypes), h("td", {}, wholeTypes), h("td", {}, pub),
      h("td", {},
        h("button", { type: "button", id: `route-save-${id}`, onclick: save }, name === null ? "Add" : "Apply"), " ",
        name === null ? "" : h("button", { type: "button", class: "danger", id: `route-remove-${id}`, onclick: () => patch(null, name) }, "Remove"))),
    h("tr", {}, h("td", { colspan: 9 }, problems))];
  };
  return h("div", { class: "card", id: "routes" },
    h("strong", {}, "Bucket routing"),
    h("p", { class: "muted" }, "Which backend each bucket lives on, under which real name (alias), its delta compression (on or off; the largest delta kept, as a fraction of the object; file suffixes always or never stored as deltas), and which key prefixes anyone may read. Buckets not listed go to the default backend."),
    h("table", { id: "routes-table" },
      h("thead", {}, h("tr", {}, ["Bucket", "Backend", "Alias", "Compression", "Max delta ratio", "Delta types", "Whole types", "Public prefixes", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, Object.entries(buckets).flatMap(([n, b]) => row(n, b || {})), row(null, {}))));
}

// ---- files -------------------------------------------------------------

const PART_SIZE = 8 * 1024 * 1024; // files above this go up in parts

// One request with upload progress (fetch has none): resolves to the JSON answer.
function xhrSend(method, url, body, onProgress) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open(method, url);
    x.setRequestHeader("X-CSRF-Token", state.csrf);
    x.upload.onprogress = (ev) => onProgress(ev.loaded);
    x.onload = () => {
      let data = {};
      try { data = JSON.parse(x.responseText || "{}"); } catch (_) { /* not JSON */ }
      if (x.status >= 200 && x.status < 300) resolve(data);
      else reject(new ApiError(x.status, data));
    };
    x.onerror = () => reject(new Error("the upload was interrupted"));
    x.send(body);
  });
}

function fileUrl(path, bucket, key, extra) {
  const q = new URLSearchParams({ bucket, ...(key !== undefined ? { key } : {}), ...(extra || {}) });
  return `/_/api/files${path}?${q}`;
}

// Uploads `file` as `key`, in parts when it is large; `progress(bytesSent)`.
async function uploadFile(bucket, key, file, progress) {
  if (file.size <= PART_SIZE) {
    return xhrSend("PUT", fileUrl("/object", bucket, key), file, progress);
  }
  const { upload_id: id } = await api("POST", fileUrl("/uploads", bucket, key, { content_type: file.type || "" }));
  const parts = [];
  let done = 0;
  for (let n = 1, off = 0; off < file.size; n++, off += PART_SIZE) {
    const chunk = file.slice(off, off + PART_SIZE);
    const r = await xhrSend("PUT", fileUrl(`/uploads/${encodeURIComponent(id)}`, bucket, key, { part: n }), chunk,
      (loaded) => progress(done + loaded));
    done += chunk.size;
    parts.push({ number: n, etag: r.etag });
  }
  return api("POST", fileUrl(`/uploads/${encodeURIComponent(id)}/complete`, bucket, key), { parts });
}

async function filesView() {
  const [, bucket, ...rest] = location.hash.replace(/^#\//, "").split("/").map(decodeURIComponent);
  if (!bucket) {
    const r = await api("GET", "/_/api/files");
    show(h("h1", {}, "Files"),
      h("ul", { id: "file-buckets", class: "listing" }, r.buckets.map((b) =>
        h("li", {}, h("a", { href: `#/files/${encodeURIComponent(b)}/` }, `${b}/`)))));
    return;
  }
  const prefix = rest.join("/");
  const r = await api("GET", fileUrl("", bucket, undefined, { prefix }));
  const here = (p) => `#/files/${encodeURIComponent(bucket)}/${p.split("/").map(encodeURIComponent).join("/")}`;
  const crumbs = [h("a", { href: "#/files" }, "buckets"), " / ", h("a", { href: here("") }, bucket)];
  let acc = "";
  for (const part of prefix.split("/").filter(Boolean)) {
    acc += `${part}/`;
    crumbs.push(" / ", h("a", { href: here(acc) }, part));
  }
  const msg = h("div", { id: "files-msg" });
  const preview = h("div", { id: "preview" });
  const rows = [
    ...r.prefixes.map((p) => h("tr", { "data-prefix": p }, h("td", {}),
      h("td", {}, h("a", { href: here(p) }, p.slice(prefix.length))), h("td", {}, "folder"), h("td", {}), h("td", {}))),
    ...r.objects.map((o) => {
      const name = o.key.slice(prefix.length);
      const isText = /^text\//.test(o.content_type || "") || /\.(txt|md|log|json|ya?ml|csv|ini|conf)$/i.test(name);
      const isImage = /^image\/(png|jpeg|gif|webp)$/.test(o.content_type || "");
      return h("tr", { "data-key": o.key },
        h("td", {}, h("input", { type: "checkbox", class: "pick", value: o.key })),
        h("td", {}, name), h("td", {}, bytes(o.size)), h("td", {}, new Date(o.mtime_ms).toLocaleString()),
        h("td", {},
          h("a", { class: "download", href: fileUrl("/object", bucket, o.key), download: name }, "Download"), " ",
          (isText || isImage) ? h("button", { type: "button", class: "preview", onclick: async () => {
            const url = fileUrl("/object", bucket, o.key, { inline: "1" });
            if (isImage) { preview.replaceChildren(h("img", { src: url, alt: name, class: "preview-img" })); return; }
            const t = await (await fetch(url)).text();
            preview.replaceChildren(h("pre", { class: "preview-text" }, t.slice(0, 200000)));
          } }, "Preview") : "", " ",
          h("button", { type: "button", class: "danger delete", onclick: async () => {
            if (!confirm(`Delete ${o.key}?`)) return;
            try { await api("DELETE", fileUrl("/object", bucket, o.key)); await filesView(); } catch (e) { msg.replaceChildren(errorBox(e)); }
          } }, "Delete")));
    })];
  const input = h("input", { type: "file", id: "upload-file", multiple: true });
  const fill = h("span");
  fill.style.width = "0%";
  const status = h("span", { id: "upload-status" });
  const bar = h("div", { class: "bar", id: "upload-progress" }, fill);
  const upload = h("button", { type: "button", class: "primary", id: "upload-button", onclick: async () => {
    const list = Array.from(input.files);
    const total = list.reduce((n, f) => n + f.size, 0) || 1;
    let before = 0;
    try {
      for (const f of list) {
        await uploadFile(bucket, prefix + f.name, f, (sent) => {
          const pct = Math.min(100, Math.round((100 * (before + sent)) / total));
          fill.style.width = `${pct}%`;
          status.textContent = `${f.name}: ${pct} %`;
        });
        before += f.size;
      }
      fill.style.width = "100%";
      status.textContent = `done: ${list.length} file(s), ${bytes(before)}`;
      const keep = status.textContent;
      await filesView();
      document.getElementById("upload-status").textContent = keep;
      document.querySelector("#upload-progress > span").style.width = "100%";
    } catch (e) { msg.replaceChildren(errorBox(e)); status.textContent = "failed"; }
  } }, "Upload");
  const bulk = h("button", { type: "button", class: "danger", id: "delete-selected", onclick: async () => {
    const keys = Array.from(document.querySelectorAll("input.pick:checked"), (c) => c.value);
    if (!keys.length || !confirm(`Delete ${keys.length} object(s)?`)) return;
    try {
      const res = await api("POST", fileUrl("/delete", bucket), { keys });
      await filesView();
      if (res.errors.length) document.getElementById("files-msg").replaceChildren(errorBox(new Error(res.errors.map((e) => `${e.key}: ${e.error}`).join("; "))));
    } catch (e) { msg.replaceChildren(errorBox(e)); }
  } }, "Delete selected");
  show(h("h1", {}, "Files"), h("div", { class: "crumbs", id: "crumbs" }, crumbs), msg,
    h("div", { class: "card inline" }, input, upload, bar, status),
    h("table", { id: "files" },
      h("thead", {}, h("tr", {}, ["", "Name", "Size", "Modified", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)),
    r.truncated ? h("p", { class: "muted" }, "Only the first 1000 entries are shown.") : "",
    h("div", { class: "inline" }, bulk, " ",
      h("a", { id: "zip-download", class: "button", href: fileUrl("/zip", bucket, undefined, { prefix }) },
        prefix ? `Download ${prefix} as ZIP` : `Download ${bucket} as ZIP`)), preview);
}

// ---- jobs --------------------------------------------------------------

function progress(pct, text) {
  // Through the CSSOM: the CSP refuses inline style attributes.
  const fill = h("span");
  fill.style.width = `${pct}%`;
  return h("td", {}, h("div", { class: "bar", title: `${pct} %` }, fill),
    h("span", { class: "pct" }, `${pct} %`), " ", text);
}

// "Move a bucket": starts a migrate job (POST /_/api/migrate): every object
// copied to the other backend and verified, writes paused meanwhile, then
// the route switches.
function migrateForm(backends, buckets) {
  const bucket = h("select", { id: "migrate-bucket" }, buckets.map((b) => h("option", { value: b }, b)));
  const to = h("select", { id: "migrate-to" }, backends.map((b) => h("option", { value: b }, b)));
  const as = h("input", { type: "text", id: "migrate-as", placeholder: "same name" });
  const out = h("div", { id: "migrate-msg" });
  const go = h("button", { type: "button", class: "primary", id: "migrate-start", disabled: !buckets.length, onclick: async () => {
    out.replaceChildren();
    const q = new URLSearchParams({ bucket: bucket.value, to: to.value });
    if (as.value.trim()) q.set("as", as.value.trim());
    try {
      await api("POST", `/_/api/migrate?${q}`);
      await jobsView();
    } catch (e) { out.replaceChildren(errorBox(e)); }
  } }, "Move bucket");
  return h("div", { class: "card", id: "migrate-card" }, h("strong", {}, "Move a bucket to another backend"),
    h("p", { class: "muted" }, "Every object is copied (and encrypted as the destination encrypts), then verified; writes to the bucket wait (503 SlowDown) until the route switches. Clients keep the bucket's name."),
    h("div", { class: "inline" }, h("label", { class: "field" }, "Bucket ", bucket), h("label", { class: "field" }, "to ", to),
      h("label", { class: "field" }, "as ", as), go), out);
}

async function jobsView() {
  const [mig, re, st, buckets] = await Promise.all([api("GET", "/_/api/migrate"), api("GET", "/_/api/reencrypt"),
    api("GET", "/_/api/status"), api("GET", "/_/api/files").catch(() => ({ buckets: [] }))]);
  const rows = [];
  for (const r of re.jobs || []) {
    if (!r.job) continue;
    const j = r.job;
    const state = r.running ? (j.finished ? "finishing" : "running") : j.finished ? "done" : "interrupted";
    rows.push(h("tr", { "data-job": `reencrypt-${r.backend}` },
      h("td", {}, "re-encrypt"), h("td", {}, (j.buckets || []).join(", ") || "(all)"), h("td", {}, r.backend),
      h("td", { class: "state" }, state),
      progress(r.percent || 0, `${j.rewritten} rewritten, ${j.skipped} unchanged, ${j.failed} failed of ${j.total}`)));
  }
  for (const j of mig.jobs || []) {
    const pct = j.total ? Math.round((100 * j.copied) / j.total) : (j.phase === "done" ? 100 : 0);
    rows.push(h("tr", { "data-job": `migrate-${j.bucket}` },
      h("td", {}, "migrate"), h("td", {}, j.bucket), h("td", {}, `${j.from_backend || ""} → ${j.to_backend || ""}`),
      h("td", { class: "state" }, j.phase),
      progress(pct, `${j.copied} objects, ${bytes(j.bytes)}`)));
  }
  const start = (re.jobs || []).map((r) => h("button", { type: "button", class: "start-reencrypt", "data-backend": r.backend,
    disabled: r.running, onclick: async () => {
      await api("POST", `/_/api/reencrypt?backend=${encodeURIComponent(r.backend)}`);
      await jobsView();
    } }, `Re-encrypt ${r.backend}`));
  const backendNames = (st.backends || []).map((b) => b.name);
  show(h("h1", {}, "Jobs"),
    h("div", { class: "inline" }, start),
    backendNames.length > 1 ? migrateForm(backendNames, (buckets.buckets || []).map((b) => b.name || b)) : "",
    rows.length ? h("table", { id: "jobs" },
      h("thead", {}, h("tr", {}, ["Kind", "Buckets", "Backend", "State", "Progress"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)) : h("p", { class: "muted" }, "No jobs recorded."));
  // Live progress while something runs.
  const busy = (re.jobs || []).some((r) => r.running || r.pending) || (mig.jobs || []).some((j) => j.phase !== "done");
  if (busy) refreshIn(1000, "jobs", jobsView);
}

// ---- audit log ---------------------------------------------------------

async function auditView() {
  const f = new URLSearchParams(location.hash.split("?")[1] || "");
  const input = (id, ph) => h("input", { type: "text", id, placeholder: ph, value: f.get(id.replace("audit-", "")) || "" });
  const user = input("audit-user", "user"), bucket = input("audit-bucket", "bucket");
  const status = h("select", { id: "audit-status" },
    [["", "any status"], ["2xx", "2xx"], ["error", "errors (4xx, 5xx)"], ["4xx", "4xx"], ["5xx", "5xx"], ["403", "403"]]
      .map(([v, t]) => h("option", { value: v, selected: f.get("status") === v && v !== "" }, t)));
  const form = h("form", { class: "inline", id: "audit-filter" }, user, bucket, status,
    h("button", { type: "submit", class: "primary", id: "audit-apply" }, "Filter"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    if (user.value.trim()) q.set("user", user.value.trim());
    if (bucket.value.trim()) q.set("bucket", bucket.value.trim());
    if (status.value) q.set("status", status.value);
    location.hash = `#/audit?${q}`;
  });
  const r = await api("GET", `/_/api/audit?${f}`);
  const rows = r.records.map((x) => h("tr", { "data-status": x.status },
    h("td", {}, x.time.replace("T", " ").replace(/\.\d+Z$|Z$/, "")), h("td", { class: "user" }, x.user), h("td", {}, x.source_ip),
    h("td", {}, x.operation), h("td", {}, [x.bucket, x.key].filter(Boolean).join(" / ")),
    h("td", { class: x.status >= 400 ? "bad" : "" }, x.status), h("td", {}, x.decision),
    h("td", { class: "muted" }, x.rule || ""), h("td", {}, `${x.duration_ms} ms`)));
  show(h("h1", {}, "Audit log"),
    h("p", { class: "muted" }, `The newest requests first (the server keeps the last ${r.kept_in_memory}; the journal keeps them all).`),
    h("div", { class: "card" }, form),
    h("table", { id: "audit" },
      h("thead", {}, h("tr", {}, ["Time (UTC)", "User", "From", "Operation", "Bucket / key", "Status", "Decision", "Rule", "Took"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)));
}

// ---- documentation -----------------------------------------------------

async function docsView() {
  const [path, query] = location.hash.replace(/^#\//, "").split("?");
  const name = path.split("/")[1];
  if (name) {
    const d = await api("GET", `/_/api/docs/${encodeURIComponent(name)}`);
    // Rendered by the server from the docs compiled into it, with raw HTML
    // escaped and links filtered (src/admin/docs.rs); parsed inert here.
    const parsed = new DOMParser().parseFromString(d.html, "text/html");
    show(h("p", {}, h("a", { href: "#/docs" }, "← all documents")),
      h("article", { class: "card doc", id: "doc" }, ...parsed.body.childNodes));
    return;
  }
  const q = new URLSearchParams(query || "").get("q") || "";
  const box = h("input", { type: "search", id: "docs-search", placeholder: "search the documentation", value: q });
  const form = h("form", { class: "inline" }, box, h("button", { type: "submit", id: "docs-search-button" }, "Search"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = box.value.trim() ? `#/docs?q=${encodeURIComponent(box.value.trim())}` : "#/docs";
  });
  const r = await api("GET", `/_/api/docs${q ? `?q=${encodeURIComponent(q)}` : ""}`);
  show(h("h1", {}, "Documentation"), form,
    h("ul", { id: "docs-list", class: "listing" }, r.docs.map((d) => h("li", { "data-doc": d.name },
      h("a", { href: `#/docs/${d.name}` }, d.title || d.name), " ", h("span", { class: "muted" }, d.name),
      d.snippet ? h("div", { class: "muted snippet" }, d.snippet) : ""))),
    r.docs.length ? "" : h("p", { class: "muted" }, "No document mentions that."));
}

// ---- configuration -----------------------------------------------------

async function configView() {
  const yaml = await api("GET", "/_/api/config");
  const text = h("textarea", { id: "config-text", spellcheck: "false" });
  text.value = yaml;
  const out = h("div", { id: "config-result" });
  const report = (r) => h("div", { class: "msg info" },
    ["added", "removed", "changed", "restart_required", "warnings"]
      .filter((k) => r[k] && r[k].length).map((k) => h("div", {}, `${k.replace("_", " ")}: ${r[k].join(", ")}`)),
    "Backends unchanged: " + (r.unchanged || []).join(", "));
  const problems = (e) => {
    const list = (e.body && e.body.problems) || [];
    return h("div", { class: "msg error", role: "alert" }, e.message,
      h("ul", { class: "problems" }, list.map((p) =>
        h("li", {}, `${p.field || "(document)"}${p.line ? ` (line ${p.line})` : ""}: ${p.message}`))));
  };
  const run = (dry) => async () => {
    try {
      const r = await api(dry ? "POST" : "PUT", dry ? "/_/api/config/validate" : "/_/api/config",
        text.value, "application/yaml");
      out.replaceChildren(h("div", { class: "ok" }, dry ? "Valid." : "Applied."), report(r.report));
    } catch (e) { out.replaceChildren(e.body && e.body.problems ? problems(e) : errorBox(e)); }
  };
  show(h("h1", {}, "Configuration"),
    h("p", { class: "muted" }, "The configuration file, with defaults omitted and secrets shown as <redacted> (sent back, they keep their value). Validate first; Apply checks again, applies live and writes the file."),
    text,
    h("div", { class: "inline" },
      h("button", { type: "button", id: "config-validate", onclick: run(true) }, "Validate"), " ",
      h("button", { type: "button", class: "primary", id: "config-apply", onclick: run(false) }, "Apply")),
    out);
}

// ---- router ------------------------------------------------------------

const routes = { dashboard: dashboardView, storage: storageView, backends: backendsView, files: filesView, audit: auditView, docs: docsView, users: usersView, jobs: jobsView, config: configView };

// Re-renders a view after `ms` while it is still the one shown.
function refreshIn(ms, name, render) {
  clearTimeout(state.timer);
  state.timer = setTimeout(() => {
    if (location.hash === `#/${name}`) render().catch((e) => { if (e.status !== 401) show(errorBox(e)); });
  }, ms);
}

async function route() {
  clearTimeout(state.timer);
  const name = (location.hash.replace(/^#\//, "") || "dashboard").split(/[/?]/)[0];
  if (name === "login") return loginView();
  if (!state.csrf) {
    // A page reload keeps the cookie; ask who we are (and get the token again).
    try {
      const s = await api("GET", "/_/api/session");
      state.csrf = s.csrf_token;
      state.user = s.user;
    } catch (_) {
      location.hash = "#/login";
      return;
    }
  }
  document.getElementById("top").hidden = false;
  document.getElementById("whoami").textContent = state.user || "";
  for (const a of document.querySelectorAll("header nav a")) {
    a.classList.toggle("active", a.id === `nav-${name}`);
  }
  const render = routes[name] || dashboardView;
  try {
    await render();
  } catch (e) {
    if (e.status !== 401) show(errorBox(e));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("logout").addEventListener("click", async () => {
    try { await api("DELETE", "/_/api/session"); } catch (_) { /* already gone */ }
    state.csrf = null;
    location.hash = "#/login";
  });
  window.addEventListener("hashchange", route);
  route();
});
