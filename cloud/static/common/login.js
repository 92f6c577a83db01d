// The login form. A web session (HttpOnly cookie) is opened with `"session": true`; then
// the browser goes where it was going (`next`). An account with an admin's temporary
// password must choose its own first: the second form does that (complete-reset).

import { ApiError, api, setCsrfToken } from "./api.js";
import { $, onSubmit } from "./ui.js";

const login = $("login-form");
const reset = $("reset-form");
const next = login.dataset.next || "/";
let temporary = null; // {username, temporary_password} while choosing a new password

function signedIn(answer) {
  setCsrfToken(answer.csrf_token);
  location.assign(next);
}

onSubmit(login, async () => {
  const username = login.elements.username.value.trim();
  const password = login.elements.password.value;
  try {
    const answer = await api("/api/auth/login", {
      method: "POST",
      json: { username, password, session: true },
      login: false,
    });
    signedIn(answer);
  } catch (error) {
    if (error.code !== "password-change-required") throw error;
    temporary = { username, temporary_password: password };
    login.hidden = true;
    reset.hidden = false;
    $("reset-user").textContent = username;
    reset.elements.new_password.focus();
  }
});

onSubmit(reset, async () => {
  const chosen = reset.elements.new_password.value;
  if (chosen !== reset.elements.confirm_password.value) {
    throw new ApiError(400, "invalid", "The two passwords differ.", {
      confirm_password: "must be the same as the new password",
    });
  }
  const answer = await api("/api/auth/complete-reset", {
    method: "POST",
    json: { ...temporary, new_password: chosen, session: true },
    login: false,
  });
  signedIn(answer);
});

$("reset-cancel").addEventListener("click", () => {
  temporary = null;
  reset.reset();
  reset.hidden = true;
  login.hidden = false;
  login.elements.password.value = "";
  login.elements.password.focus();
});
