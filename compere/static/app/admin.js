// The entity page: create, edit, delete, and bulk import from a CSV or JSON Lines file.
import { api, boardPath, clearError, el, setupPage, showError } from "./api.js";

const PAGE_SIZE = 20;
const errorBox = document.querySelector("[data-error]");
const status = document.querySelector("[data-status]");
const list = document.querySelector("[data-entities]");
const search = document.querySelector("[data-search]");
const pageStatus = document.querySelector("[data-page-status]");
const prev = document.querySelector("[data-prev]");
const next = document.querySelector("[data-next]");
const createForm = document.querySelector("[data-create-form]");
const importForm = document.querySelector("[data-import-form]");
const importResult = document.querySelector("[data-import-result]");
const progress = document.querySelector("[data-import-progress]");

let page = 0;
let total = 0;
let maxBodySize = null; // the largest request the server takes (MAX_BODY_SIZE), from /app/config.json

function bytes(count) {
  if (count >= 1024 * 1024) return `${Number((count / 1024 / 1024).toFixed(1))} MiB`;
  if (count >= 1024) return `${Number((count / 1024).toFixed(1))} KiB`;
  return `${count} bytes`;
}

// A file over the server's request limit: say the limit and what to use instead.
function tooLarge(file) {
  const limit = maxBodySize ? `the server takes at most ${bytes(maxBodySize)} in one request` : "it is over the server's limit for one request";
  return `${file.name} (${bytes(file.size)}) is too large to import from this page: ${limit}. Import large files on the server with the command compere import ${file.name}, which has no size limit.`;
}

function urls(text) {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean);
}

function announce(message) {
  status.textContent = message;
}

async function load() {
  const params = new URLSearchParams({ skip: String(page * PAGE_SIZE), limit: String(PAGE_SIZE) });
  if (search.value.trim()) params.set("search", search.value.trim());
  try {
    const { data, headers } = await api("GET", boardPath(`/entities/?${params}`));
    total = Number(headers.get("X-Total-Count") || data.length);
    list.replaceChildren(...data.map(item));
    if (!data.length) list.append(el("li", { class: "empty", text: "No entities." }));
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    pageStatus.textContent = `Page ${page + 1} of ${pages} (${total} ${total === 1 ? "entity" : "entities"})`;
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
  } catch (error) {
    showError(errorBox, error);
  }
}

function item(entity) {
  const li = el("li", { "data-entity-id": entity.id });
  const view = () => {
    const edit = el("button", { type: "button", text: "Edit", "aria-label": `Edit ${entity.name}` });
    const remove = el("button", { type: "button", class: "danger", text: "Delete", "aria-label": `Delete ${entity.name}` });
    edit.addEventListener("click", () => editor());
    let armed = false;
    remove.addEventListener("click", async () => {
      if (!armed) {
        armed = true;
        remove.textContent = "Confirm delete";
        announce(`Press again to delete ${entity.name}. Its votes stay in the log.`);
        return;
      }
      try {
        await api("DELETE", boardPath(`/entities/${entity.id}`));
        announce(`Deleted ${entity.name}.`);
        await load();
        document.getElementById("list-heading").focus();
      } catch (error) {
        showError(errorBox, error);
      }
    });
    li.replaceChildren(
      el(
        "div",
        { class: "entity-text" },
        el("strong", { text: entity.name }),
        entity.external_id ? el("span", { class: "hint", text: ` (${entity.external_id})` }) : null,
        entity.description ? el("p", { text: entity.description }) : null,
      ),
      el("div", { class: "entity-actions" }, edit, remove),
    );
  };
  const editor = () => {
    const id = `edit-${entity.id}`;
    const name = el("input", { id: `${id}-name`, required: true, maxlength: 200 });
    name.value = entity.name;
    const description = el("textarea", { id: `${id}-description`, maxlength: 1000, rows: 2 });
    description.value = entity.description;
    const images = el("textarea", { id: `${id}-images`, rows: 2 });
    images.value = (entity.image_urls || []).join("\n");
    const form = el(
      "form",
      { class: "edit-form", "aria-label": `Edit ${entity.name}` },
      el("label", { for: name.id, text: "Name" }),
      name,
      el("label", { for: description.id, text: "Description" }),
      description,
      el("label", { for: images.id, text: "Image URLs (one per line)" }),
      images,
      el("button", { type: "submit", text: "Save" }),
      el("button", { type: "button", text: "Cancel", "data-cancel": true }),
    );
    form.querySelector("[data-cancel]").addEventListener("click", () => view());
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const body = { name: name.value, description: description.value, image_urls: urls(images.value) };
        const { data } = await api("PUT", boardPath(`/entities/${entity.id}`), body);
        Object.assign(entity, data);
        announce(`Saved ${entity.name}.`);
        view();
        li.querySelector("button").focus();
      } catch (error) {
        showError(errorBox, error);
      }
    });
    li.replaceChildren(form);
    name.focus();
  };
  view();
  return li;
}

createForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError(errorBox);
  const form = new FormData(createForm);
  const body = {
    name: String(form.get("name") || ""),
    description: String(form.get("description") || ""),
    image_urls: urls(String(form.get("image_urls") || "")),
  };
  const external = String(form.get("external_id") || "").trim();
  if (external) body.external_id = external;
  try {
    const { data } = await api("POST", boardPath("/entities/"), body);
    createForm.reset();
    announce(`Added ${data.name}.`);
    await load();
  } catch (error) {
    showError(errorBox, error);
  }
});

importForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError(errorBox);
  const file = importForm.querySelector("input[type=file]").files[0];
  if (!file) return;
  const format = file.name.toLowerCase().endsWith(".csv") ? "csv" : "jsonl";
  if (maxBodySize && file.size > maxBodySize) {
    importResult.replaceChildren(el("span", { class: "rejected", text: tooLarge(file) }));
    return;
  }
  progress.hidden = false;
  progress.removeAttribute("value"); // indeterminate while the server works
  importResult.replaceChildren();
  try {
    const text = await file.text();
    const { data } = await api("POST", boardPath(`/entities/import?format=${format}`), text);
    const summary = `${file.name}: ${data.created} created, ${data.existing} already present, ${data.rejected_count} rejected.`;
    importResult.replaceChildren(el("span", { text: summary }));
    if (data.rejected.length) {
      importResult.append(
        el("ul", { class: "rejected" }, ...data.rejected.map((r) => el("li", { text: `Line ${r.line}: ${r.reason}` }))),
      );
    }
    importForm.reset();
    await load();
  } catch (error) {
    if (error.status === 413) importResult.replaceChildren(el("span", { class: "rejected", text: tooLarge(file) }));
    else showError(errorBox, error);
  } finally {
    progress.value = 1;
    progress.hidden = true;
  }
});

let searchTimer = null;
search.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    page = 0;
    load();
  }, 200);
});
prev.addEventListener("click", () => {
  page -= 1;
  load();
});
next.addEventListener("click", () => {
  page += 1;
  load();
});

setupPage()
  .then(({ config, user }) => {
    maxBodySize = config.max_body_size || null;
    if (maxBodySize) {
      document.querySelector("[data-import-limit]").textContent =
        `Files up to ${bytes(maxBodySize)}; for larger ones use compere import on the server.`;
    }
    if (config.auth_enabled && !(user && user.is_superuser)) {
      showError(errorBox, "Only superusers can manage entities.");
      for (const section of document.querySelectorAll("main section")) section.hidden = true;
      return;
    }
    return load();
  })
  .catch((error) => showError(errorBox, error));
