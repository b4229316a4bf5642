// A project's settings page, for its owners (and superusers): the project's name,
// visibility and ranking settings, its share link, its members and the caller's API keys
// for it. A new key is shown once, in a read-only field with a copy button.
import { api, clearError, currentProject, el, setupPage, showError } from "./api.js";

const errorBox = document.querySelector("[data-error]");
const status = document.querySelector("[data-status]");
const projectForm = document.querySelector("[data-project-form]");
const shareSection = document.querySelector("[data-share]");
const shareLink = document.querySelector("[data-share-link]");
const membersBody = document.querySelector("[data-members]");
const memberForm = document.querySelector("[data-member-form]");
const keysBody = document.querySelector("[data-keys]");
const keyForm = document.querySelector("[data-key-form]");
const newKey = document.querySelector("[data-new-key]");
const newKeyValue = document.querySelector("[data-new-key-value]");

const slug = currentProject();
const base = `/projects/${encodeURIComponent(slug)}`;
const CHOICES = ["strategy", "trust_mode", "ranking_objective"];
const NUMBERS = [
  "elo_k_factor",
  "prior_sd",
  "exploration",
  "daily_vote_cap",
  "ranking_top_k",
  "provisional_max_uncertainty",
  "provisional_min_votes",
];
const FLAGS = ["allow_ties", "allow_anonymous"];

function announce(message) {
  status.textContent = message;
}

async function guarded(action) {
  clearError(errorBox);
  try {
    await action();
  } catch (error) {
    showError(errorBox, error);
  }
}

// The value a project stores for a setting: its own, or null to follow the server.
function own(project, name) {
  const value = (project.overrides || {})[name];
  return value === undefined ? null : value;
}

let current = null; // the project as last read or saved

function fillProject(project) {
  current = project;
  const fields = projectForm.elements;
  fields.name.value = project.name;
  fields.description.value = project.description || "";
  fields.visibility.value = project.visibility;
  for (const name of CHOICES) fields[name].value = own(project, name) || "";
  for (const name of NUMBERS) {
    const value = own(project, name);
    fields[name].value = value === null ? "" : String(value);
    const effective = project.settings[name];
    fields[name].placeholder = effective === undefined || effective === null ? "" : `now ${effective}`;
  }
  for (const name of FLAGS) {
    const value = own(project, name);
    fields[name].checked = value === null ? Boolean(project.settings[name]) : Boolean(value);
  }
  shareSection.hidden = project.visibility !== "public";
  shareLink.value = `${location.origin}/share/${encodeURIComponent(project.slug)}`;
}

async function loadProject() {
  const { data } = await api("GET", base);
  fillProject(data);
}

projectForm.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!current) return; // not loaded yet: nothing to compare the form with
  guarded(async () => {
    const fields = projectForm.elements;
    const body = {
      name: fields.name.value.trim(),
      description: fields.description.value,
      visibility: fields.visibility.value,
    };
    for (const name of CHOICES) body[name] = fields[name].value || null;
    // A box left as the server's setting stays unset, so it keeps following the server.
    for (const name of NUMBERS) body[name] = fields[name].value === "" ? null : Number(fields[name].value);
    for (const name of FLAGS) {
      const following = own(current, name) === null && fields[name].checked === Boolean(current.settings[name]);
      body[name] = following ? null : fields[name].checked;
    }
    const { data } = await api("PATCH", base, body);
    fillProject(data);
    // A change of trust mode weighs every vote again (in the same request).
    const replayed = data.ratings_rebuilt;
    announce(replayed ? `Settings saved; ${replayed} votes weighed again.` : "Settings saved.");
  });
});

function memberRow(member) {
  const role = el("select", { "aria-label": `Role of ${member.username}` });
  for (const value of ["viewer", "voter", "editor", "owner"]) {
    role.append(el("option", { value, text: value, selected: value === member.role }));
  }
  role.addEventListener("change", () =>
    guarded(async () => {
      await api("PUT", `${base}/members/${encodeURIComponent(member.username)}`, { role: role.value });
      announce(`${member.username} is now ${role.value}.`);
    }),
  );
  const remove = el("button", { type: "button", class: "danger", text: `Remove ${member.username}` });
  remove.addEventListener("click", () =>
    guarded(async () => {
      await api("DELETE", `${base}/members/${encodeURIComponent(member.username)}`);
      announce(`${member.username} removed.`);
      await loadMembers();
      memberForm.elements.username.focus();
    }),
  );
  return el("tr", { "data-member": member.username }, el("td", { text: member.username }), el("td", {}, role), el("td", {}, remove));
}

