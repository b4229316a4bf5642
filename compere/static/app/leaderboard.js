// The leaderboard: rank, name, score with its 95% interval, statistically tied entries
// marked; searched and paged in the page, refreshed live.
import { api, clearError, el, setupPage, showError, strength } from "./api.js";

const PAGE_SIZE = 25;
const REFRESH_MS = 5000;
const SVG = "http://www.w3.org/2000/svg";

const rowsBody = document.querySelector("[data-rows]");
const search = document.querySelector("[data-search]");
const live = document.querySelector("[data-live]");
const errorBox = document.querySelector("[data-error]");
const pageStatus = document.querySelector("[data-page-status]");
const prev = document.querySelector("[data-prev]");
const next = document.querySelector("[data-next]");
const updated = document.querySelector("[data-updated]");
const scoreHeading = document.querySelector("[data-score-heading]");

let board = []; // [{entity, rank, tied, s}] in leaderboard order
let page = 0;

// Ranks: the server's shared ranks when it sends them (intervals that overlap), else
// equal values share a rank.
function ranked(entities) {
  const rows = entities.map((entity) => ({ entity, s: strength(entity) }));
  if (rows.every((r) => typeof r.entity.rank === "number")) {
    for (const r of rows) r.rank = r.entity.rank;
  } else {
    rows.forEach((r, i) => {
      const before = rows[i - 1];
      r.rank = before && before.s.value === r.s.value ? before.rank : i + 1;
    });
  }
  const counts = new Map();
  for (const r of rows) counts.set(r.rank, (counts.get(r.rank) || 0) + 1);
  for (const r of rows) r.tied = r.entity.tied === true || counts.get(r.rank) > 1;
  return rows;
}

function scale(rows) {
  let low = Infinity;
  let high = -Infinity;
  for (const { s } of rows) {
    low = Math.min(low, s.low ?? s.value);
    high = Math.max(high, s.high ?? s.value);
  }
  if (!Number.isFinite(low)) return () => 50;
  const span = high - low || 1;
  return (x) => 4 + ((x - low) / span) * 92;
}

function intervalBar(s, x) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 100 12");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "interval");
  svg.setAttribute("role", "img");
  const shape = (name, attrs) => {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    svg.append(node);
  };
  shape("line", { x1: 0, x2: 100, y1: 6, y2: 6, class: "axis" });
  if (s.low !== null) {
    shape("rect", { x: x(s.low), y: 2, width: Math.max(0.8, x(s.high) - x(s.low)), height: 8, rx: 2, class: "range" });
    svg.setAttribute("aria-label", `95% interval ${s.low.toFixed(2)} to ${s.high.toFixed(2)}`);
  } else {
    svg.setAttribute("aria-label", "No interval available");
  }
  shape("rect", { x: x(s.value) - 0.8, y: 0, width: 1.6, height: 12, class: "point" });
  return svg;
}

function format(s) {
  return s.kind === "score" ? s.value.toFixed(2) : Math.round(s.value).toString();
}

function render() {
  const term = search.value.trim().toLowerCase();
  const shown = term ? board.filter((r) => r.entity.name.toLowerCase().includes(term)) : board;
  const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
  page = Math.min(page, pages - 1);
  const x = scale(board);
  scoreHeading.textContent = board.length && board[0].s.kind === "rating" ? "Rating (Elo)" : "Score";
  const slice = shown.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
  rowsBody.replaceChildren(
    ...slice.map((r) =>
      el(
        "tr",
        { "data-entity-id": r.entity.id, class: r.tied ? "tied" : null },
        el(
          "td",
          { class: "rank" },
          el("span", { text: r.tied ? `=${r.rank}` : String(r.rank), "aria-label": r.tied ? `tied for rank ${r.rank}` : null }),
          r.tied ? el("span", { class: "tie-badge", text: "tied", "aria-hidden": "true" }) : null,
        ),
        el("td", { class: "name", text: r.entity.name }),
        el("td", { class: "score", text: format(r.s) }),
        el("td", { class: "interval-col" }, intervalBar(r.s, x)),
        el("td", { class: "votes", text: String(r.entity.comparisons ?? "") }),
      ),
    ),
  );
  if (!slice.length) {
    rowsBody.append(el("tr", {}, el("td", { colspan: 5, class: "empty", text: term ? "No entity matches." : "No entities yet." })));
  }
  pageStatus.textContent = `Page ${page + 1} of ${pages} (${shown.length} ${shown.length === 1 ? "entity" : "entities"})`;
  prev.disabled = page === 0;
  next.disabled = page >= pages - 1;
}

async function refresh() {
  try {
    const { data } = await api("GET", "/ratings?by=score");
    const entities = Array.isArray(data) ? data : data.items || [];
    // The server orders by score when it has one; older servers order by rating.
    const byScore = entities.every((e) => typeof e.score === "number");
    if (byScore && !entities.every((e) => typeof e.rank === "number")) entities.sort((a, b) => b.score - a.score);
    board = ranked(entities);
    clearError(errorBox);
    render();
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    showError(errorBox, error);
  }
}

search.addEventListener("input", () => {
  page = 0;
  render();
});
prev.addEventListener("click", () => {
  page -= 1;
  render();
});
next.addEventListener("click", () => {
  page += 1;
  render();
});
document.querySelector("[data-refresh]").addEventListener("click", refresh);
setInterval(() => {
  if (live.checked && document.visibilityState === "visible") refresh();
}, REFRESH_MS);

setupPage()
  .then(refresh)
  .catch((error) => showError(errorBox, error));
