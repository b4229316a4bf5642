// The voting page: one pair at a time, chosen by the service; keyboard or click.
//
// A key press or click is a vote on the pair on screen at that moment, never on a pair
// the annotator has not seen. The next pair is fetched in advance and shown at once;
// while the page still waits for it (a fast annotator, a slow network) the pair is
// marked busy (aria-busy, buttons aria-disabled, a visible "Loading" line) and presses
// are ignored and counted on screen, not silently dropped. Votes are stored one after
// another in the order they were cast.
import { ApiError, api, boardPath, clearError, el, setupPage, showError } from "./api.js";

const COUNT_KEY = "compere.votesThisSession";
const pairSection = document.querySelector("[data-pair]");
const actions = document.querySelector("[data-actions]");
const empty = document.querySelector("[data-empty]");
const errorBox = document.querySelector("[data-error]");
const status = document.querySelector("[data-status]");
const waitingNote = document.querySelector("[data-waiting]");
const countLabel = document.querySelector("[data-count]");
const cards = {
  left: pairSection.querySelector("[data-card=left]"),
  right: pairSection.querySelector("[data-card=right]"),
};
const controls = [...pairSection.querySelectorAll("[data-side]"), ...actions.querySelectorAll("button")];

let current = null; // the pair on screen and not yet voted on: {entity1, entity2, pair_token, fetchedAt}
let upcoming = null; // a promise of the next pair, fetched in advance
let waiting = true; // no votable pair on screen yet
let ignored = 0; // presses made while waiting, shown on screen
let stored = Promise.resolve(); // the chain of votes, stored in the order they were cast
let shown = 0; // pairs rendered so far (data-pair-serial), so tests and tools can tell a new pair
let votes = Number(sessionStorage.getItem(COUNT_KEY) || 0);
// A pair's token expires (PAIR_TOKEN_TTL on the server); a preloaded pair older than
// most of that lifetime is fetched again rather than voted on with a stale token.
let freshForMs = 30 * 60 * 1000;
countLabel.textContent = String(votes);

async function fetchPair() {
  const { data } = await api("GET", boardPath("/mab/next_comparison"));
  data.fetchedAt = Date.now();
  for (const entity of [data.entity1, data.entity2]) {
    for (const url of (entity.image_urls || []).slice(0, 3)) new Image().src = url; // warm the cache
  }
  return data;
}

// The pair after the one on screen, asked for once every vote cast so far is stored,
// so the selector has seen them.
// data-next-pair says whether it has arrived ("ready": the next choice shows it at once).
function prefetch() {
  const next = stored.then(fetchPair);
  upcoming = next;
  pairSection.dataset.nextPair = "loading";
  next.then(
    () => {
      if (upcoming === next) pairSection.dataset.nextPair = "ready";
    },
    () => {}, // reported when it is used
  );
}

function setWaiting(on) {
  waiting = on;
  pairSection.setAttribute("aria-busy", String(on));
  // aria-disabled rather than disabled: a focused button keeps its focus, so Tab and
  // Enter users stay where they were when the next pair arrives.
  for (const button of controls) button.setAttribute("aria-disabled", String(on));
  showWaitingNote();
  if (!on) ignored = 0;
}

// While waiting: what the page is doing and how many presses it ignored. After: the
// count stays on screen until the next vote, since the wait may have been too short to see.
function showWaitingNote() {
  const presses = ignored === 1 ? "1 key press or click" : `${ignored} key presses or clicks`;
  const nothing = `nothing was recorded for ${ignored === 1 ? "it" : "them"}`;
  if (waiting) {
    const loading = shown ? "Loading the next pair…" : "Loading a pair…";
    waitingNote.textContent = ignored ? `${loading} ${presses} ignored so far; ${nothing}.` : loading;
  } else {
    const were = ignored === 1 ? "was" : "were";
    waitingNote.textContent = ignored ? `${presses} made while the pair was loading ${were} ignored; ${nothing}.` : "";
  }
}

function imageFor(entity, url, index, count) {
  const alt = count > 1 ? `${entity.name}, image ${index + 1} of ${count}` : entity.name;
  // width and height give the frame its shape before the image arrives (no jump).
  const img = el("img", { src: url, alt, loading: "lazy", decoding: "async", width: 320, height: 240 });
  img.addEventListener("error", () => {
    img.replaceWith(el("span", { class: "image-missing", text: `${alt}: the image could not be loaded` }));
  });
  return img;
}

function fill(side, entity) {
  const card = cards[side];
  card.querySelector("[data-side]").dataset.entityId = String(entity.id);
  card.querySelector("[data-field=name]").textContent = entity.name;
  const urls = (entity.image_urls || []).slice(0, 3);
  card
    .querySelector("[data-field=images]")
    .replaceChildren(...urls.map((url, i) => imageFor(entity, url, i, urls.length)));
  const description = card.querySelector("[data-field=description]");
  description.textContent = entity.description || "";
  description.classList.add("clamped");
  const more = card.querySelector("[data-more]");
  more.setAttribute("aria-expanded", "false");
  more.textContent = "Show the whole description";
  more.hidden = true;
}

