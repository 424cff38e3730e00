// Parley dashboard: plain JS, no framework. Talks to the API in docs/api.md.
"use strict";

(() => {
  const TOKEN_KEY = "parley.token";
  const STAGES = [ // milestones, ms after the end of the caller's speech, in order
    ["eot_ms", "end of turn"],
    ["stt_final_ms", "STT final"],
    ["llm_first_token_ms", "LLM first token"],
    ["first_sentence_ms", "first sentence"],
    ["tts_first_audio_ms", "TTS first audio"],
    ["first_rtp_ms", "first RTP"],
  ];

  const state = {
    token: localStorage.getItem(TOKEN_KEY) || "",
    live: new Map(),      // id -> {call, turns: []}
    ended: [],            // recently ended calls (this session), newest first
    lines: new Map(),     // name -> line
    es: null,
    route: null,
    callPage: null,       // {id, call} while a call page is shown
  };

  // ---- helpers ---------------------------------------------------------------------------------------
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "testid") el.dataset.testid = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  const $ = (sel, root = document) => root.querySelector(sel);
  const view = () => $("#view");

  function fmtTime(ms) {
    if (ms === null || ms === undefined) return "—";
    const d = new Date(ms);
    const today = new Date();
    const t = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    return d.toDateString() === today.toDateString() ? t : `${d.toLocaleDateString()} ${t}`;
  }
  function fmtDur(s) {
    if (s === null || s === undefined || isNaN(s)) return "—";
    s = Math.max(0, Math.floor(s));
    const m = Math.floor(s / 60), sec = s % 60;
    return m >= 60 ? `${Math.floor(m / 60)}:${String(m % 60).padStart(2, "0")}:${String(sec).padStart(2, "0")}`
                   : `${m}:${String(sec).padStart(2, "0")}`;
  }
  function fmtMs(v) { return v === null || v === undefined ? "—" : `${Math.round(v)} ms`; }
  function who(uri) { // '"Ann" <sip:ann@x>' -> 'Ann (ann@x)'; 'sip:1001@pbx' -> '1001@pbx'
    if (!uri) return "unknown";
    const m = /^\s*"?([^"<]*?)"?\s*<([^>]*)>/.exec(uri);
    const addr = (m ? m[2] : uri).replace(/^sips?:/, "").replace(/;.*$/, "");
    const name = m && m[1].trim();
    return name ? `${name} (${addr})` : addr;
  }
  function caller(call) { return who(call.direction === "outbound" ? call.to : call.from); }
  function callUrl(id) { return `#/calls/${encodeURIComponent(id)}`; }
  function withToken(path) {
    return `${path}${path.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(state.token)}`;
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  async function api(path, opts = {}) {
    const headers = { Authorization: `Bearer ${state.token}` };
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method: opts.method || "GET", headers,
                                  body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined });
    let data = null;
    const text = await r.text();
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
    if (!r.ok) {
      const msg = (data && data.error) || `${r.status} ${r.statusText}`;
      if (r.status === 401) askToken("The token was refused: " + msg);
      throw new ApiError(r.status, msg);
    }
    return data;
  }
  function errorBox(e) {
    return h("p", { class: "error", testid: "view-error" }, e instanceof Error ? e.message : String(e));
  }

  // ---- token -----------------------------------------------------------------------------------------
  function askToken(msg) {
    const dlg = $("#token-dialog");
    const err = $("#token-error");
    err.hidden = !msg;
    err.textContent = msg || "";
    $("#token-cancel").hidden = !state.token;
    if (!dlg.hidden) return; // already asking (several requests were refused): keep what is being typed
    dlg.hidden = false;
    $("#token-input").value = "";
    $("#token-input").focus();
  }
  $("#token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("#token-input").value.trim();
    if (!state.token) return;
    localStorage.setItem(TOKEN_KEY, state.token);
    $("#token-dialog").hidden = true;
    start();
  });
  $("#token-change").addEventListener("click", () => askToken(""));
  $("#token-cancel").addEventListener("click", () => { if (state.token) $("#token-dialog").hidden = true; });

  // ---- live events -----------------------------------------------------------------------------------
  function connectEvents() {
    if (state.es) state.es.close();
    const es = new EventSource(withToken("/api/events"));
    state.es = es;
    const conn = $("#conn-status");
    es.onopen = () => { conn.dataset.state = "on"; conn.textContent = "live"; };
    es.onerror = () => { conn.dataset.state = "off"; conn.textContent = "reconnecting"; };
    const on = (type, fn) => es.addEventListener(type, (m) => {
      let d; try { d = JSON.parse(m.data); } catch { return; }
      fn(d);
    });
    on("call_started", (c) => upsertLive(c));
    on("call_answered", (c) => upsertLive(c));
    on("call_ended", (c) => endLive(c));
    on("turn", (d) => addTurn(d.call, d.turn));
    on("line_status", (l) => { state.lines.set(l.name, l); renderLines(); });
    on("config_changed", (d) => {
      const el = $("#settings-remote");
      if (el) el.textContent = `Configuration changed elsewhere: ${(d.applied || []).join(", ") || "—"}`;
    });
  }

  function upsertLive(c) {
    const e = state.live.get(c.id);
    if (e) e.call = { ...e.call, ...c };
    else state.live.set(c.id, { call: c, turns: [] });
    renderLiveCount();
    if (state.route === "live") renderLiveList();
    if (state.callPage && state.callPage.id === c.id) refreshCallPage();
  }
  function endLive(c) {
    const e = state.live.get(c.id);
    state.live.delete(c.id);
    state.ended = [{ call: c, turns: e ? e.turns : [] }, ...state.ended.filter((x) => x.call.id !== c.id)].slice(0, 8);
    renderLiveCount();
    if (state.route === "live") renderLiveList();
    if (state.callPage && state.callPage.id === c.id) refreshCallPage();
  }
  function addTurn(id, turn) {
    let e = state.live.get(id);
    if (!e) { // a call we did not see start (page opened late): fetch it
      e = { call: { id, live: true }, turns: [] };
      state.live.set(id, e);
      api(`/api/calls/${encodeURIComponent(id)}`).then((c) => {
        e.call = c;
        for (const t of c.turns || []) if (!e.turns.some((x) => x.idx === t.idx)) e.turns.push(t);
        e.turns.sort((a, b) => a.idx - b.idx);
        if (state.route === "live") renderLiveList();
      }).catch(() => {});
    }
    if (!e.turns.some((x) => x.idx === turn.idx)) e.turns.push(turn);
    e.turns.sort((a, b) => a.idx - b.idx);
    renderLiveCount();
    if (state.route === "live") renderLiveList();
    if (state.callPage && state.callPage.id === id) refreshCallPage();
  }
  function renderLiveCount() { $("#live-count").textContent = String(state.live.size); }

  // ---- lines -----------------------------------------------------------------------------------------
  async function loadLines() {
    try {
      const d = await api("/api/lines");
      state.lines = new Map((d.lines || []).map((l) => [l.name, l]));
    } catch { /* shown as empty */ }
    renderLines();
  }
  function renderLines() {
    const box = $("#lines-status");
    box.replaceChildren();
    if (state.lines.size === 0) {
      box.append(h("span", { class: "pill muted", testid: "lines-none" }, "no lines"));
      return;
    }
    for (const l of state.lines.values()) {
      const cls = l.registered ? "ok" : (l.status === "unknown" ? "warn" : "bad");
      box.append(h("span", { class: `pill ${cls}`, testid: "line-pill", "data-line": l.name,
                             title: `${l.user || ""}@${l.registrar || ""}: ${l.status}` },
                   h("span", { class: "dot" }), l.name, h("span", { class: "pill-sub" }, l.status)));
    }
  }

  // ---- transcript ------------------------------------------------------------------------------------
  function transcript(turns, testid) {
    const box = h("div", { class: "transcript", testid });
    if (!turns.length) box.append(h("p", { class: "muted empty" }, "No turns yet."));
    for (const t of turns) {
      const row = h("div", { class: "turn", testid: "turn", "data-idx": t.idx });
      const label = t.trigger && t.trigger !== "speech" ? `[${t.trigger}] ` : "";
      if (t.user || label) {
        row.append(h("div", { class: "bubble caller", testid: "bubble-caller" },
          h("span", { class: "who" }, "Caller"), label + (t.user || "")));
      }
      if (t.reply || t.interrupted) {
        row.append(h("div", { class: `bubble parley${t.interrupted ? " interrupted" : ""}`, testid: "bubble-parley" },
          h("span", { class: "who" }, "Parley"), t.reply || "",
          t.interrupted ? h("span", { class: "tag warn", testid: "interrupted" }, "interrupted") : null,
          (t.tools || []).length ? h("span", { class: "tag" }, `tools: ${t.tools.map((x) => x.name || x).join(", ")}`) : null));
      }
      box.append(row);
    }
    return box;
  }

  // ---- Live view -------------------------------------------------------------------------------------
  async function showLive() {
    const v = view();
    v.replaceChildren(
      h("div", { class: "view-head" }, h("h1", {}, "Live calls")),
      h("div", { id: "live-calls", class: "live-grid", testid: "live-calls" }),
      h("h2", { class: "sub" }, "Recently ended"),
      h("div", { id: "live-ended", class: "ended-list", testid: "live-ended" }));
    renderLiveList();
    try {
      const d = await api("/api/calls?status=live&limit=100");
      const ids = new Set();
      for (const c of d.calls || []) {
        ids.add(c.id);
        upsertLive(c);
        api(`/api/calls/${encodeURIComponent(c.id)}`).then((full) => {
          const e = state.live.get(c.id);
          if (!e) return;
          for (const t of full.turns || []) if (!e.turns.some((x) => x.idx === t.idx)) e.turns.push(t);
          e.turns.sort((a, b) => a.idx - b.idx);
          if (state.route === "live") renderLiveList();
        }).catch(() => {});
      }
      for (const id of [...state.live.keys()]) if (!ids.has(id) && state.live.get(id).call.started_at) state.live.delete(id);
      renderLiveCount();
      renderLiveList();
    } catch (e) { v.append(errorBox(e)); }
  }
  function renderLiveList() {
    const grid = $("#live-calls");
    if (!grid) return;
    grid.replaceChildren();
    if (state.live.size === 0) grid.append(h("p", { class: "muted empty", testid: "live-empty" }, "No calls right now."));
    for (const { call, turns } of state.live.values()) {
      const t0 = call.answered_at || call.started_at;
      const ts = transcript(turns, "live-transcript");
      grid.append(h("article", { class: "card live-call", testid: "live-call", "data-call-id": call.id },
        h("div", { class: "live-head" },
          h("span", { class: `state ${call.answered_at ? "up" : "ringing"}` }, call.answered_at ? "in call" : "ringing"),
          h("a", { class: "caller", href: callUrl(call.id), testid: "live-caller" }, caller(call)),
          h("span", { class: "duration mono", testid: "live-duration", "data-since": t0 || "" },
            t0 ? fmtDur((Date.now() - t0) / 1000) : "—")),
        h("div", { class: "live-meta muted" },
          h("span", {}, call.direction || ""), h("span", {}, `line: ${call.line || "direct"}`),
          h("span", { class: "mono" }, call.id)),
        ts));
      ts.scrollTop = ts.scrollHeight;
    }
    const ended = $("#live-ended");
    ended.replaceChildren();
    if (!state.ended.length) ended.append(h("p", { class: "muted empty" }, "None since this page was opened."));
    for (const { call } of state.ended) {
      ended.append(h("a", { class: "ended-row", href: callUrl(call.id), testid: "ended-call", "data-call-id": call.id },
        h("span", { class: "caller" }, caller(call)),
        h("span", { class: "muted" }, call.end_reason || "ended"),
        h("span", { class: "mono" }, fmtDur(call.duration_s))));
    }
  }
  setInterval(() => {
    for (const el of document.querySelectorAll("[data-testid=live-duration][data-since]")) {
      const since = Number(el.dataset.since);
      if (since) el.textContent = fmtDur((Date.now() - since) / 1000);
    }
  }, 1000);

  // ---- History view ----------------------------------------------------------------------------------
  const hist = { q: "", direction: "", status: "", offset: 0, limit: 25 };
  function showHistory() {
    const v = view();
    const q = h("input", { id: "history-q", testid: "history-q", type: "search", placeholder: "Search caller, id, transcript…", value: hist.q });
    const dir = h("select", { id: "history-direction", testid: "history-direction" },
      ...[["", "Any direction"], ["inbound", "Inbound"], ["outbound", "Outbound"]].map(([k, t]) => h("option", { value: k }, t)));
    const st = h("select", { id: "history-status", testid: "history-status" },
      ...[["", "Any status"], ["live", "Live"], ["answered", "Answered"], ["missed", "Missed"], ["ended", "Ended"], ["open", "Open"]]
        .map(([k, t]) => h("option", { value: k }, t)));
    dir.value = hist.direction; st.value = hist.status;
    let timer = null;
    q.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => { hist.q = q.value; hist.offset = 0; loadHistory(); }, 250); });
    dir.addEventListener("change", () => { hist.direction = dir.value; hist.offset = 0; loadHistory(); });
    st.addEventListener("change", () => { hist.status = st.value; hist.offset = 0; loadHistory(); });
    v.replaceChildren(
      h("div", { class: "view-head" }, h("h1", {}, "Call history"),
        h("div", { class: "filters" }, q, dir, st)),
      h("div", { class: "card flush" },
        h("table", { class: "calls", testid: "history-table" },
          h("thead", {}, h("tr", {}, ...["Started", "Caller", "Direction", "Line", "Duration", "Turns", "End", ""].map((x) => h("th", {}, x)))),
          h("tbody", { id: "history-body" }))),
      h("div", { class: "pager" },
        h("button", { id: "history-prev", testid: "history-prev", type: "button", onclick: () => { hist.offset = Math.max(0, hist.offset - hist.limit); loadHistory(); } }, "‹ Newer"),
        h("span", { id: "history-total", testid: "history-total", class: "muted" }),
        h("button", { id: "history-next", testid: "history-next", type: "button", onclick: () => { hist.offset += hist.limit; loadHistory(); } }, "Older ›")));
    loadHistory();
  }
  async function loadHistory() {
    const p = new URLSearchParams({ limit: hist.limit, offset: hist.offset });
    if (hist.q) p.set("q", hist.q);
    if (hist.direction) p.set("direction", hist.direction);
    if (hist.status) p.set("status", hist.status);
    const body = $("#history-body");
    try {
      const d = await api(`/api/calls?${p}`);
      if (!$("#history-body")) return;
      body.replaceChildren();
      if (!d.calls.length) body.append(h("tr", {}, h("td", { colspan: 8, class: "muted empty" }, "No calls match.")));
      for (const c of d.calls) {
        body.append(h("tr", { testid: "history-row", "data-call-id": c.id, class: "clickable",
                              onclick: () => { location.hash = callUrl(c.id); } },
          h("td", { class: "mono" }, fmtTime(c.started_at)),
          h("td", {}, h("a", { href: callUrl(c.id), testid: "history-link" }, caller(c))),
          h("td", {}, h("span", { class: `tag ${c.direction}` }, c.direction)),
          h("td", {}, c.line || "—"),
          h("td", { class: "mono" }, c.live ? h("span", { class: "tag up" }, "live") : fmtDur(c.duration_s)),
          h("td", { class: "mono" }, c.turns ?? "—"),
          h("td", { class: "muted" }, c.end_reason || (c.answered_at ? "" : "missed")),
          h("td", {}, c.recording ? h("span", { class: "tag", title: "recorded" }, "rec") : "")));
      }
      const from = d.total ? d.offset + 1 : 0, to = d.offset + d.calls.length;
      $("#history-total").textContent = `${from}–${to} of ${d.total}`;
      $("#history-prev").disabled = d.offset === 0;
      $("#history-next").disabled = to >= d.total;
    } catch (e) {
      body.replaceChildren(h("tr", {}, h("td", { colspan: 8 }, errorBox(e))));
    }
  }

  // ---- Call page -------------------------------------------------------------------------------------
  async function showCall(id) {
    state.callPage = { id, call: null };
    view().replaceChildren(h("p", { class: "muted" }, "Loading…"));
    await refreshCallPage();
  }
  async function refreshCallPage() {
    const page = state.callPage;
    if (!page) return;
    let c;
    try { c = await api(`/api/calls/${encodeURIComponent(page.id)}`); } catch (e) {
      if (state.callPage === page) view().replaceChildren(h("a", { href: "#/history" }, "‹ History"), errorBox(e));
      return;
    }
    if (state.callPage !== page) return;
    const hadAudio = $("#call-audio");
    const keepAudio = hadAudio && page.call && page.call.recording && c.recording && !c.live && !page.call.live;
    page.call = c;
    const meta = [
      ["Caller", c.from], ["Called", c.to], ["Direction", c.direction], ["Line", c.line || "direct"],
      ["Handler", c.handler], ["Started", fmtTime(c.started_at)], ["Answered", fmtTime(c.answered_at)],
      ["Ended", c.live ? "in progress" : fmtTime(c.ended_at)], ["Duration", fmtDur(c.duration_s)],
      ["End reason", c.end_reason || "—"], ["SIP Call-ID", c.sip_call_id], ["Call id", c.id]];
    const audio = keepAudio ? hadAudio : (c.recording
      ? h("audio", { id: "call-audio", testid: "call-audio", controls: true, preload: "metadata",
                     src: withToken(`/api/calls/${encodeURIComponent(c.id)}/recording`) })
      : h("p", { class: "muted", testid: "no-recording" }, "Not recorded."));
    view().replaceChildren(
      h("div", { class: "view-head" },
        h("a", { href: "#/history", class: "back" }, "‹ History"),
        h("h1", { testid: "call-title" }, caller(c)),
        c.live ? h("span", { class: "tag up", testid: "call-live" }, "live") : null),
      h("div", { class: "call-grid" },
        h("section", { class: "card" }, h("h2", {}, "Call"),
          h("dl", { id: "call-meta", class: "meta", testid: "call-meta" },
            ...meta.flatMap(([k, val]) => [h("dt", {}, k), h("dd", { class: k.includes("ID") || k === "Call id" ? "mono" : "" }, val ?? "—")])),
          h("h2", {}, "Recording"),
          h("div", { class: "player", testid: "call-recording" }, audio,
            c.recording ? h("p", { class: "muted small" }, "Stereo: caller left, Parley right.") : null)),
        h("section", { class: "card" }, h("h2", {}, `Transcript (${(c.turns || []).length} turns)`),
          transcript(c.turns || [], "call-transcript"))),
      h("section", { class: "card" }, h("h2", {}, "Latency per turn"), latencyBars(c.turns || [])),
      h("section", { class: "card" }, h("h2", {}, "Events"), eventsTable(c.events || [])));
  }

  function latencyBars(turns) {
    const box = h("div", { id: "call-latency", class: "latency", testid: "call-latency" });
    const rows = turns.filter((t) => t.timing);
    if (!rows.length) { box.append(h("p", { class: "muted empty" }, "No timed turns.")); return box; }
    const max = Math.max(1, ...rows.map((t) => Math.max(...STAGES.map(([k]) => t.timing[k] || 0))));
    box.append(h("div", { class: "legend" }, ...STAGES.map(([, name], i) =>
      h("span", {}, h("i", { class: `s${i}` }), name))));
    for (const t of rows) {
      const bar = h("div", { class: "bar" });
      let prev = 0;
      STAGES.forEach(([k, name], i) => {
        const v = t.timing[k];
        if (v === null || v === undefined || v < prev) return;
        bar.append(h("span", { class: `seg s${i}`, testid: "latency-seg", "data-stage": k,
                               style: `width:${((v - prev) / max) * 100}%`,
                               title: `${name}: ${Math.round(v)} ms after end of speech (+${Math.round(v - prev)} ms)` }));
        prev = v;
      });
      const v2v = t.timing.voice_to_voice_ms ?? t.timing.first_rtp_ms;
      box.append(h("div", { class: "lat-row", testid: "latency-bar", "data-idx": t.idx },
        h("span", { class: "lat-idx mono" }, `#${t.idx}`), bar,
        h("span", { class: "lat-v mono", title: "voice to voice" }, fmtMs(v2v))));
    }
    const ov = rows.map((t) => t.timing.overhead_ms).filter((x) => x !== null && x !== undefined);
    if (ov.length) box.append(h("p", { class: "muted small" }, `Pipeline overhead: ${ov.map((x) => `${x.toFixed(1)} ms`).join(", ")}`));
    return box;
  }
  function eventsTable(events) {
    if (!events.length) return h("p", { class: "muted empty", testid: "call-events" }, "No events.");
    return h("table", { class: "events", id: "call-events", testid: "call-events" },
      h("tbody", {}, ...events.map((e) => h("tr", {},
        h("td", { class: "mono" }, fmtTime(e.at)), h("td", {}, h("span", { class: "tag" }, e.kind)),
        h("td", { class: "mono small" }, e.detail || "")))));
  }

  // ---- Latency chart ---------------------------------------------------------------------------------
  async function showLatency() {
    const v = view();
    v.replaceChildren(h("div", { class: "view-head" }, h("h1", {}, "Voice-to-voice latency"),
      h("span", { class: "muted" }, "last 24 hours, per turn")),
      h("section", { class: "card" }, h("div", { id: "latency-summary", class: "summary", testid: "latency-summary" }),
        h("div", { id: "latency-chart", class: "chart", testid: "latency-chart" })));
    try {
      const d = await api("/api/stats/latency?limit=500");
      drawChart($("#latency-chart"), (d.points || []).filter((p) => p.voice_to_voice_ms !== null && p.voice_to_voice_ms !== undefined));
    } catch (e) { v.append(errorBox(e)); }
  }
  function pct(sorted, p) { return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : null; }
  function drawChart(box, pts) {
    const sorted = pts.map((p) => p.voice_to_voice_ms).sort((a, b) => a - b);
    const p50 = pct(sorted, 0.5), p95 = pct(sorted, 0.95);
    $("#latency-summary").replaceChildren(
      ...[["turns", pts.length], ["p50", fmtMs(p50)], ["p95", fmtMs(p95)], ["max", fmtMs(sorted[sorted.length - 1])]]
        .map(([k, val]) => h("div", { class: "stat" }, h("span", { class: "muted" }, k), h("b", { class: "mono" }, val))));
    if (!pts.length) { box.replaceChildren(h("p", { class: "muted empty" }, "No turns in the last 24 hours.")); return; }
    pts = [...pts].sort((a, b) => a.at - b.at);
    const W = 900, H = 280, L = 56, R = 12, T = 12, B = 28;
    const t0 = pts[0].at, t1 = Math.max(pts[pts.length - 1].at, t0 + 1);
    const ymax = niceMax(Math.max(...sorted) * 1.1);
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    const y = (v) => T + (1 - v / ymax) * (H - T - B);
    const NS = "http://www.w3.org/2000/svg";
    const s = (tag, attrs, text) => {
      const el = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
      if (text !== undefined) el.textContent = text;
      return el;
    };
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img", "aria-label": "voice-to-voice latency per turn" });
    for (let i = 0; i <= 4; i++) {
      const v = (ymax * i) / 4;
      svg.append(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
      svg.append(s("text", { x: L - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, `${Math.round(v)}`));
    }
    svg.append(s("text", { x: L - 6, y: H - B + 18, class: "axis", "text-anchor": "end" }, "ms"));
    for (let i = 0; i <= 4; i++) {
      const t = t0 + ((t1 - t0) * i) / 4;
      svg.append(s("text", { x: x(t), y: H - 8, class: "axis", "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" },
        new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
    }
    for (const [v, cls, label] of [[p50, "p50", "p50"], [p95, "p95", "p95"]]) {
      svg.append(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: cls }));
      svg.append(s("text", { x: W - R - 4, y: y(v) - 4, class: `axis ${cls}`, "text-anchor": "end" }, `${label} ${Math.round(v)} ms`));
    }
    svg.append(s("polyline", { points: pts.map((p) => `${x(p.at).toFixed(1)},${y(p.voice_to_voice_ms).toFixed(1)}`).join(" "), class: "trend" }));
    for (const p of pts) {
      const a = s("a", { href: callUrl(p.id) });
      const c = s("circle", { cx: x(p.at), cy: y(p.voice_to_voice_ms), r: 3.5, class: "pt", "data-testid": "latency-point" });
      c.append(s("title", {}, `${fmtTime(p.at)} · call ${p.id} turn ${p.idx}: ${Math.round(p.voice_to_voice_ms)} ms` +
        (p.overhead_ms !== null && p.overhead_ms !== undefined ? ` (overhead ${p.overhead_ms.toFixed(1)} ms)` : "")));
      a.append(c);
      svg.append(a);
    }
    box.replaceChildren(svg);
  }
  function niceMax(v) {
    if (!(v > 0)) return 100;
    const m = Math.pow(10, Math.floor(Math.log10(v)));
    for (const k of [1, 2, 2.5, 5, 10]) if (k * m >= v) return k * m;
    return 10 * m;
  }

  // ---- Settings --------------------------------------------------------------------------------------
  // [key, label, kind, hint]; kind: text | area | int | float | bool | select:a,b | secret
  const FIELDS = [
    ["Persona", [
      ["llm.system_prompt", "Persona (system prompt)", "area"],
      ["agent.greeting", "Greeting", "text", "said when the call is answered; empty = wait for the caller"],
      ["agent.goodbye", "Goodbye", "text"],
      ["tts.voice", "Voice", "text", "espeak-ng voice, e.g. en-us, en-gb"],
      ["tts.rate_wpm", "Speaking rate (wpm)", "int"],
      ["agent.silence_prompt", "Silence prompt", "text"],
    ]],
    ["Turn-taking", [
      ["agent.end_of_turn_short_ms", "End of turn, short pause (ms)", "int", "a complete-looking sentence ends the turn here"],
      ["agent.end_of_turn_long_ms", "End of turn, long pause (ms)", "int", "the turn ends whatever was said"],
      ["agent.vad_threshold", "VAD threshold", "float", "speech probability, 0–1"],
      ["agent.min_speech_ms", "Minimum speech (ms)", "int"],
      ["agent.barge_in", "Barge-in", "bool", "caller speech stops Parley"],
      ["agent.barge_in_min_ms", "Barge-in minimum (ms)", "int"],
      ["agent.echo_canceller", "Echo canceller", "bool"],
      ["agent.max_utterance_s", "Longest utterance (s)", "int"],
      ["agent.silence_prompt_s", "Silence prompt after (s)", "int", "0 = never"],
      ["agent.silence_prompts_max", "Silence prompts before hanging up", "int"],
      ["call.max_duration_s", "Call time limit (s)", "int", "0 = unlimited"],
    ]],
    ...["stt", "llm", "tts"].map((e) => [`Engine: ${e.toUpperCase()}`, [
      [`${e}.engine`, "Engine", "select:embedded,openai"],
      [`${e}.model`, "Model (embedded)", "text"],
      [`${e}.base_url`, "Server base URL (openai)", "text"],
      [`${e}.remote_model`, "Remote model", "text"],
      [`${e}.api_key`, "API key", "secret"],
      ...(e === "llm" ? [["llm.temperature", "Temperature", "float"], ["llm.max_tokens", "Max tokens", "int"]] : []),
    ]]),
  ];
  const settings = { cfg: null };
  const getKey = (cfg, key) => { const [s, k] = key.split("."); return cfg[s] ? cfg[s][k] : undefined; };

  async function showSettings() {
    const v = view();
    v.replaceChildren(h("div", { class: "view-head" }, h("h1", {}, "Settings")), h("p", { class: "muted" }, "Loading…"));
    try { settings.cfg = await api("/api/config"); } catch (e) { v.append(errorBox(e)); return; }
    renderSettings();
  }
  function fieldInput(key, kind, cfg) {
    const val = getKey(cfg, key);
    const id = `cfg-${key.replace(".", "-")}`;
    const common = { id, name: key, "data-key": key, "data-kind": kind, testid: `cfg-${key}` };
    if (kind === "area") return h("textarea", { ...common, rows: 5 }, val ?? "");
    if (kind === "bool") { const el = h("input", { ...common, type: "checkbox" }); el.checked = !!val; return el; }
    if (kind.startsWith("select:")) {
      const opts = kind.slice(7).split(",");
      if (val && !opts.includes(val)) opts.push(val);
      const el = h("select", common, ...opts.map((o) => h("option", { value: o }, o)));
      el.value = val ?? opts[0];
      return el;
    }
    if (kind === "secret") {
      const isSet = getKey(cfg, key + "_set");
      return h("input", { ...common, type: "password", autocomplete: "new-password",
                          placeholder: isSet ? "set — leave empty to keep" : "not set" });
    }
    return h("input", { ...common, type: kind === "int" || kind === "float" ? "number" : "text",
                        step: kind === "float" ? "any" : kind === "int" ? "1" : null, value: val ?? "" });
  }
  function renderSettings() {
    const cfg = settings.cfg;
    const form = h("form", { id: "settings-form", testid: "settings-form", class: "settings", autocomplete: "off" });
    for (const [title, fields] of FIELDS) {
      const present = fields.filter(([k, , kind]) => getKey(cfg, kind === "secret" ? k + "_set" : k) !== undefined);
      if (!present.length) continue;
      form.append(h("fieldset", { class: "card" }, h("legend", {}, title),
        ...present.map(([key, label, kind, hint]) => {
          const isSet = kind === "secret" ? getKey(cfg, key + "_set") : null;
          return h("label", { class: `field ${kind === "bool" ? "check" : ""} ${kind === "area" ? "wide" : ""}` },
            h("span", { class: "label" }, label,
              kind === "secret" ? h("span", { class: `tag ${isSet ? "up" : ""}`, testid: `cfg-${key}-state` }, isSet ? "set" : "not set") : null),
            fieldInput(key, kind, cfg), hint ? h("span", { class: "hint" }, hint) : null);
        })));
    }
    const lines = cfg.lines || [];
    form.append(h("fieldset", { class: "card", testid: "cfg-lines" }, h("legend", {}, "Lines"),
      lines.length ? h("table", { class: "lines-table" },
        h("thead", {}, h("tr", {}, ...["Name", "Registrar", "User", "Password", "Record"].map((x) => h("th", {}, x)))),
        h("tbody", {}, ...lines.map((l, i) => h("tr", { "data-line": l.name, testid: "cfg-line" },
          h("td", { class: "mono" }, l.name),
          h("td", {}, h("input", { "data-line-idx": i, "data-lkey": "registrar", value: l.registrar ?? "" })),
          h("td", {}, h("input", { "data-line-idx": i, "data-lkey": "user", value: l.user ?? "" })),
          h("td", {}, h("input", { "data-line-idx": i, "data-lkey": "password", type: "password", autocomplete: "new-password",
                                   testid: "cfg-line-password", placeholder: l.password_set ? "set — empty keeps it" : "not set" }),
            h("span", { class: `tag ${l.password_set ? "up" : ""}`, testid: "cfg-line-password-state" }, l.password_set ? "set" : "not set")),
          h("td", {}, (() => { const c = h("input", { type: "checkbox", "data-line-idx": i, "data-lkey": "record" }); c.checked = !!l.record; return c; })())))))
        : h("p", { class: "muted" }, "No lines configured (calls come to Parley directly). Add lines in the config file.")));
    form.append(h("div", { class: "save-bar" },
      h("button", { id: "settings-save", testid: "settings-save", type: "submit", class: "primary" }, "Save"),
      h("span", { id: "settings-error", class: "error", testid: "settings-error", hidden: true }),
      h("span", { id: "settings-result", class: "ok-text", testid: "settings-result", hidden: true }),
      h("span", { id: "settings-remote", class: "muted" })));
    form.addEventListener("submit", saveSettings);
    view().replaceChildren(h("div", { class: "view-head" }, h("h1", {}, "Settings"),
      h("span", { class: "muted" }, "Changes apply to new calls; calls in progress keep their settings.")), form);
  }
  function collectChanges() {
    const cfg = settings.cfg, patch = {};
    const put = (key, v) => { const [s, k] = key.split("."); (patch[s] = patch[s] || {})[k] = v; };
    for (const el of document.querySelectorAll("#settings-form [data-key]")) {
      const key = el.dataset.key, kind = el.dataset.kind, old = getKey(cfg, key);
      if (kind === "secret") { if (el.value !== "") put(key, el.value); continue; }
      if (kind === "bool") { if (el.checked !== !!old) put(key, el.checked); continue; }
      let v = el.value;
      if (kind === "int" || kind === "float") {
        if (v.trim() === "") continue;
        v = Number(v);
        if (kind === "int" && Number.isInteger(v) === false) { put(key, v); continue; }
      }
      if (v !== (old ?? (kind === "int" || kind === "float" ? undefined : ""))) put(key, v);
    }
    const lines = [];
    (cfg.lines || []).forEach((l, i) => {
      const ch = {};
      for (const el of document.querySelectorAll(`#settings-form [data-line-idx="${i}"]`)) {
        const k = el.dataset.lkey;
        if (k === "password") { if (el.value !== "") ch.password = el.value; }
        else if (k === "record") { if (el.checked !== !!l.record) ch.record = el.checked; }
        else if (el.value !== (l[k] ?? "")) ch[k] = el.value;
      }
      if (Object.keys(ch).length) lines.push({ name: l.name, ...ch });
    });
    if (lines.length) patch.lines = lines;
    return patch;
  }
  async function saveSettings(ev) {
    ev.preventDefault();
    const err = $("#settings-error"), res = $("#settings-result");
    err.hidden = true; res.hidden = true;
    const patch = collectChanges();
    if (!Object.keys(patch).length) { res.hidden = false; res.textContent = "Nothing changed."; return; }
    $("#settings-save").disabled = true;
    try {
      const d = await api("/api/config", { method: "PUT", body: patch });
      settings.cfg = d.config || settings.cfg;
      renderSettings();
      const r = $("#settings-result");
      r.hidden = false;
      r.replaceChildren(`Saved. Applied: ${(d.applied || []).join(", ") || "—"}`);
      if ((d.restart_required || []).length) {
        r.append(h("span", { class: "tag warn", testid: "settings-restart" }, `restart required: ${d.restart_required.join(", ")}`));
      }
    } catch (e) {
      err.hidden = false;
      err.textContent = e.message;
    } finally {
      const b = $("#settings-save"); if (b) b.disabled = false;
    }
  }

  // ---- router ----------------------------------------------------------------------------------------
  function route() {
    const hash = location.hash || "#/live";
    const m = /^#\/calls\/(.+)$/.exec(hash);
    const name = m ? "call" : (hash.slice(2) || "live");
    state.route = name;
    if (name !== "call") state.callPage = null;
    for (const a of document.querySelectorAll(".tabs a")) {
      a.classList.toggle("active", a.getAttribute("href") === `#/${name}` || (name === "call" && a.id === "nav-history"));
    }
    document.body.dataset.view = name;
    if (m) return showCall(decodeURIComponent(m[1]));
    if (name === "history") return showHistory();
    if (name === "latency") return showLatency();
    if (name === "settings") return showSettings();
    state.route = "live";
    return showLive();
  }
  window.addEventListener("hashchange", () => { if (state.token) route(); });

  function start() {
    connectEvents();
    loadLines();
    route();
  }
  if (state.token) start(); else askToken("");
})();
