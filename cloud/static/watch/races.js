// The race list: times in local time, and the lists refreshed every 30 s while the page
// is visible (races go live and finish). The server renders the lists; this fetches the
// page again and swaps them in when they changed, keeping the focus on the same race.

import { loginUrl } from "/static/common/api.js";
import { $, every, formatTime } from "/static/common/ui.js";
import { localizeTimes } from "./times.js";

const REFRESH_MS = 30000;
const lists = $("race-lists");
let shown = lists.innerHTML;
localizeTimes(lists);

async function refresh() {
  const response = await fetch("/watch", { cache: "no-store", credentials: "same-origin" });
  if (response.redirected && new URL(response.url).pathname === "/login") {
    location.assign(loginUrl());
    return;
  }
  if (!response.ok) throw new Error(`the list answered ${response.status}`);
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.getElementById("race-lists");
  if (!fresh) return;
  $("lists-note").textContent = `Updated at ${formatTime(Date.now())}`;
  if (fresh.innerHTML === shown) return;
  shown = fresh.innerHTML;
  const focusedRace = document.activeElement?.closest?.("[data-race-id]")?.dataset.raceId;
  lists.replaceChildren(...fresh.childNodes);
  localizeTimes(lists);
  if (focusedRace) lists.querySelector(`[data-race-id="${focusedRace}"]`)?.focus();
}

let first = true;
every(REFRESH_MS, async () => {
  if (first) {
    first = false; // the server just rendered it
    return;
  }
  try {
    await refresh();
  } catch (error) {
    $("lists-note").textContent = `Could not refresh the list (${error.message}); trying again.`;
  }
});
