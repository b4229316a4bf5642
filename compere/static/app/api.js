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
  if (response.status === 401 && redirectOn401) {
    storeToken(null);
    const next = encodeURIComponent(location.pathname + location.search);
    location.assign(`/login?next=${next}`);
  }
  if (!response.ok) throw new ApiError(response.status, data && data.detail !== undefined ? data.detail : data);
  return { data, headers: response.headers, status: response.status };
}

// What the server says about itself (whether auth is on) and who is signed in.
export async function session() {
  const { data: config } = await api("GET", "/app/config.json");
  if (!config.auth_enabled) return { config, user: null };
  const { data: user } = await api("GET", "/auth/users/me");
  return { config, user };
}

// Fills the header's account area and hides links the user may not follow.
export async function setupPage() {
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
  if (user && !user.is_superuser) {
    for (const link of document.querySelectorAll("[data-requires=superuser]")) link.hidden = true;
  }
  return { config, user };
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

// Score, uncertainty and 95% interval of an entity, whatever the server provides:
// the Bayesian model's fields when present, else the Elo rating alone.
export function strength(entity) {
  const score = typeof entity.score === "number" ? entity.score : null;
  if (score === null) return { value: entity.rating, low: null, high: null, kind: "rating" };
  let low = null;
  let high = null;
  const pairs = [
    entity.interval,
    entity.interval95,
    entity.ci95,
    [entity.interval_low, entity.interval_high],
    [entity.score_low, entity.score_high],
    [entity.ci_low, entity.ci_high],
  ];
  for (const pair of pairs) {
    if (Array.isArray(pair) && typeof pair[0] === "number" && typeof pair[1] === "number") {
      [low, high] = pair;
      break;
    }
    if (pair && typeof pair === "object" && typeof pair.low === "number" && typeof pair.high === "number") {
      ({ low, high } = pair);
      break;
    }
  }
  if (low === null && typeof entity.uncertainty === "number") {
    low = score - 1.96 * entity.uncertainty;
    high = score + 1.96 * entity.uncertainty;
  }
  return { value: score, low, high, kind: "score" };
}
