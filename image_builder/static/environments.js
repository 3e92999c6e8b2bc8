// The environments page: list, register, follow a build's log live, rebuild, delete, share.
"use strict";
const config = JSON.parse(document.body.dataset.config);
const api = (path) => `${config.prefix}api/${path}`;
let following = null;

async function call(method, path, body) {
  const reply = await fetch(api(path), {
    method,
    headers: { "Content-Type": "application/json", "X-XSRFToken": config.xsrf },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const text = await reply.text();
  const data = text ? JSON.parse(text) : {};
  if (!reply.ok) throw new Error(data.message || `${reply.status} ${reply.statusText}`);
  return data;
}

function say(text, isError) {
  const message = document.getElementById("message");
  message.textContent = text;
  message.className = isError ? "error" : "";
}

function cell(row, content) {
  const td = row.insertCell();
  if (content instanceof Node) td.appendChild(content); else td.textContent = content;
  return td;
}

function button(label, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", action);
  return b;
}

function actions(env) {
  const box = document.createElement("span");
  box.appendChild(button("Log", () => follow(env)));
  const mine = env.owner === config.user || config.admin;
  if (env.links.launch) {
    const a = document.createElement("a");
    a.href = env.links.launch;
    a.textContent = " Launch ";
    a.className = "launch";
    box.appendChild(a);
  }
  if (mine && env.builder !== "site") {
    box.appendChild(button("Rebuild", async () => {
      try { await call("POST", `environments/${env.id}/rebuild`, {}); follow(env); refresh(); }
      catch (e) { say(e.message, true); }
    }));
    box.appendChild(button("Delete", async () => {
      if (!confirm(`Delete ${env.name}?`)) return;
      try { await call("DELETE", `environments/${env.id}`); refresh(); }
      catch (e) { say(e.message, true); }
    }));
    const choices = ["private", ...config.groups.map((g) => `group:${g}`)];
    if (config.admin) choices.push("site");
    const select = document.createElement("select");
    select.className = "share";
    for (const choice of choices) {
      const option = new Option(choice, choice, false, choice === env.visibility);
      select.add(option);
    }
    select.addEventListener("change", async () => {
      try { await call("PUT", `environments/${env.id}/visibility`, { visibility: select.value }); refresh(); }
      catch (e) { say(e.message, true); }
    });
    box.appendChild(select);
  }
  return box;
}

async function refresh() {
  const data = await call("GET", "environments");
  const body = document.querySelector("#environments tbody");
  body.replaceChildren();
  for (const env of data.environments) {
    const row = body.insertRow();
    row.id = `env-${env.id}`;
    cell(row, env.display_name);
    cell(row, env.owner);
    const status = cell(row, env.status + (env.latest_build && env.status !== "ready"
      ? ` (${env.latest_build.progress}%)` : ""));
    status.className = `status-${env.status}`;
    for (const note of env.artifact.notes || []) {
      const line = document.createElement("div");
      line.className = "build-note";
      line.textContent = note;
      status.appendChild(line);
    }
    const source = env.source.repo_url
      ? `${env.source.repo_url} @ ${env.source.ref}` +
        (env.source.commit_sha ? ` → ${env.source.commit_sha.slice(0, 12)}` : "")
      : env.artifact.venv_path || env.artifact.image_ref || "";
    cell(row, source);
    cell(row, env.visibility);
    cell(row, actions(env));
  }
}

function follow(env) {
  if (following) following.close();
  document.getElementById("build").hidden = false;
  document.getElementById("build-name").textContent = env.display_name;
  const log = document.getElementById("log");
  log.textContent = "";
  // EventSource cannot send headers: the xsrf token goes in the query.
  const xsrf = encodeURIComponent(config.xsrf);
  const source = new EventSource(api(`environments/${env.id}/log?_xsrf=${xsrf}`));
  following = source;
  source.onmessage = (event) => {
    const data = JSON.parse(event.data);
    if (data.line !== undefined) log.textContent += data.line + "\n";
    if (data.progress !== undefined) {
      document.getElementById("progress").style.width = `${data.progress}%`;
      document.getElementById("percent").textContent = `${data.progress}%`;
    }
    if (data.phase) document.getElementById("phase").textContent = data.phase;
    log.scrollTop = log.scrollHeight;
    if (data.done) {
      source.close();
      document.getElementById("phase").textContent =
        data.status === "ready" ? "Ready" : `Failed: ${data.error || ""}`;
      refresh();
    }
  };
  // The stream replays the whole log: start afresh whenever it (re)connects.
  source.onopen = () => { log.textContent = ""; };
  source.onerror = () => {
    document.getElementById("phase").textContent = "Connection lost; reconnecting…";
  };
}

document.getElementById("register").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = Object.fromEntries([...form.entries()].filter(([, v]) => v !== ""));
  try {
    const env = await call("POST", "environments", body);
    say(`Registered ${env.name}; building.`);
    event.target.reset();
    await refresh();
    follow(env);
  } catch (e) { say(e.message, true); }
});

refresh().catch((e) => say(e.message, true));
// Refresh the table, but not under a user who is choosing in it.
setInterval(() => {
  if (document.getElementById("environments").contains(document.activeElement)) return;
  refresh().catch(() => {});
}, 5000);
