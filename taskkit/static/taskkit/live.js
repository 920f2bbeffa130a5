/* Live updates that keep the page usable: the parts of a page marked data-taskkit-part are
 * fetched again every few seconds and updated in place, so ticked rows, scroll position and
 * open forms (which live outside the parts) stay as the operator left them. In a part marked
 * data-taskkit-rows, rows are matched by their run, cell by cell; runs that appeared since
 * are announced, not inserted under the operator's cursor. Other parts are replaced whole.
 * The page says how often in data-taskkit-live, and stops once the fresh page no longer
 * asks for it (nothing left running). A button pauses and resumes the updates. */
(function () {
  "use strict";
  const root = document.querySelector("[data-taskkit-live]");
  if (!root) return;
  const every = Math.max(1, Number(root.dataset.taskkitLive) || 3) * 1000;
  const KEY = "taskkit-live-paused";
  let paused = sessionStorage.getItem(KEY) === "1";

  const toggle = document.createElement("button");
  toggle.type = "button";
  toggle.id = "taskkit-live-toggle";
  toggle.className = "button";
  const notice = document.createElement("p");
  notice.id = "taskkit-live-notice";
  notice.className = "help";
  notice.setAttribute("aria-live", "polite");
  const show = () => {
    toggle.textContent = paused ? "Resume live updates" : "Pause live updates";
    toggle.setAttribute("aria-pressed", String(paused));
  };
  toggle.addEventListener("click", () => {
    paused = !paused;
    sessionStorage.setItem(KEY, paused ? "1" : "0");
    show();
  });
  show();
  root.prepend(toggle, notice);

  const keyOf = (row) => {
    const box = row.querySelector("input.action-select");
    if (box) return box.value;
    const link = row.querySelector("th a, td a");
    return link ? link.getAttribute("href") : null;
  };
  const holdsInput = (node) => node.querySelector("input, select, textarea, button") !== null;

  function updateRows(part, fresh) {
    const rows = new Map();
    for (const row of part.querySelectorAll("tbody tr")) rows.set(keyOf(row), row);
    let added = 0;
    for (const row of fresh.querySelectorAll("tbody tr")) {
      const current = rows.get(keyOf(row));
      if (!current) { added += 1; continue; }
      current.className = row.className;
      [...row.cells].forEach((cell, i) => {
        const here = current.cells[i];
        if (here && !holdsInput(here) && here.innerHTML !== cell.innerHTML) {
          here.innerHTML = cell.innerHTML;
        }
      });
    }
    return added;
  }

  function update(fresh) {
    let added = 0;
    for (const part of document.querySelectorAll("[data-taskkit-part]")) {
      const next = fresh.querySelector(`[data-taskkit-part="${part.dataset.taskkitPart}"]`);
      if (!next) continue;
      if (part.dataset.taskkitRows !== undefined) {
        added += updateRows(part, next);
      } else if (!part.contains(document.activeElement) || !holdsInput(part)) {
        part.innerHTML = next.innerHTML;
      }
    }
    notice.textContent = added ? `${added} new run(s) since this page loaded: reload to see them.` : "";
    return fresh.querySelector("[data-taskkit-live]") !== null;
  }

  async function tick() {
    let more = true;
    if (!paused && !document.hidden) {
      try {
        const response = await fetch(window.location.href, { credentials: "same-origin" });
        if (response.ok) {
          const text = await response.text();
          more = update(new DOMParser().parseFromString(text, "text/html"));
        }
      } catch (error) {
        /* offline for a moment: try again at the next tick */
      }
    }
    if (more) window.setTimeout(tick, every);
    else { toggle.hidden = true; root.removeAttribute("data-taskkit-live"); }
  }
  window.setTimeout(tick, every);
})();
