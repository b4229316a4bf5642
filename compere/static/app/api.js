// Shared by every page: calls to the Compere API, the signed-in account, small DOM helpers.
// No framework and no build step; served as ES modules under a strict CSP.

// Cookie mode (auth): the server sets an httpOnly session cookie plus a readable CSRF
// cookie; unsafe requests echo the latter in a header (double-submit).
const CSRF_COOKIE = "__Host-compere_csrf";
const CSRF_HEADER = "X-CSRF-Token";
// Only used when the server answers a login with a bearer token and sets no cookie.
const TOKEN_KEY = "compere.token";

export class ApiError extends Error {
  constructor(status, detail) {
    super(describe(detail, status));
    this.status = status;
    this.detail = detail;
  }
}

function describe(detail, status) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail) && detail.length) {
    return detail.map((d) => `${(d.loc || []).slice(1).join(".") || "input"}: ${d.msg}`).join("; ");
  }
  return `The server answered ${status}`;
}

function cookie(name) {
  const prefix = `${name}=`;
  for (const part of document.cookie.split(";")) {
    const item = part.trim();
    if (item.startsWith(prefix)) return decodeURIComponent(item.slice(prefix.length));
  }
  return null;
}

// True once the server has set the CSRF cookie, that is, it authenticates by cookie.
export function cookieModeActive() {
  return cookie(CSRF_COOKIE) !== null;
}

export function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// Which board a page shows. Pages under /p/{slug}/ and the share page /share/{slug} name
// a project; the original pages (/, /leaderboard, /admin) show the project "default"
// through the top-level API, exactly as before projects existed.
export function currentProject() {
  const match = location.pathname.match(/^\/(?:p|share)\/([A-Za-z0-9_-]+)(?:\/|$)/);
  return match ? match[1] : null;
}

// The share page: a public project's vote page for anonymous voters, nothing else.
export function sharedPage() {
  return location.pathname.startsWith("/share/");
}

// An API path on the page's board: /projects/{slug}/ratings or the top-level /ratings.
export function boardPath(path) {
  const slug = currentProject();
  return slug ? `/projects/${encodeURIComponent(slug)}${path}` : path;
}

// A web app page of the same board: /p/{slug}/leaderboard or /leaderboard.
export function pagePath(page) {
  const slug = currentProject();
  return slug ? `/p/${encodeURIComponent(slug)}${page}` : page;
}

function goToLogin() {
  const next = encodeURIComponent(location.pathname + location.search);
  location.assign(`/login?next=${next}`);
}

// fetch() with JSON in and out, the CSRF header, and one error shape.
// body: an object (sent as JSON), a URLSearchParams (form) or a string (sent as is).
export async function api(method, path, body, { redirectOn401 = true } = {}) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin" };
  if (body instanceof URLSearchParams || typeof body === "string") {
    init.body = body;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (!["GET", "HEAD"].includes(method)) {
    const csrf = cookie(CSRF_COOKIE);
    if (csrf) headers[CSRF_HEADER] = csrf;
  }
  const token = storedToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "The server cannot be reached. Check your connection and try again.");
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  // The server refuses a token that no longer holds (401), even where anyone may read.
  // The share page never sends anyone to the login form: it drops the stale token and
  // asks again without it, as the anonymous voter it serves.
  if (response.status === 401 && token && sharedPage()) {
    storeToken(null);
    return api(method, path, body, { redirectOn401 });
  }
  if (response.status === 401 && redirectOn401 && !sharedPage()) {
    storeToken(null);
    goToLogin();
  }
  if (!response.ok) throw new ApiError(response.status, data && data.detail !== undefined ? data.detail : data);
  return { data, headers: response.headers, status: response.status };
}

// What the server says about itself (whether auth is on) and who is signed in.
export async function session() {
  const { data: config } = await api("GET", "/app/config.json");
  if (!config.auth_enabled) return { config, user: null };
  if (!cookieModeActive() && !storedToken()) {
    // Not signed in (no session cookie's CSRF companion, no token): straight to the
    // login page, without a request that can only answer 401.
    goToLogin();
    return new Promise(() => {});
  }
  const { data: user } = await api("GET", "/auth/users/me");
  return { config, user };
}

// Fills the header's account area, points the menu at the page's board, offers the
// other projects, and hides links the user may not follow.
export async function setupPage() {
  if (sharedPage()) return sharedSetup();
  const { config, user } = await session();
  const slot = document.querySelector("[data-account]");
  if (user && slot) {
    slot.textContent = `Signed in as ${user.username} `;
    const out = document.createElement("button");
    out.type = "button";
    out.className = "link-button";
    out.textContent = "Log out";
    out.addEventListener("click", async () => {
      try {
        await api("POST", "/auth/logout", undefined, { redirectOn401: false });
      } catch {
        // Logging out of an expired session is still logging out.
      }
      storeToken(null);
      location.assign("/login");
    });
    slot.append(out);
  }
  const project = currentProject() ? await projectHeader() : null;
  for (const link of document.querySelectorAll("a[data-page]")) link.href = pagePath(link.dataset.page);
  // What the menu offers: entity pages to editors (superusers on the original pages),
  // project settings to owners. With auth off everything is open.
  const role = project ? project.role : null;
  const may = {
    superuser: !user || user.is_superuser,
    editor: !user || user.is_superuser || ["owner", "editor"].includes(role),
    owner: !user || user.is_superuser || role === "owner",
  };
  for (const link of document.querySelectorAll("[data-requires]")) {
    const need = project && link.dataset.requires === "superuser" ? "editor" : link.dataset.requires;
    // Settings belong to a project page; the original pages have none of their own.
    link.hidden = !may[need] || (link.dataset.page === "/settings" && !project);
  }
  return { config, user, project };
}

// The project's name beside the brand, and a switcher to the caller's other projects.
async function projectHeader() {
  const slug = currentProject();
  const { data: project } = await api("GET", `/projects/${encodeURIComponent(slug)}`);
  const slot = document.querySelector("[data-project]");
  if (!slot) return project;
  const { data: projects } = await api("GET", "/projects/");
  const select = el("select", { id: "project-switcher", "aria-label": "Project" });
  for (const item of projects) {
    select.append(el("option", { value: item.slug, text: item.name, selected: item.slug === slug }));
  }
  if (!projects.some((item) => item.slug === slug)) {
    select.prepend(el("option", { value: slug, text: project.name, selected: true }));
  }
  select.addEventListener("change", () => {
    const rest = location.pathname.replace(/^\/p\/[^/]+/, "") || "/";
    location.assign(`/p/${encodeURIComponent(select.value)}${rest}`);
  });
  slot.replaceChildren(select);
  document.title = `${document.title.split(" · ")[0]} · ${project.name} · Compere`;
  return project;
}

// The share page asks nobody to sign in: the project must be public.
async function sharedSetup() {
  const { data: config } = await api("GET", "/app/config.json");
  const slug = currentProject();
  const { data: project } = await api("GET", `/projects/${encodeURIComponent(slug)}`);
  for (const slot of document.querySelectorAll("[data-project-name]")) slot.textContent = project.name;
  document.title = `Vote · ${project.name}`;
  return { config, user: null, project };
}

export function showError(element, error) {
  element.textContent = error instanceof Error ? error.message : String(error);
  element.hidden = false;
}

export function clearError(element) {
  element.textContent = "";
  element.hidden = true;
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

// Score and 95% interval of an entity, as the server sends them on every entity.
export function strength(entity) {
  const [low, high] = entity.interval_95;
  return { value: entity.score, low, high };
}
