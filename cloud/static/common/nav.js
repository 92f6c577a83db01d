// On every page: the "Log out" button in the header ends the session (a POST with the
// CSRF token) and goes to the login page.

import { api } from "./api.js";
import { announce, sentence } from "./ui.js";

export async function logOut() {
  await api("/api/auth/logout", { method: "POST", json: {}, login: false });
}

for (const button of document.querySelectorAll("[data-logout]")) {
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await logOut();
    } catch (error) {
      if (error.status !== 401) {
        button.disabled = false;
        announce(`Could not log out: ${sentence(error.message)}`);
        return;
      }
    }
    location.assign("/login?logged_out=1");
  });
}
