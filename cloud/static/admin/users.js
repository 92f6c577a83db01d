// Accounts and roles (admins only): invite someone (with a one-time password they replace
// at their first login, or a password set now), change a role, disable or enable an
// account, end a lock-out, reset a password. The API refuses to lose the last admin.

import { ApiError, api } from "../common/api.js";
import {
  $,
  announce,
  confirmDialog,
  el,
  formatDateTime,
  onSubmit,
  secretDialog,
  sentence,
  showLoadError,
} from "../common/ui.js";

const ROLES = ["admin", "official", "racer", "spectator"];
const me = Number(document.body.dataset.userId);
const filter = $("role-filter");
const note = $("users-note");

async function load() {
  const role = filter.value;
  try {
    render(await api(`/api/users${role ? `?role=${role}` : ""}`));
  } catch (error) {
    showLoadError(note, "the accounts", error);
  }
}

function render(users) {
  note.classList.remove("error");
  note.textContent = users.length
    ? `${users.length} account${users.length === 1 ? "" : "s"}.`
    : "No accounts with that role.";
  $("users-table").hidden = !users.length;
  $("users-rows").replaceChildren(...users.map(row));
}

function locked(user) {
  return user.locked_until_ms !== null && user.locked_until_ms > Date.now();
}

function stateOf(user) {
  const badges = [];
  if (user.disabled) badges.push(el("span", { class: "badge bad", text: "disabled" }));
  if (locked(user)) {
    const until = formatDateTime(user.locked_until_ms);
    badges.push(el("span", { class: "badge bad", text: `locked until ${until}` }));
  }
  if (user.password_reset_expires_ms !== null) {
    const until = formatDateTime(user.password_reset_expires_ms);
    badges.push(el("span", { class: "badge quiet", text: `one-time password until ${until}` }));
  }
  if (!badges.length) badges.push(el("span", { class: "badge good", text: "active" }));
  return badges;
}

function row(user) {
  const role = el(
    "select",
    { "aria-label": `Role of ${user.username}`, dataset: { was: user.role } },
    ...ROLES.map((r) => el("option", { value: r, text: r, selected: r === user.role })),
  );
  role.addEventListener("change", () => changeRole(user, role));
  const actions = [
    el("button", {
      type: "button",
      class: "small",
      text: user.disabled ? "Enable" : "Disable",
      on: { click: () => toggleDisabled(user) },
      "aria-label": `${user.disabled ? "Enable" : "Disable"} ${user.username}`,
    }),
  ];
  if (locked(user) || user.failed_logins > 0) {
    actions.push(
      el("button", {
        type: "button",
        class: "small",
        text: "Unlock",
        on: { click: () => unlock(user) },
        "aria-label": `Unlock ${user.username}`,
      }),
    );
  }
  actions.push(
    el("button", {
      type: "button",
      class: "small",
      text: "Reset password",
      on: { click: () => resetPassword(user) },
      "aria-label": `Reset the password of ${user.username}`,
    }),
  );
  const name = el("th", { scope: "row" }, user.username);
  if (user.id === me) name.append(el("span", { class: "note", text: " (you)" }));
  if (user.email) name.append(el("div", { class: "note", text: user.email }));
  return el(
    "tr",
    { class: user.disabled ? "disabled" : null, dataset: { userId: user.id } },
    name,
    el("td", {}, role),
    el("td", {}, ...stateOf(user)),
    el("td", { class: "num", text: String(user.failed_logins) }),
    el("td", { text: formatDateTime(user.created_ms) }),
    el("td", { class: "actions" }, ...actions),
  );
}

async function act(what, work) {
  try {
    await work();
    announce(what);
  } catch (error) {
    note.textContent = sentence(error.message);
    note.classList.add("error");
    note.focus?.();
    return;
  }
  await load();
}

async function changeRole(user, select) {
  const role = select.value;
  const confirmed = await confirmDialog({
    title: "Change the role?",
    message: [
      `${user.username}: ${user.role} → ${role}.`,
      "Their sessions keep working; what they may do changes at their next request" +
        " (relays see it within 15 minutes).",
    ],
    confirm: `Make them ${role}`,
  });
  if (!confirmed) {
    select.value = user.role;
    return;
  }
  await act(`${user.username} is now ${role}.`, () =>
    api(`/api/users/${user.id}`, { method: "PATCH", json: { role } }),
  );
}

async function toggleDisabled(user) {
  const disabling = !user.disabled;
  const confirmed = await confirmDialog({
    title: disabling ? `Disable ${user.username}?` : `Enable ${user.username}?`,
    message: disabling
      ? [
          "They can no longer log in; their sessions and refresh tokens end now.",
          "Access tokens already issued lapse within 15 minutes.",
        ]
      : ["They can log in again."],
    confirm: disabling ? "Disable" : "Enable",
    danger: disabling,
  });
  if (!confirmed) return;
  await act(`${user.username} is ${disabling ? "disabled" : "enabled"}.`, () =>
    api(`/api/users/${user.id}`, { method: "PATCH", json: { disabled: disabling } }),
  );
}

async function unlock(user) {
  await act(`${user.username} is unlocked.`, () =>
    api(`/api/users/${user.id}/unlock`, { method: "POST", json: {} }),
  );
}

async function resetPassword(user) {
  const confirmed = await confirmDialog({
    title: `Reset the password of ${user.username}?`,
    message: [
      "They get a one-time password that only lets them choose a new one.",
      "Their sessions end now, and any lock-out.",
    ],
    confirm: "Reset the password",
    danger: true,
  });
  if (!confirmed) return;
  let answer;
  try {
    answer = await api(`/api/users/${user.id}/password-reset`, { method: "POST", json: {} });
  } catch (error) {
    note.textContent = sentence(error.message);
    note.classList.add("error");
    return;
  }
  await showOneTime(user.username, answer);
  await load();
}

function showOneTime(username, answer) {
  return secretDialog({
    title: `One-time password for ${username}`,
    intro:
      `Give it to ${username} privately. They log in at ${location.origin}/login` +
      " with it and choose their own password.",
    secret: answer.temporary_password,
    notes: [`It works until ${formatDateTime(answer.expires_ms)}.`],
  });
}

function randomPassword() {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return btoa(String.fromCharCode(...bytes)).replace(
    /[+/=]/g,
    (c) => ({ "+": "-", "/": "_", "=": "" })[c],
  );
}

const form = $("create-user");
const passwordField = $("password-field");
const syncHow = () => {
  const setNow = form.elements.how.value === "set";
  passwordField.hidden = !setNow;
  form.elements.password.required = setNow;
};
for (const radio of form.elements.how) radio.addEventListener("change", syncHow);
syncHow();

onSubmit(form, async () => {
  const fields = form.elements;
  const oneTime = fields.how.value === "one-time";
  const body = {
    username: fields.username.value.trim(),
    role: fields.role.value,
    password: oneTime ? randomPassword() : fields.password.value,
  };
  const email = fields.email.value.trim();
  if (email) body.email = email;
  const user = await api("/api/users", { method: "POST", json: body });
  if (oneTime) {
    let answer;
    try {
      answer = await api(`/api/users/${user.id}/password-reset`, { method: "POST", json: {} });
    } catch (error) {
      await load();
      throw new ApiError(
        error.status,
        error.code,
        `The account ${user.username} exists, but its one-time password could not be made` +
          ` (${error.message}): use “Reset password” on its row.`,
      );
    }
    await showOneTime(user.username, answer);
  }
  form.reset();
  syncHow();
  announce(`The account ${user.username} is created.`);
  await load();
});

filter.addEventListener("change", load);
load();
