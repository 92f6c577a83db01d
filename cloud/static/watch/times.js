// Times the server wrote in UTC (<time datetime="...">), shown in the reader's own zone.

import { formatDateTime } from "/static/common/ui.js";

export function localizeTimes(root = document) {
  for (const node of root.querySelectorAll("time[datetime]")) {
    const ms = Date.parse(node.dateTime);
    if (!Number.isNaN(ms)) node.textContent = formatDateTime(ms);
  }
}
