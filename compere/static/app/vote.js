// The voting page: one pair at a time, chosen by the service; keyboard or click.
import { ApiError, api, clearError, el, setupPage, showError } from "./api.js";

const COUNT_KEY = "compere.votesThisSession";
const pairSection = document.querySelector("[data-pair]");
const actions = document.querySelector("[data-actions]");
const empty = document.querySelector("[data-empty]");
const errorBox = document.querySelector("[data-error]");
const status = document.querySelector("[data-status]");
const countLabel = document.querySelector("[data-count]");
const sides = {
  left: pairSection.querySelector("[data-side=left]"),
  right: pairSection.querySelector("[data-side=right]"),
};

let current = null; // the pair on screen: {entity1, entity2, pair_token?}
let upcoming = null; // a promise of the next pair, fetched in advance
let swapping = false;
let shown = 0; // pairs rendered so far (data-pair-serial), so tests and tools can tell a new pair
let votes = Number(sessionStorage.getItem(COUNT_KEY) || 0);
// A pair's token expires (PAIR_TOKEN_TTL on the server); a preloaded pair older than
// most of that lifetime is fetched again rather than voted on with a stale token.
let freshForMs = 30 * 60 * 1000;
countLabel.textContent = String(votes);

async function fetchPair() {
  const { data } = await api("GET", "/mab/next_comparison");
  data.fetchedAt = Date.now();
  for (const entity of [data.entity1, data.entity2]) {
    for (const url of entity.image_urls || []) new Image().src = url; // warm the cache
  }
  return data;
}

function prefetch() {
  upcoming = fetchPair();
  upcoming.catch(() => {}); // reported when it is used
}

function fill(button, entity) {
  button.dataset.entityId = String(entity.id);
  button.querySelector("[data-field=name]").textContent = entity.name;
  button.querySelector("[data-field=description]").textContent = entity.description || "";
  const images = button.querySelector("[data-field=images]");
  images.replaceChildren(
    ...(entity.image_urls || []).slice(0, 3).map((url, i) =>
      el("img", { src: url, alt: `${entity.name}, image ${i + 1}`, loading: "lazy", decoding: "async" }),
    ),
  );
  button.setAttribute("aria-label", `Prefer ${entity.name}`);
}

function render(pair) {
  fill(sides.left, pair.entity1);
  fill(sides.right, pair.entity2);
  shown += 1;
  pairSection.dataset.pairSerial = String(shown);
  pairSection.hidden = false;
  actions.hidden = false;
  empty.hidden = true;
}

async function showNext() {
  const pending = upcoming || fetchPair();
  upcoming = null;
  try {
    current = await pending;
    if (Date.now() - current.fetchedAt > freshForMs) current = await fetchPair();
  } catch (error) {
    current = null;
    if (error instanceof ApiError && error.status === 400) {
      pairSection.hidden = true;
      actions.hidden = true;
      empty.hidden = false;
      return;
    }
    throw error;
  }
  render(current);
}

async function record(pair, choice) {
  const winner = { left: pair.entity1.id, right: pair.entity2.id, tie: null }[choice];
  const body = { entity1_id: pair.entity1.id, entity2_id: pair.entity2.id, selected_entity_id: winner };
  body.pair_token = pair.pair_token;
  try {
    await api("POST", "/comparisons/", body);
  } catch (error) {
    throw new Error(`Your vote on ${pair.entity1.name} and ${pair.entity2.name} was not recorded: ${error.message}`);
  }
  votes += 1;
  sessionStorage.setItem(COUNT_KEY, String(votes));
  countLabel.textContent = String(votes);
  const what = choice === "tie" ? "a tie" : `${(choice === "left" ? pair.entity1 : pair.entity2).name} preferred`;
  status.textContent = `Vote recorded: ${what}.`;
}

// choice: "left", "right", "tie" or "skip".
async function choose(choice) {
  if (swapping || !current) return;
  swapping = true;
  const pair = current;
  clearError(errorBox);
  if (choice !== "skip" && Date.now() - pair.fetchedAt > freshForMs) {
    // Left on screen too long: its token would be refused. Nothing is recorded.
    upcoming = null;
    try {
      await showNext();
      status.textContent = "That pair had expired, so no vote was recorded. Here is a fresh pair.";
      prefetch();
    } catch (error) {
      showError(errorBox, error);
    } finally {
      swapping = false;
    }
    return;
  }
  try {
    // Show the preloaded pair at once; the vote is stored meanwhile, and the pair
    // after next is fetched only once it is, so the selector sees this vote.
    const stored = choice === "skip" ? Promise.resolve() : record(pair, choice);
    await showNext();
    swapping = false;
    await stored;
    if (!upcoming) prefetch();
  } catch (error) {
    showError(errorBox, error);
    if (!upcoming) prefetch();
  } finally {
    swapping = false;
  }
}

sides.left.addEventListener("click", () => choose("left"));
sides.right.addEventListener("click", () => choose("right"));
actions.querySelector("[data-action=tie]").addEventListener("click", () => choose("tie"));
actions.querySelector("[data-action=skip]").addEventListener("click", () => choose("skip"));

document.addEventListener("keydown", (event) => {
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  if (event.target instanceof HTMLElement && event.target.closest("input, textarea, select")) return;
  const choice = { ArrowLeft: "left", ArrowRight: "right", ArrowDown: "tie", s: "skip", S: "skip" }[event.key];
  if (!choice) return;
  event.preventDefault();
  choose(choice);
});

async function start() {
  try {
    const { config } = await setupPage();
    if (config.pair_token_ttl) freshForMs = config.pair_token_ttl * 800;
    await showNext();
    prefetch();
  } catch (error) {
    showError(errorBox, error);
  }
}

start();
