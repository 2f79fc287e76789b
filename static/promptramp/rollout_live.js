/* Keeps a rollout's live page current, with no library: every few seconds, while the rollout is
   active, it fetches the page's live part from the service and puts it in place. When the state
   changed meanwhile (the controller advanced, paused or rolled it back, or someone else acted),
   it reloads the page so that the action buttons match, unless a reason is being typed: then
   it says so instead. */
"use strict";

(function () {
  const live = document.getElementById("pr-live");
  if (!live || live.dataset.active !== "true") {
    return;
  }
  const every = Number(live.dataset.refreshSeconds || 5) * 1000;
  const status = document.getElementById("pr-refresh-status");
  const shownState = live.dataset.state;

  function say(text) {
    status.textContent = text;
    status.hidden = !text;
  }

  function typingReason() {
    return Array.from(document.querySelectorAll("#pr-actions input[name=reason]")).some(
      (input) => input.value.trim() !== ""
    );
  }

  async function fetchLivePart() {
    try {
      const response = await fetch(live.dataset.refreshUrl, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "text/html" },
      });
      if (!response.ok) {
        return null;
      }
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      return page.getElementById("pr-live");
    } catch (error) {
      return null;
    }
  }

  async function refresh() {
    const next = await fetchLivePart();
    if (!next) {
      say("Could not refresh this page (is the service up, and are you still logged in?). Retrying…");
      window.setTimeout(refresh, every);
      return;
    }
    live.replaceChildren(...Array.from(next.childNodes, (node) => document.importNode(node, true)));
    live.dataset.state = next.dataset.state;
    live.dataset.active = next.dataset.active;
    if (next.dataset.state !== shownState) {
      if (!typingReason()) {
        window.location.reload();
        return;
      }
      say(`The rollout is now ${next.dataset.state.replace("_", " ")}: reload the page to see what you can do.`);
    } else {
      say("");
    }
    if (next.dataset.active === "true") {
      window.setTimeout(refresh, every);
    }
  }

  window.setTimeout(refresh, every);
})();