async function loadMembers() {
  const { data } = await api("GET", `${base}/members`);
  membersBody.replaceChildren(...data.map(memberRow));
}

memberForm.addEventListener("submit", (event) => {
  event.preventDefault();
  guarded(async () => {
    const username = memberForm.elements.username.value.trim();
    const role = memberForm.elements.role.value;
    await api("PUT", `${base}/members/${encodeURIComponent(username)}`, { role });
    memberForm.reset();
    announce(`${username} added as ${role}.`);
    await loadMembers();
  });
});

function when(value) {
  return value ? new Date(value).toLocaleString() : "never";
}

function keyRow(key) {
  const revoke = el("button", { type: "button", class: "danger", text: `Revoke ${key.name}` });
  revoke.addEventListener("click", () =>
    guarded(async () => {
      await api("DELETE", `/auth/api-keys/${key.id}`);
      announce(`Key ${key.name} revoked.`);
      await loadKeys();
      keyForm.elements.name.focus();
    }),
  );
  return el(
    "tr",
    { "data-key": key.prefix },
    el("td", { text: key.name }),
    el("td", {}, el("code", { text: `${key.prefix}…` })),
    el("td", { text: (key.scopes || []).join(", ") }),
    el("td", { text: when(key.last_used_at) }),
    el("td", { text: key.expires_at ? new Date(key.expires_at).toLocaleDateString() : "no expiry" }),
    el("td", {}, revoke),
  );
}

// The caller's live keys that work on this project (its own and all-project keys).
async function loadKeys() {
  const { data } = await api("GET", "/auth/api-keys");
  const usable = data.filter((key) => !key.revoked && (key.project_id === null || key.project_id === current.id));
  keysBody.replaceChildren(...usable.map(keyRow));
  if (!usable.length) keysBody.append(el("tr", {}, el("td", { colspan: "6", class: "empty", text: "No keys." })));
}

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  guarded(async () => {
    const form = new FormData(keyForm);
    const body = { name: String(form.get("name")).trim(), project_id: current.id, scopes: form.getAll("scopes").map(String) };
    const expires = String(form.get("expires") || "");
    if (expires) body.expires_at = new Date(`${expires}T23:59:59`).toISOString();
    const { data } = await api("POST", "/auth/api-keys", body);
    keyForm.reset();
    newKeyValue.value = data.key;
    newKey.hidden = false;
    newKeyValue.focus();
    newKeyValue.select();
    announce(`Key ${data.name} created. Copy it now: it is shown only once.`);
    await loadKeys();
  });
});

document.querySelector("[data-dismiss-key]").addEventListener("click", () => {
  newKeyValue.value = "";
  newKey.hidden = true;
  keyForm.elements.name.focus();
});

for (const button of document.querySelectorAll("[data-copy]")) {
  button.addEventListener("click", async () => {
    const field = document.getElementById(button.dataset.copy);
    field.select();
    try {
      await navigator.clipboard.writeText(field.value);
      announce("Copied.");
    } catch {
      announce("Selected: press Ctrl+C to copy.");
    }
  });
}

document.querySelector("[data-archive]").addEventListener("click", () =>
  guarded(async () => {
    if (!window.confirm("Archive this project? It becomes read-only and disappears from lists.")) return;
    await api("DELETE", base);
    location.assign("/p/");
  }),
);

// With authentication off there are no accounts: no members and no keys to manage.
async function start() {
  const { config } = await setupPage();
  if (!config.auth_enabled) {
    for (const section of document.querySelectorAll("[data-needs-auth]")) section.hidden = true;
    await loadProject();
    return;
  }
  await loadProject();
  await Promise.all([loadMembers(), loadKeys()]);
}

start().catch((error) => showError(errorBox, error));