// A description longer than the clamp gets a button to show all of it (an opened one
// keeps its button, to close it again).
function offerMore() {
  for (const card of Object.values(cards)) {
    const description = card.querySelector("[data-field=description]");
    const more = card.querySelector("[data-more]");
    if (more.getAttribute("aria-expanded") === "true") continue;
    more.hidden = description.scrollHeight <= description.clientHeight + 1;
  }
}

function render(pair) {
  fill("left", pair.entity1);
  fill("right", pair.entity2);
  shown += 1;
  pairSection.dataset.pairSerial = String(shown);
  pairSection.hidden = false;
  actions.hidden = false;
  empty.hidden = true;
  offerMore();
}

// Shows the next pair: the one fetched in advance when it is still fresh.
async function showNext() {
  current = null;
  setWaiting(true);
  const pending = upcoming || fetchPair();
  upcoming = null;
  pairSection.dataset.nextPair = "none";
  let pair;
  try {
    pair = await pending;
    if (Date.now() - pair.fetchedAt > freshForMs) pair = await fetchPair();
  } catch (error) {
    setWaiting(false);
    if (error instanceof ApiError && error.status === 400) {
      pairSection.hidden = true;
      actions.hidden = true;
      empty.hidden = false;
      return;
    }
    throw error;
  }
  current = pair;
  render(pair);
  setWaiting(false);
  prefetch();
}

async function record(pair, choice) {
  const winner = { left: pair.entity1.id, right: pair.entity2.id, tie: null }[choice];
  const body = { entity1_id: pair.entity1.id, entity2_id: pair.entity2.id, selected_entity_id: winner };
  body.pair_token = pair.pair_token;
  try {
    await api("POST", boardPath("/comparisons/"), body);
  } catch (error) {
    showError(errorBox, `Your vote on ${pair.entity1.name} and ${pair.entity2.name} was not recorded: ${error.message}`);
    return;
  }
  votes += 1;
  sessionStorage.setItem(COUNT_KEY, String(votes));
  countLabel.textContent = String(votes);
  const what = choice === "tie" ? "a tie" : `${(choice === "left" ? pair.entity1 : pair.entity2).name} preferred`;
  status.textContent = `Vote recorded: ${what}.`;
}

// choice: "left", "right", "tie" or "skip".
async function choose(choice) {
  if (waiting) {
    ignored += 1;
    showWaitingNote();
    return;
  }
  if (!current) {
    // Nothing on screen (the last fetch failed, or too few entities): ask again.
    clearError(errorBox);
    showNext().catch((error) => showError(errorBox, error));
    return;
  }
  const pair = current;
  clearError(errorBox);
  let expired = false;
  if (choice !== "skip") {
    if (Date.now() - pair.fetchedAt > freshForMs) {
      // Left on screen too long: its token would be refused. Nothing is recorded.
      expired = true;
      upcoming = null;
    } else {
      // Never rejects: a refused vote is reported by name and the chain goes on.
      stored = stored.then(() => record(pair, choice));
    }
  }
  try {
    await showNext();
    if (expired) status.textContent = "That pair had expired, so no vote was recorded. Here is a fresh pair.";
  } catch (error) {
    showError(errorBox, error);
  }
}

for (const side of ["left", "right"]) {
  const card = cards[side];
  card.querySelector("[data-side]").addEventListener("click", () => choose(side));
  // A click on an image is a vote too: the picture is what people compare.
  card.querySelector("[data-field=images]").addEventListener("click", () => choose(side));
  const more = card.querySelector("[data-more]");
  more.addEventListener("click", () => {
    const open = more.getAttribute("aria-expanded") !== "true";
    card.querySelector("[data-field=description]").classList.toggle("clamped", !open);
    more.setAttribute("aria-expanded", String(open));
    more.textContent = open ? "Show less" : "Show the whole description";
  });
}
actions.querySelector("[data-action=tie]").addEventListener("click", () => choose("tie"));
actions.querySelector("[data-action=skip]").addEventListener("click", () => choose("skip"));
window.addEventListener("resize", offerMore);

document.addEventListener("keydown", (event) => {
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  if (event.target instanceof HTMLElement && event.target.closest("input, textarea, select")) return;
  const choice = { ArrowLeft: "left", ArrowRight: "right", ArrowDown: "tie", s: "skip", S: "skip" }[event.key];
  if (!choice) return;
  event.preventDefault();
  // A key held down repeats: that is not a decision about each pair it would hit.
  if (event.repeat) return;
  choose(choice);
});

async function start() {
  try {
    const { config } = await setupPage();
    if (config.pair_token_ttl) freshForMs = config.pair_token_ttl * 800;
    await showNext();
  } catch (error) {
    showError(errorBox, error);
  }
}

start();
