// Registering: a racer or spectator account, then a web session, then the landing page
// (which sends racers and spectators to the spectator app).

import { ApiError, api, setCsrfToken } from "./api.js";
import { $, onSubmit } from "./ui.js";

const form = $("register-form");

onSubmit(form, async () => {
  const fields = form.elements;
  const username = fields.username.value.trim();
  const password = fields.password.value;
  if (password !== fields.confirm_password.value) {
    throw new ApiError(400, "invalid", "The two passwords differ.", {
      confirm_password: "must be the same as the password",
    });
  }
  const body = { username, password, role: fields.role.value };
  const email = fields.email.value.trim();
  if (email) body.email = email;
  await api("/api/auth/register", { method: "POST", json: body, login: false });
  const answer = await api("/api/auth/login", {
    method: "POST",
    json: { username, password, session: true },
    login: false,
  });
  setCsrfToken(answer.csrf_token);
  location.assign(form.dataset.next || "/");
});
