// The leaderboard: rank, name, score with its 95% interval, statistically tied entries
// marked; one page at a time from the server, searchable, refreshed live.
//
// The board itself comes from GET /ratings?detail=full&skip=&limit= (the server's shared
// ranks and tie marks, provisional flags and 95% rank intervals, provisional entries after
// the settled ones, the total in X-Total-Count), so only one page is ever loaded, however
// many entities there are. A category chosen in the selector reads that category's board
// (&category=), listed by GET /ratings/categories. An attribute chosen under "Control for"
// (listed by GET /ratings/attributes) reads the board with it controlled for (&control=): the
// adjusted ranks, each with the rank it has without the control, and the fitted coefficient
// in a note above the table. A search asks GET /entities/?search= instead: the
// matches carry their scores and intervals but no rank, and come in the entity list's
// order (Elo rating), so while searching the rank column stays empty rather than
// showing positions that are not ranks.
import { api, boardPath, clearError, el, setupPage, showError, strength } from "./api.js";

const PAGE_SIZE = 25;
const REFRESH_MS = 5000;
const SEARCH_DELAY_MS = 250;
const SVG = "http://www.w3.org/2000/svg";

const rowsBody = document.querySelector("[data-rows]");
const search = document.querySelector("[data-search]");
const live = document.querySelector("[data-live]");
const errorBox = document.querySelector("[data-error]");
const pageStatus = document.querySelector("[data-page-status]");
const prev = document.querySelector("[data-prev]");
const next = document.querySelector("[data-next]");
const updated = document.querySelector("[data-updated]");
const scaleLabel = document.querySelector("[data-scale]");
const searchNote = document.querySelector("[data-search-note]");
const categorySelect = document.querySelector("[data-category]");
const controlSelect = document.querySelector("[data-control]");
const controlNote = document.querySelector("[data-control-note]");

let page = 0;
let latest = 0; // serial of the newest request; older answers are dropped
let searchTimer = null;

// One scale for the bars of the page on screen, from the lowest to the highest
// interval end it shows (printed under the column heading).
function scale(rows) {
  let low = Infinity;
  let high = -Infinity;
  for (const { s } of rows) {
    low = Math.min(low, s.low);
    high = Math.max(high, s.high);
  }
  if (!Number.isFinite(low)) return { x: () => 50, low: null, high: null };
  const span = high - low || 1;
  return { x: (value) => 4 + ((value - low) / span) * 92, low, high };
}

function intervalBar(s, x) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 100 12");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "interval");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `95% interval ${s.low.toFixed(2)} to ${s.high.toFixed(2)}`);
  const shape = (name, attrs) => {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    svg.append(node);
  };
  shape("line", { x1: 0, x2: 100, y1: 6, y2: 6, class: "axis" });
  shape("rect", { x: x(s.low), y: 2, width: Math.max(0.8, x(s.high) - x(s.low)), height: 8, rx: 2, class: "range" });
  shape("rect", { x: x(s.value) - 0.8, y: 0, width: 1.6, height: 12, class: "point" });
  return svg;
}

function rankCell(entity, searching) {
  if (searching) return el("td", { class: "rank" }, el("span", { text: "–", "aria-label": "rank shown on the full board" }));
  const tied = entity.tied === true;
  const provisional = entity.provisional === true;
  return el(
    "td",
    { class: "rank" },
    el("span", { text: tied ? `=${entity.rank}` : String(entity.rank), "aria-label": tied ? `tied for rank ${entity.rank}` : null }),
    tied ? el("span", { class: "tie-badge", text: "tied", "aria-hidden": "true" }) : null,
    provisional ? el("span", { class: "provisional-badge", text: "provisional", "data-provisional": "" }) : null,
    Number.isInteger(entity.unadjusted_rank)
      ? el("span", { class: "unadjusted", text: `was ${entity.unadjusted_rank}`, "data-unadjusted": "", title: "Rank without the control" })
      : null,
  );
}

// "Controlled for length: one standard deviation (229) is worth +0.88 logits (95% interval ...)".
function describeControl(board) {
  if (!board) {
    controlNote.hidden = true;
    controlNote.textContent = "";
    return;
  }
  const parts = board.coefficients.map(({ attribute, coefficient, interval_95: [low, high], standard_deviation }) => {
    const sign = coefficient >= 0 ? "+" : "";
    return `${attribute}: one standard deviation (${standard_deviation.toPrecision(3)}) is worth ${sign}${coefficient.toFixed(2)} logits in votes (95% interval ${low.toFixed(2)} to ${high.toFixed(2)})`;
  });
  controlNote.textContent = `Ranked with ${board.control.join(", ")} taken out. ${parts.join("; ")}. "was" is the rank without the control.`;
  controlNote.hidden = false;
}

