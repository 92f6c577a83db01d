// What every page of one race shares: which race, the heading (name and state), and
// moving the race along its state machine with a confirmation.

import { api } from "../common/api.js";
import { $, STATE_LABEL, announce, confirmDialog } from "../common/ui.js";

const head = $("race");
export const raceId = Number(head.dataset.raceId);
/** The state machine, from the server: {state: [states it may go to]}. */
export const transitions = JSON.parse(head.dataset.transitions);
export const isAdmin = document.body.dataset.role === "admin";

/** The race with its course; the heading follows it. */
export async function loadRace() {
  const race = await api(`/api/races/${raceId}`);
  showHead(race);
  return race;
}

export function showHead(race) {
  $("race-name").textContent = race.name;
  const badge = $("race-state");
  badge.className = `badge state-${race.state}`;
  badge.textContent = STATE_LABEL[race.state] || race.state;
  head.dataset.state = race.state;
  document.title = `${race.name} · Gruppetto`;
}

/** What a move from `from` to `to` is called and what the confirmation says. */
export function describeMove(from, to) {
  switch (to) {
    case "live":
      return from === "scheduled"
        ? {
            label: "Start the race",
            title: "Start the race now?",
            message: [
              "The race goes live: relays score it and spectators follow it.",
              "Its details, course, checkpoints and start list cannot be changed any more.",
            ],
          }
        : {
            label: "Resume the race",
            title: "Resume the race?",
            message: ["The race is live again."],
          };
    case "neutralised":
      return {
        label: "Neutralise",
        title: "Neutralise the race?",
        message: ["The race is shown as neutralised until you resume it."],
      };
    case "finished":
      return {
        label: "Finish the race",
        title: "Finish the race?",
        message: [
          "A finished race cannot be resumed.",
          "Its history is sealed for results and statistics; publish the results next.",
        ],
        danger: true,
      };
    case "published":
      return {
        label: "Publish the results",
        title: "Publish the results?",
        message: ["The results become final: a published race never changes state again."],
        danger: true,
      };
    default:
      return { label: to, title: `Move the race to ${to}?`, message: [] };
  }
}

/** Ask, then move the race to `to`; the updated race, or null when not confirmed. */
export async function changeState(race, to) {
  const move = describeMove(race.state, to);
  const confirmed = await confirmDialog({
    title: move.title,
    message: [`${race.name}: ${STATE_LABEL[race.state]} → ${STATE_LABEL[to]}.`, ...move.message],
    confirm: move.label,
    danger: Boolean(move.danger),
  });
  if (!confirmed) return null;
  const updated = await api(`/api/races/${raceId}/state`, { method: "POST", json: { state: to } });
  showHead(updated);
  announce(`The race is now ${STATE_LABEL[updated.state].toLowerCase()}.`);
  return updated;
}
