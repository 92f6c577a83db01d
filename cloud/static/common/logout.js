// The log-out page: one button that ends the session.

import { logOut } from "./nav.js";
import { $, onSubmit } from "./ui.js";

const form = $("logout-form");
if (form) {
  onSubmit(form, async () => {
    try {
      await logOut();
    } catch (error) {
      if (error.status !== 401) throw error;
    }
    location.assign("/login?logged_out=1");
  });
}
