// The project list: every board the caller may see, with links to its pages, and a form
// to start a new one (its creator becomes its owner).
import { api, clearError, el, setupPage, showError } from "./api.js";

const errorBox = document.querySelector("[data-error]");
const status = document.querySelector("[data-status]");
const list = document.querySelector("[data-projects]");
const createForm = document.querySelector("[data-create-form]");

function card(project) {
  const base = `/p/${encodeURIComponent(project.slug)}`;
  const links = el(
    "p",
    { class: "project-links" },
    el("a", { href: `${base}/`, text: "Vote" }),
    " · ",
    el("a", { href: `${base}/leaderboard`, text: "Leaderboard" }),
  );
  if (project.role === "owner" || project.can_manage) {
    links.append(" · ", el("a", { href: `${base}/settings`, text: "Settings" }));
  }
  const facts = [project.visibility === "public" ? "Public" : "Private"];
  if (project.role) facts.push(`your role: ${project.role}`);
  return el(
    "li",
    { class: "project-card", "data-slug": project.slug },
    el("h2", {}, el("a", { href: `${base}/`, text: project.name })),
    el("p", { class: "hint", text: facts.join(" · ") }),
    project.description ? el("p", { text: project.description }) : null,
    links,
  );
}

async function load() {
  try {
    const { data } = await api("GET", "/projects/");
    list.replaceChildren(...data.map(card));
    if (!data.length) list.append(el("li", { class: "empty", text: "No projects yet." }));
  } catch (error) {
    showError(errorBox, error);
  }
}

createForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError(errorBox);
  const form = new FormData(createForm);
  const body = {
    slug: String(form.get("slug")).trim(),
    name: String(form.get("name")).trim(),
    description: String(form.get("description")),
    visibility: String(form.get("visibility")),
  };
  try {
    const { data } = await api("POST", "/projects/", body);
    createForm.reset();
    status.textContent = `Project ${data.name} created.`;
    await load();
    list.querySelector(`[data-slug="${CSS.escape(data.slug)}"] a`)?.focus();
  } catch (error) {
    showError(errorBox, error);
  }
});

setupPage()
  .then(load)
  .catch((error) => showError(errorBox, error));
