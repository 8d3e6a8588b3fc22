// gsscreen reader study: sign in, then for each photo: show it alone for a fixed time, hide it, ask for the call.
// Plain browser JavaScript, no dependencies. The server keeps all state (order, answers, timing); this page only
// shows what /api/next says is current, so a reload or a new browser resumes at the same photo.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const CARDS = ["loading", "signin", "ready", "answer", "done"];
  const state = {
    cfg: { seconds: 10, confidence: true },
    current: null, // {photo_id, index, total, answered}
    answer: null,
    confidence: null,
    phase: "loading", // loading | signin | ready | viewing | answer | done
    busy: false,
    objectUrl: null,
  };

  // ------------------------------------------------------------------ helpers

  function show(card) {
    for (const id of CARDS) $(id).hidden = id !== card;
    state.phase = card;
    clearError();
  }

  function showError(message) {
    const el = $("error");
    el.textContent = message;
    el.hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error").textContent = "";
  }

  function detailOf(data, status) {
    if (data && typeof data.detail === "string") return data.detail;
    if (data && Array.isArray(data.detail)) return data.detail.map((d) => d.msg).join("; ");
    return `request failed (HTTP ${status})`;
  }

  async function api(method, path, body) {
    const options = { method, credentials: "same-origin", cache: "no-store", headers: {} };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const error = new Error(detailOf(data, response.status));
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function setWho(progress) {
    $("who").hidden = false;
    $("who-name").textContent = progress.reader;
    $("who-role").textContent = progress.role;
    $("progress").textContent = `${progress.answered} / ${progress.total}`;
    $("progress").title = "photos answered";
  }

  // ------------------------------------------------------------------ flow

  async function init() {
    try {
      state.cfg = await api("GET", "/api/config");
    } catch (error) {
      show("loading");
      showError(`The study server does not answer: ${error.message}`);
      return;
    }
    for (const el of document.querySelectorAll(".js-seconds")) el.textContent = String(state.cfg.seconds);
    for (const el of document.querySelectorAll(".js-confidence-rule")) el.hidden = !state.cfg.confidence;
    $("confidence-block").hidden = !state.cfg.confidence;
    try {
      setWho(await api("GET", "/api/session"));
      await refresh(false);
    } catch (error) {
      if (error.status === 401) showSignIn();
      else showError(error.message);
    }
  }

  function showSignIn() {
    $("who").hidden = true;
    // An invitation link (…/#invite=CODE) fills the code in; the fragment never reaches the server's logs.
    const m = /invite=([^&]+)/.exec(window.location.hash);
    if (m && !$("invite").value) $("invite").value = decodeURIComponent(m[1]);
    show("signin");
    $("name").focus();
  }

  async function refresh(autoStart) {
    const next = await api("GET", "/api/next");
    setWho(next);
    if (next.done) {
      state.current = null;
      $("done-text").textContent =
        `You have answered all ${next.total} photos. Your answers are saved; you can close this window.`;
      show("done");
      return;
    }
    state.current = next;
    if (autoStart) {
      await showPhoto();
      return;
    }
    $("ready-title").textContent = next.answered === 0 ? "Ready to start" : "Welcome back";
    $("ready-text").textContent =
      next.answered === 0
        ? `There are ${next.total} photos.`
        : `You have answered ${next.answered} of ${next.total} photos. Next is photo ${next.index}.`;
    show("ready");
    $("start").focus();
  }

  async function showPhoto() {
    if (!state.current || state.busy) return;
    state.busy = true;
    state.phase = "viewing";
    const img = $("photo");
    try {
      const response = await fetch(`/api/photos/${encodeURIComponent(state.current.photo_id)}`, {
        credentials: "same-origin",
        cache: "no-store",
      });
      if (!response.ok) {
        let data = null;
        try {
          data = await response.json();
        } catch (_) {
          data = null;
        }
        const error = new Error(detailOf(data, response.status));
        error.status = response.status;
        throw error;
      }
      state.objectUrl = URL.createObjectURL(await response.blob());
      img.src = state.objectUrl;
      await img.decode(); // the display clock starts once the photo can actually be painted
    } catch (error) {
      state.busy = false;
      if (error.status === 409) {
        await refresh(false); // answered meanwhile (e.g. in another tab): go to the current photo
        return;
      }
      if (error.status === 401) {
        showSignIn();
        showError("Your session ended; sign in again to continue.");
        return;
      }
      show("ready");
      showError(`The photo could not be shown: ${error.message}`);
      return;
    }
    for (const id of CARDS) $(id).hidden = true; // the photo alone: nothing else on the page while it shows
    clearError();
    $("viewer").hidden = false;
    window.setTimeout(hidePhoto, state.cfg.seconds * 1000);
  }

  function hidePhoto() {
    $("viewer").hidden = true;
    $("photo").removeAttribute("src");
    if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
    state.objectUrl = null;
    state.answer = null;
    state.confidence = null;
    updateChoices();
    $("answer-progress").textContent = `Photo ${state.current.index} of ${state.current.total}`;
    show("answer");
    state.busy = false;
  }

  function ready() {
    return state.answer !== null && (!state.cfg.confidence || state.confidence !== null);
  }

  function updateChoices() {
    for (const b of document.querySelectorAll("[data-answer]")) {
      b.setAttribute("aria-pressed", String(b.dataset.answer === state.answer));
    }
    for (const b of document.querySelectorAll("[data-confidence]")) {
      b.setAttribute("aria-pressed", String(Number(b.dataset.confidence) === state.confidence));
    }
    $("submit").disabled = !ready() || state.busy;
  }

  function choose(answer) {
    if (state.phase !== "answer") return;
    state.answer = answer;
    updateChoices();
  }

  function rate(confidence) {
    if (state.phase !== "answer" || !state.cfg.confidence) return;
    state.confidence = confidence;
    updateChoices();
  }

  async function submit() {
    if (state.phase !== "answer" || state.busy || !ready()) return;
    state.busy = true;
    updateChoices();
    const body = { photo_id: state.current.photo_id, answer: state.answer };
    if (state.cfg.confidence) body.confidence = state.confidence;
    try {
      await api("POST", "/api/answers", body);
      state.busy = false;
      await refresh(true);
    } catch (error) {
      state.busy = false;
      if (error.status === 409 || error.status === 404) {
        await refresh(false); // this photo was settled elsewhere; continue with whatever is current
        return;
      }
      if (error.status === 401) {
        showSignIn();
        showError("Your session ended; sign in again to continue.");
        return;
      }
      updateChoices();
      showError(`Your answer was not saved: ${error.message}. Try again.`);
    }
  }

  async function signIn(event) {
    event.preventDefault();
    const name = $("name").value.trim();
    const role = document.querySelector('input[name="role"]:checked');
    if (!name) return showError("Enter your name.");
    if (!role) return showError("Choose your role.");
    if (!$("invite").value.trim()) return showError("Enter the invitation code the study organiser gave you.");
    $("signin-button").disabled = true;
    try {
      const invite = $("invite").value.trim();
      setWho(await api("POST", "/api/session", { name, role: role.value, invite }));
      await refresh(false);
    } catch (error) {
      showError(error.message);
    } finally {
      $("signin-button").disabled = false;
    }
  }

  async function signOut() {
    try {
      await api("DELETE", "/api/session");
    } catch (_) {
      // Signing out of an unknown session is still signed out.
    }
    state.current = null;
    $("signin-form").reset();
    showSignIn();
  }

  // ------------------------------------------------------------------ events

  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey || event.repeat) return;
    const key = event.key.toLowerCase();
    if (state.phase === "ready" && (key === " " || key === "enter")) {
      event.preventDefault();
      showPhoto();
    } else if (state.phase === "answer") {
      if (key === "g") choose("GS");
      else if (key === "n") choose("control");
      else if (/^[1-5]$/.test(key)) rate(Number(key));
      else if (key === "enter") submit();
      else return;
      event.preventDefault(); // keep Enter from also "clicking" the focused button
    }
  });

  $("signin-form").addEventListener("submit", signIn);
  $("start").addEventListener("click", () => showPhoto());
  $("submit").addEventListener("click", () => submit());
  $("signout").addEventListener("click", () => signOut());
  $("done-signout").addEventListener("click", () => signOut());
  for (const b of document.querySelectorAll("[data-answer]")) {
    b.addEventListener("click", () => choose(b.dataset.answer));
  }
  for (const b of document.querySelectorAll("[data-confidence]")) {
    b.addEventListener("click", () => rate(Number(b.dataset.confidence)));
  }

  init();
})();
