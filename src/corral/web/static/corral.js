// corral dashboard: auto-refresh in place, actions through the JSON API, no build step.
//
// Refresh: every few seconds the page fetches its own URL and swaps each element marked
// `data-live` for the fresh one with the same id, so the server renders everything once
// and the user keeps the scroll position, the open tab, the page and the search text (all
// of which live in the URL query). Tabs, pager and range links change the URL with
// history.pushState and refresh at once instead of loading a new page.
//
// Actions: `[data-api]` buttons and forms call `/api/...` with the session cookie and the
// CSRF token from <meta name="csrf-token">, then refresh.
(() => {
  "use strict";

  const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? "";
  const root = meta("corral-root");
  const csrf = meta("csrf-token");
  const every = Number(document.body.dataset.refresh || 3000);
  const toggle = document.querySelector("[data-live-toggle]");
  let live = localStorage.getItem("corral-live") !== "off";
  let timer = 0;
  let inflight = null;

  // -- toasts ------------------------------------------------------------------------------

  function toast(text, isError = false) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const item = document.createElement("div");
    item.className = isError ? "toast error" : "toast";
    item.setAttribute("role", isError ? "alert" : "status");
    item.textContent = text;
    item.title = "Click to dismiss";
    item.addEventListener("click", () => item.remove());
    box.append(item);
    setTimeout(() => item.remove(), isError ? 8000 : 3500);
  }

  function detailOf(body, status) {
    const detail = body && body.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    }
    return `request failed (${status})`;
  }

  // -- times in the reader's zone ----------------------------------------------------------

  function localize(scope) {
    for (const el of scope.querySelectorAll("time[datetime]")) {
      const at = new Date(el.getAttribute("datetime"));
      if (Number.isNaN(at.getTime())) continue;
      const local = at.toLocaleString(undefined, {
        year: "numeric", month: "short", day: "numeric",
        hour: "2-digit", minute: "2-digit", second: "2-digit",
      });
      if (el.classList.contains("abs")) el.textContent = local;
      el.title = local;
    }
  }

  // -- refresh in place --------------------------------------------------------------------

  function typingIn(el) {
    const active = document.activeElement;
    return active && el.contains(active) && active.matches("input, textarea, select");
  }

  function swap(doc) {
    for (const fresh of doc.querySelectorAll("[data-live][id]")) {
      const current = document.getElementById(fresh.id);
      if (!current || typingIn(current)) continue;
      const open = new Set(
        [...current.querySelectorAll("details[data-key][open]")].map((d) => d.dataset.key));
      for (const d of fresh.querySelectorAll("details[data-key]")) {
        d.open = open.has(d.dataset.key);
      }
      const scrolled = new Map(
        [...current.querySelectorAll("[data-scroll-key]")].map((e) => [e.dataset.scrollKey, e.scrollTop]));
      const adopted = document.importNode(fresh, true);
      current.replaceWith(adopted);
      for (const e of adopted.querySelectorAll("[data-scroll-key]")) {
        if (scrolled.has(e.dataset.scrollKey)) e.scrollTop = scrolled.get(e.dataset.scrollKey);
      }
      localize(adopted);
    }
    if (doc.title) document.title = doc.title;
  }

  function setOnline(ok) {
    if (toggle) toggle.classList.toggle("offline", !ok);
  }

  async function refresh(url = location.href) {
    if (inflight) inflight.abort();
    const controller = new AbortController();
    inflight = controller;
    try {
      const res = await fetch(url, {
        credentials: "same-origin",
        headers: { "X-Corral-Refresh": "1" },
        signal: controller.signal,
      });
      if (res.redirected && new URL(res.url).pathname.endsWith("/login")) {
        location.assign(res.url);  // the session ended
        return;
      }
      if (res.status === 404) {
        location.reload();  // what this page shows is gone: say so
        return;
      }
      const text = await res.text();
      if (!res.ok) {
        setOnline(false);
        return;
      }
      setOnline(true);
      swap(new DOMParser().parseFromString(text, "text/html"));
    } catch (err) {
      if (err.name !== "AbortError") setOnline(false);
    } finally {
      if (inflight === controller) inflight = null;
    }
  }

  function schedule() {
    clearTimeout(timer);
    if (!live || !document.querySelector("[data-live]")) return;
    timer = setTimeout(async () => {
      if (!document.hidden) await refresh();
      schedule();
    }, every);
  }

  function showLive() {
    if (!toggle) return;
    toggle.setAttribute("aria-pressed", String(live));
    toggle.querySelector(".label").textContent = live ? "Live" : "Paused";
    toggle.title = live
      ? `Refreshing every ${every / 1000} s; click to stop`
      : "Auto-refresh is off; click to resume";
  }

  toggle?.addEventListener("click", () => {
    live = !live;
    localStorage.setItem("corral-live", live ? "on" : "off");
    showLive();
    if (live) refresh();
    schedule();
  });

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && live) refresh();
  });

  // -- navigation that keeps the page --------------------------------------------------------

  function syncInputs() {
    const params = new URL(location.href).searchParams;
    for (const input of document.querySelectorAll("form[data-nav] input[name]")) {
      input.value = params.get(input.name) ?? "";
    }
  }

  function navigate(href) {
    history.pushState(null, "", href);
    syncInputs();
    refresh(href);
  }

  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-nav]");
    if (!link || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    navigate(link.href);
  });

  window.addEventListener("popstate", () => {
    syncInputs();
    refresh();
  });

  // -- actions through the API ---------------------------------------------------------------

  async function call(method, path, body) {
    const headers = { "X-CSRF-Token": csrf, Accept: "application/json" };
    const init = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(root + path, init);
    let payload = null;
    try { payload = await res.json(); } catch { payload = null; }
    if (!res.ok) throw new Error(detailOf(payload, res.status));
    return payload;
  }

  function setPath(target, path, value) {
    const parts = path.split(".");
    let node = target;
    for (const part of parts.slice(0, -1)) node = node[part] ??= {};
    const last = parts.at(-1);
    const both = [node[last], value].every((v) => v && typeof v === "object" && !Array.isArray(v));
    node[last] = both ? { ...value, ...node[last] } : value;
  }

  // A form's fields as a JSON body: blank fields are left out; `data-kind` says how to
  // read a field (json, number, list of comma-separated values); dotted names nest.
  function formBody(form) {
    const body = {};
    for (const field of form.querySelectorAll("[name]")) {
      if (field.disabled || !field.name || field.dataset.skip !== undefined) continue;
      const raw = field.value.trim();
      if (raw === "") continue;
      let value = raw;
      const kind = field.dataset.kind;
      if (kind === "json") {
        try { value = JSON.parse(raw); } catch {
          throw new Error(`${field.dataset.label || field.name} is not valid JSON`);
        }
      } else if (kind === "number") {
        value = Number(raw);
        if (Number.isNaN(value)) throw new Error(`${field.dataset.label || field.name} must be a number`);
      } else if (kind === "list") {
        value = raw.split(",").map((s) => s.trim()).filter(Boolean);
      } else if (kind === "duration" && /^\d+(\.\d+)?$/.test(raw)) {
        value = Number(raw);
      }
      setPath(body, field.name, value);
    }
    return body;
  }

  function pathOf(el) {
    return el.dataset.api.replace(/\{(\w+)\}/g, (_, name) => {
      const field = el.querySelector(`[name="${name}"]`);
      return encodeURIComponent(field ? field.value.trim() : "");
    });
  }

  async function act(el, body) {
    if (el.dataset.confirm && !window.confirm(el.dataset.confirm)) return;
    const busy = el.matches("form") ? el.querySelector("[type=submit]") : el;
    if (busy) busy.disabled = true;
    try {
      const result = await call(el.dataset.method || "POST", pathOf(el), body);
      let message = el.dataset.done || "Done";
      if (result && Array.isArray(result.removed)) message += `: ${result.removed.length} removed`;
      if (result && typeof result.retried === "number") message += `: ${result.retried} retried`;
      if (result && result.duplicate) message = `A job with id ${result.id} already exists`;
      toast(message);
      el.closest("dialog")?.close();
      if (el.matches("form") && el.dataset.reset !== undefined) el.reset();
      if (el.dataset.go) location.assign(el.dataset.go);
      else await refresh();
    } catch (err) {
      toast(err.message, true);
    } finally {
      if (busy) busy.disabled = false;
    }
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-api]");
    if (button) {
      event.preventDefault();
      act(button, undefined);
    }
  });

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.matches("form[data-api]")) {
      event.preventDefault();
      let body;
      try { body = formBody(form); } catch (err) { toast(err.message, true); return; }
      act(form, body);
    } else if (form.matches("form[data-nav]")) {
      event.preventDefault();
      const url = new URL(location.href);
      for (const [name, value] of new FormData(form)) {
        if (String(value).trim()) url.searchParams.set(name, String(value).trim());
        else url.searchParams.delete(name);
      }
      url.searchParams.delete("page");
      navigate(url.href);
    }
  });

  // -- dialogs: open, and fill the schedule form from the row's JSON ---------------------------

  document.addEventListener("click", (event) => {
    const opener = event.target.closest("[data-open]");
    if (opener) {
      const dialog = document.getElementById(opener.dataset.open);
      if (!dialog) return;
      const form = dialog.querySelector("form");
      if (form && opener.dataset.fill !== undefined) fill(form, JSON.parse(opener.dataset.fill));
      dialog.showModal();
      dialog.querySelector("input:not([readonly]), textarea, select")?.focus();
      return;
    }
    const closer = event.target.closest("[data-close]");
    if (closer) closer.closest("dialog")?.close();
  });

  function fill(form, values) {
    form.reset();
    for (const field of form.querySelectorAll("[name]")) {
      if (field.name in values && values[field.name] !== null) {
        const value = values[field.name];
        field.value = typeof value === "object" ? JSON.stringify(value, null, 2) : String(value);
      }
      if (field.dataset.lockWhenFilled !== undefined) field.readOnly = Boolean(values[field.name]);
    }
    const title = form.querySelector("[data-title]");
    if (title) title.textContent = values.id ? `Edit schedule ${values.id}` : "New schedule";
  }

  // -- log out ---------------------------------------------------------------------------------

  document.querySelector("[data-logout]")?.addEventListener("click", async () => {
    await fetch(`${root}/logout`, {
      method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf },
    });
    location.assign(`${root}/login`);
  });

  localize(document);
  showLive();
  schedule();
})();
