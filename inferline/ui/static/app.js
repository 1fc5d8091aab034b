// The dashboard's only script of its own (no inline script: the Content-Security-Policy forbids
// it). Shows every <time datetime="…Z"> in the browser's time zone, keeping UTC in the title.
"use strict";

function localiseTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    if (el.dataset.localised) continue;
    const at = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(at.getTime())) continue;
    el.title = el.getAttribute("datetime") + " (UTC)";
    el.textContent = at.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
    });
    el.dataset.localised = "1";
  }
}

document.addEventListener("DOMContentLoaded", () => localiseTimes(document));
document.addEventListener("htmx:afterSettle", (event) => localiseTimes(event.target));
