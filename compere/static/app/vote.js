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
countLabel.textContent = String(votes);

async function fetchPair() {
  const { data } = await api("GET", "/mab/next_comparison");
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
  if (pair.pair_token) body.pair_token = pair.pair_token;
  await api("POST", "/comparisons/", body);
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
    await setupPage();
    await showNext();
    prefetch();
  } catch (error) {
    showError(errorBox, error);
  }
}

start();
