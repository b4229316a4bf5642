// The login page: credentials go to /auth/token as an OAuth2 password-grant form.
// In cookie mode the server sets an httpOnly cookie; otherwise the bearer token it
// answers with is kept for this tab only (sessionStorage).
import { api, clearError, cookieModeActive, showError, storeToken } from "./api.js";

const form = document.querySelector("[data-login-form]");
const errorBox = document.querySelector("[data-error]");

function destination() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  // Only paths on this site: never an absolute or protocol-relative URL.
  return next.startsWith("/") && !next.startsWith("//") ? next : "/";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError(errorBox);
  const body = new URLSearchParams({
    grant_type: "password",
    username: form.username.value,
    password: form.password.value,
  });
  try {
    const { data } = await api("POST", "/auth/token", body, { redirectOn401: false });
    storeToken(!cookieModeActive() && data && data.access_token ? data.access_token : null);
    location.assign(destination());
  } catch (error) {
    form.password.value = "";
    showError(errorBox, error.status === 401 ? "Wrong username or password." : error);
    form.password.focus();
  }
});

api("GET", "/app/config.json")
  .then(({ data }) => {
    if (!data.auth_enabled) {
      form.hidden = true;
      document.querySelector("[data-auth-off]").hidden = false;
    } else {
      form.username.focus();
    }
  })
  .catch((error) => showError(errorBox, error));