function rankRangeCell(entity, searching) {
  const range = entity.rank_interval_95;
  if (searching || !Array.isArray(range)) return el("td", { class: "rank-range", text: "–" });
  const [best, worst] = range;
  const text = best === worst ? String(best) : `${best}–${worst}`;
  return el("td", { class: "rank-range", text, "aria-label": `95% rank interval ${best} to ${worst}` });
}

function render(entities, total, term) {
  const rows = entities.map((entity) => ({ entity, s: strength(entity) }));
  const { x, low, high } = scale(rows);
  scaleLabel.textContent = low === null ? "" : `scale ${low.toFixed(2)} to ${high.toFixed(2)}`;
  rowsBody.replaceChildren(
    ...rows.map(({ entity, s }) =>
      el(
        "tr",
        {
          "data-entity-id": entity.id,
          class: [!term && entity.tied ? "tied" : "", !term && entity.provisional ? "provisional" : ""].join(" ").trim() || null,
        },
        rankCell(entity, Boolean(term)),
        rankRangeCell(entity, Boolean(term)),
        el("td", { class: "name", text: entity.name }),
        el("td", { class: "score", text: s.value.toFixed(2) }),
        el("td", { class: "interval-col" }, intervalBar(s, x)),
        el("td", { class: "votes", text: String(entity.comparisons) }),
      ),
    ),
  );
  if (!rows.length) {
    rowsBody.append(el("tr", {}, el("td", { colspan: 6, class: "empty", text: term ? "No entity matches." : "No entities yet." })));
  }
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  pageStatus.textContent = `Page ${page + 1} of ${pages} (${total} ${total === 1 ? "entity" : "entities"})`;
  prev.disabled = page === 0;
  next.disabled = page >= pages - 1;
  searchNote.hidden = !term;
}

async function refresh() {
  const serial = ++latest;
  const term = search.value.trim();
  const params = new URLSearchParams({ skip: String(page * PAGE_SIZE), limit: String(PAGE_SIZE) });
  let path;
  if (term) {
    params.set("search", term);
    path = boardPath(`/entities/?${params}`);
  } else {
    params.set("detail", "full");
    if (categorySelect.value) params.set("category", categorySelect.value);
    if (controlSelect.value) params.set("control", controlSelect.value);
    path = boardPath(`/ratings?${params}`);
  }
  try {
    const answer = await api("GET", path);
    const { headers } = answer;
    if (serial !== latest) return;
    // With control= the answer is an object: the entries and the fitted coefficients.
    const controlled = Array.isArray(answer.data) ? null : answer.data;
    const data = controlled ? controlled.entries : answer.data;
    describeControl(term ? null : controlled);
    const total = Number(headers.get("X-Total-Count"));
    // Past the end (the board shrank, or a narrower search): go to the last page.
    if (!data.length && total > 0 && page > 0) {
      page = Math.ceil(total / PAGE_SIZE) - 1;
      await refresh();
      return;
    }
    clearError(errorBox);
    render(data, total, term);
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    if (serial === latest) showError(errorBox, error);
  }
}

// The categories votes were given in; the selector keeps its choice across reloads of the list.
async function loadCategories() {
  const { data } = await api("GET", boardPath("/ratings/categories"));
  const chosen = categorySelect.value;
  const options = [el("option", { value: "", text: "All votes" })];
  for (const { category, votes } of data) {
    options.push(el("option", { value: category, text: `${category} (${votes} ${votes === 1 ? "vote" : "votes"})` }));
  }
  categorySelect.replaceChildren(...options);
  categorySelect.value = data.some((c) => c.category === chosen) ? chosen : "";
  categorySelect.disabled = data.length === 0;
}

// The attributes entities carry; the selector keeps its choice while the attribute is there.
async function loadAttributes() {
  const { data } = await api("GET", boardPath("/ratings/attributes"));
  const chosen = controlSelect.value;
  const options = [el("option", { value: "", text: "Nothing" })];
  for (const { attribute } of data) options.push(el("option", { value: attribute, text: attribute }));
  controlSelect.replaceChildren(...options);
  controlSelect.value = data.some((a) => a.attribute === chosen) ? chosen : "";
  controlSelect.disabled = data.length === 0;
}

controlSelect.addEventListener("change", () => {
  page = 0;
  refresh();
});
categorySelect.addEventListener("change", () => {
  page = 0;
  refresh();
});
search.addEventListener("input", () => {
  page = 0;
  clearTimeout(searchTimer);
  searchTimer = setTimeout(refresh, SEARCH_DELAY_MS);
});
prev.addEventListener("click", () => {
  page = Math.max(0, page - 1);
  refresh();
});
next.addEventListener("click", () => {
  page += 1;
  refresh();
});
document.querySelector("[data-refresh]").addEventListener("click", refresh);
setInterval(() => {
  if (live.checked && document.visibilityState === "visible") loadLists().then(refresh, refresh);
}, REFRESH_MS);

function loadLists() {
  return Promise.all([loadCategories(), loadAttributes()]);
}

setupPage()
  .then(loadLists)
  .then(refresh)
  .catch((error) => showError(errorBox, error));
