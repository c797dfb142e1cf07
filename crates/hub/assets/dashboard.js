// opsagent hub dashboard: live updates and a file loader. No framework, no build step.
//
// A live page has `<main data-live="/events?...">`. Each server-sent `update` notice schedules a
// re-fetch of the page itself (at most one in flight, coalesced), whose <main> replaces ours:
// the server renders everything, this script only swaps it in. Open <details> stay open.
"use strict";

(function () {
  const main = document.querySelector("main[data-live]");
  const indicator = document.getElementById("live-indicator");

  function setIndicator(state) {
    if (!indicator) return;
    indicator.dataset.state = state;
    indicator.lastChild.textContent = state === "live" ? " live" : " reconnecting…";
  }

  if (main && window.EventSource) {
    let timer = null;
    let inFlight = false;
    let again = false;
    // A grid (`ol[data-patch]`) fetches only the cards of the instances that changed; any other
    // notice, or too many changes, re-fetches the whole page.
    const changed = new Set();
    let whole = true;

    const openKeys = () =>
      new Set(Array.from(main.querySelectorAll("details[open][data-key]"), (d) => d.dataset.key));
    const adopt = (node) => document.adoptNode(node);
    // Form fields marked `data-keep` (with an id) keep what the operator chose across refreshes.
    const keptFields = () =>
      Array.from(main.querySelectorAll("[data-keep][id]"), (f) => [f.id, f.type === "checkbox" ? f.checked : f.value]);
    function restoreFields(fields) {
      for (const [id, value] of fields) {
        const field = document.getElementById(id);
        if (!field) continue;
        if (field.type === "checkbox") field.checked = value;
        else if (field.tagName !== "SELECT" || Array.from(field.options).some((o) => o.value === value)) field.value = value;
      }
    }

    async function refresh() {
      if (inFlight) {
        again = true;
        return;
      }
      inFlight = true;
      const started = performance.now();
      let ids = null;
      let url = window.location.href;
      if (!whole && changed.size > 0 && changed.size <= 50) {
        ids = Array.from(changed);
        url = window.location.pathname + "?only=" + ids.map(encodeURIComponent).join(",");
      }
      changed.clear();
      whole = false;
      try {
        const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
        if (response.redirected || response.status === 401) {
          window.location.reload(); // the session ended: show the sign-in form
          return;
        }
        if (!response.ok) return;
        const doc = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = doc.querySelector("main[data-live]");
        if (!fresh) return;
        if (ids) {
          const summary = fresh.querySelector("section.summary");
          const old = main.querySelector("section.summary");
          if (summary && old) old.replaceWith(adopt(summary));
          for (const card of Array.from(fresh.querySelectorAll("li[data-instance]"))) {
            const mine = main.querySelector(`li[data-instance="${CSS.escape(card.dataset.instance)}"]`);
            if (mine) mine.replaceWith(adopt(card));
          }
        } else {
          const keep = openKeys();
          const fields = keptFields();
          // Copy the list first: adopting a node removes it from the live `childNodes`.
          const nodes = Array.from(fresh.childNodes);
          main.replaceChildren(...nodes.map(adopt));
          for (const d of main.querySelectorAll("details[data-key]")) {
            if (keep.has(d.dataset.key)) d.open = true;
          }
          restoreFields(fields);
        }
        main.dataset.refreshed = String(Date.now());
        main.dataset.refreshMs = String(Math.round(performance.now() - started));
      } catch (e) {
        whole = true; // retried with the next notice
      } finally {
        inFlight = false;
        if (again) {
          again = false;
          schedule();
        }
      }
    }

    function schedule() {
      if (timer !== null) return;
      timer = setTimeout(() => {
        timer = null;
        refresh();
      }, 200);
    }

    const source = new EventSource(main.dataset.live);
    source.addEventListener("update", (event) => {
      let notice = {};
      try {
        notice = JSON.parse(event.data);
      } catch (e) {
        // not ours: refresh everything
      }
      if (notice.instance && main.querySelector("ol[data-patch]")) {
        changed.add(notice.instance);
      } else {
        whole = true;
      }
      schedule();
    });
    source.addEventListener("open", () => {
      setIndicator("live");
      whole = true; // catch up on what happened while disconnected
      schedule();
    });
    source.addEventListener("error", () => setIndicator("reconnecting"));
  }

  // The recipe form: a chosen file fills the textarea (nothing is uploaded until "push").
  const file = document.getElementById("recipe-file");
  const text = document.getElementById("recipe");
  if (file && text) {
    file.addEventListener("change", async () => {
      if (file.files.length > 0) text.value = await file.files[0].text();
    });
  }
})();
