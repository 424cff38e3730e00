// tests/browser/dashboard.mjs — drives the dashboard in Debian's chromium (headless) with playwright-core.
//
//   node tests/browser/dashboard.mjs <base url> <token> <screenshot dir>
//
// Run by tests/integration/test_dashboard.py, which starts Parley and the SIPp call. Protocol on stdout
// (one line each, the harness reads them): "STEP <name>" as each step starts, "READY" once the Live view
// is connected to /api/events (the harness then starts the call), "CALL <id>" when the live call shows,
// "PASS" at the end; on a failure "FAIL <step>: <reason>", a failure-<step>.png screenshot and exit 1.
//
// Environment (all optional):
//   PARLEY_DASH_CALL_TIMEOUT_S  how long to wait for the live call to show (default 45)
//   PARLEY_DASH_END_TIMEOUT_S   how long to wait for its end after its first turn (default 60)
//   PARLEY_DASH_BAD_CONFIG      a PUT /api/config body (JSON) the server must refuse with 400
//                               (default {"agent": {"end_of_turn_long_ms": -5}})
//   PARLEY_DASH_GREETING        a greeting to save in Settings (default: none: no change is saved)
//   CHROMIUM                    the browser (default /usr/bin/chromium)
//   PLAYWRIGHT_CORE             playwright-core's index.mjs (default third_party/node/node_modules/...)
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const pwPath = process.env.PLAYWRIGHT_CORE ||
  path.join(here, "..", "..", "third_party", "node", "node_modules", "playwright-core", "index.mjs");
let chromium;
try {
  ({ chromium } = await import(pathToFileURL(pwPath).href));
} catch (e) {
  console.log(`FAIL setup: cannot load playwright-core from ${pwPath} (run scripts/setup): ${e.message}`);
  process.exit(2);
}

const [base, token, shots] = process.argv.slice(2);
if (!base || !token || !shots) {
  console.log("FAIL setup: usage: node tests/browser/dashboard.mjs <base url> <token> <screenshot dir>");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const envS = (k, d) => Number(process.env[k] || d) * 1000;
const CALL_TIMEOUT = envS("PARLEY_DASH_CALL_TIMEOUT_S", 45);
const END_TIMEOUT = envS("PARLEY_DASH_END_TIMEOUT_S", 60);
const BAD_CONFIG = process.env.PARLEY_DASH_BAD_CONFIG || '{"agent": {"end_of_turn_long_ms": -5}}';
const GREETING = process.env.PARLEY_DASH_GREETING || "";

const say = (s) => console.log(s);
let current = "launch";
class StepFailure extends Error {}
function fail(msg) { throw new StepFailure(msg); }

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--disable-gpu", "--mute-audio"],
  timeout: 30000,
});
const context = await browser.newContext({ viewport: { width: 1280, height: 820 }, deviceScaleFactor: 1 });
const page = await context.newPage();
const consoleErrors = [];
page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
page.on("pageerror", (e) => consoleErrors.push(`page error: ${e.message}`));
page.setDefaultTimeout(15000);

async function step(name, fn) {
  current = name;
  say(`STEP ${name}`);
  const t0 = Date.now();
  await fn();
  say(`OK ${name} (${Date.now() - t0} ms)`);
}
async function shot(name, fullPage = false) {
  await page.waitForTimeout(250); // let the last render settle
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage });
  say(`SCREENSHOT ${name}.png`);
}
// Waits for fn() (run in the page) to return a truthy value; fails with `what` and the last value.
async function until(what, fn, arg, timeout = 15000) {
  try {
    const h = await page.waitForFunction(fn, arg, { timeout, polling: 200 });
    return await h.jsonValue();
  } catch (e) {
    fail(`${what} (not within ${Math.round(timeout / 1000)} s)`);
  }
}

let callId = null;
try {
  await step("login", async () => {
    const r = await page.goto(base + "/", { waitUntil: "domcontentloaded" });
    if (!r || r.status() !== 200) fail(`GET / answered ${r && r.status()}`);
    await page.evaluate(() => localStorage.clear());
    await page.reload({ waitUntil: "domcontentloaded" });
    await until("the token prompt did not show", () => !document.querySelector("#token-dialog").hidden);
    // A wrong token is refused with a message, then the right one is accepted.
    await page.fill("[data-testid=token-input]", "wrong-" + token);
    await page.click("[data-testid=token-save]");
    await until("a wrong token did not bring the prompt back with an error",
      () => !document.querySelector("#token-dialog").hidden && document.querySelector("#token-error").textContent.length > 0);
    await shot("token");
    await page.fill("[data-testid=token-input]", token);
    await page.click("[data-testid=token-save]");
    await until("the token prompt did not close", () => document.querySelector("#token-dialog").hidden);
    const stored = await page.evaluate(() => localStorage.getItem("parley.token"));
    if (stored !== token) fail("the token is not kept in localStorage");
  });

  await step("live-view", async () => {
    await until("the Live view did not render", () => document.querySelector("[data-testid=live-calls]"));
    await until("the event stream (/api/events) did not connect",
      () => document.querySelector("#conn-status").dataset.state === "on", undefined, 15000);
    await until("the lines status did not render", () => document.querySelector("#lines-status").children.length > 0);
    say("READY");
  });

  await step("live-call", async () => {
    callId = await until("no live call appeared in the Live view",
      () => { const c = document.querySelector("[data-testid=live-call]"); return c && c.dataset.callId; },
      undefined, CALL_TIMEOUT);
    say(`CALL ${callId}`);
    const caller = await page.textContent(`[data-call-id="${callId}"] [data-testid=live-caller]`);
    if (!caller || !caller.trim()) fail("the live call shows no caller");
    // The duration counter runs.
    const d1 = await page.textContent(`[data-call-id="${callId}"] [data-testid=live-duration]`);
    await until("the live call's duration counter does not advance",
      ([id, d]) => { const e = document.querySelector(`[data-call-id="${id}"] [data-testid=live-duration]`); return e && e.textContent !== d && e.textContent !== "—"; },
      [callId, d1], 5000);
  });

  await step("live-transcript", async () => {
    const sel = `[data-testid=live-call][data-call-id="${callId}"] [data-testid=live-transcript]`;
    const textOf = (s) => { const e = document.querySelector(s); return e ? [...e.querySelectorAll(".bubble")].map((b) => b.textContent).join("|") : ""; };
    const before = await page.evaluate(textOf, sel);
    const n = await until("the live call's transcript did not grow (no `turn` event shown while the call was live)",
      ([s, b]) => {
        const e = document.querySelector(s);
        if (!e) return false;
        const turns = [...e.querySelectorAll("[data-testid=turn]")];
        const text = turns.map((t) => [...t.querySelectorAll(".bubble")].map((x) => x.lastChild ? x.textContent : "").join("|")).join("|");
        // A turn with some text beyond the "Caller"/"Parley" labels.
        const hasText = turns.some((t) => [...t.querySelectorAll(".bubble")].some((x) =>
          x.textContent.replace(/^(Caller|Parley)/, "").replace("interrupted", "").trim().length > 0));
        return turns.length > 0 && hasText && text !== b ? turns.length : false;
      }, [sel, before], END_TIMEOUT);
    say(`LIVE_TURNS ${n}`);
    const still = await page.$(`[data-testid=live-call][data-call-id="${callId}"]`);
    if (!still) fail("the call left the Live view before its transcript could be checked");
    await shot("live");
  });

  await step("call-ended", async () => {
    await until("the call did not end (no call_ended event moved it out of the Live view)",
      (id) => !document.querySelector(`[data-testid=live-call][data-call-id="${id}"]`) &&
              document.querySelector(`[data-testid=ended-call][data-call-id="${id}"]`), callId, END_TIMEOUT);
    say("ENDED");
  });

  await step("history", async () => {
    await page.click("[data-testid=nav-history]");
    await until("the ended call is not listed in History",
      (id) => document.querySelector(`[data-testid=history-row][data-call-id="${id}"]`), callId);
    const total = await page.textContent("[data-testid=history-total]");
    if (!/of\s+\d+/.test(total)) fail(`History shows no total: ${JSON.stringify(total)}`);
    // Search by the call id finds exactly it; a nonsense search finds nothing.
    await page.fill("[data-testid=history-q]", callId);
    await until("searching History for the call id did not narrow the list to it",
      (id) => { const rows = document.querySelectorAll("[data-testid=history-row]"); return rows.length === 1 && rows[0].dataset.callId === id; }, callId);
    await page.fill("[data-testid=history-q]", "zzqx-no-such-call");
    await until("a search that matches nothing still lists calls", () => document.querySelectorAll("[data-testid=history-row]").length === 0);
    await page.fill("[data-testid=history-q]", "");
    await page.selectOption("[data-testid=history-direction]", "inbound");
    await until("the direction filter lost the (inbound) call",
      (id) => document.querySelector(`[data-testid=history-row][data-call-id="${id}"]`), callId);
    await page.selectOption("[data-testid=history-direction]", "");
    await until("History did not come back after clearing the filters",
      (id) => document.querySelector(`[data-testid=history-row][data-call-id="${id}"]`), callId);
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    await shot("history");
  });

  await step("call-page", async () => {
    await page.click(`[data-testid=history-row][data-call-id="${callId}"] [data-testid=history-link]`);
    await until("the call page did not open", (id) => location.hash === `#/calls/${encodeURIComponent(id)}` &&
      document.querySelector("[data-testid=call-meta]"), callId);
    const n = await until("the call page shows no transcript turn",
      () => document.querySelectorAll("[data-testid=call-transcript] [data-testid=turn]").length);
    const bars = await until("the call page shows no latency bar with stages",
      () => { const b = document.querySelectorAll("[data-testid=latency-bar]"); return b.length && document.querySelectorAll("[data-testid=latency-bar] [data-testid=latency-seg]").length ? b.length : 0; });
    say(`CALL_PAGE turns=${n} latency_bars=${bars}`);
    await until("the call page has no <audio> player (the call's `recording` is false?)",
      () => document.querySelector("audio[data-testid=call-audio]"));
  });

  await step("recording", async () => {
    const played = await page.evaluate(() => new Promise((resolve) => {
      const a = document.querySelector("audio[data-testid=call-audio]");
      const done = (why) => resolve({ why, t: a.currentTime, dur: a.duration, err: a.error && a.error.code });
      const timer = setTimeout(() => done("timeout"), 15000);
      a.addEventListener("timeupdate", () => { if (a.currentTime > 0) { clearTimeout(timer); done("timeupdate"); } });
      a.addEventListener("error", () => { clearTimeout(timer); done("error"); });
      a.play().catch((e) => { clearTimeout(timer); resolve({ why: "play() rejected: " + e.message }); });
    }));
    say(`RECORDING ${JSON.stringify(played)}`);
    if (played.why !== "timeupdate") fail(`the recording did not play: ${JSON.stringify(played)}`);
    await page.evaluate(() => document.querySelector("audio[data-testid=call-audio]").pause());
    await shot("call", true);
  });

  await step("latency", async () => {
    await page.click("[data-testid=nav-latency]");
    const n = await until("the latency chart shows no point",
      () => document.querySelectorAll("[data-testid=latency-chart] [data-testid=latency-point]").length);
    say(`LATENCY_POINTS ${n}`);
    await shot("latency");
  });

  await step("settings", async () => {
    await page.click("[data-testid=nav-settings]");
    await until("Settings did not load", () => document.querySelector("[data-testid=settings-form]"));
    for (const k of ["llm.system_prompt", "agent.greeting", "agent.goodbye", "tts.voice", "agent.end_of_turn_short_ms",
                     "agent.end_of_turn_long_ms", "agent.barge_in", "agent.vad_threshold", "stt.engine", "llm.engine", "tts.engine"]) {
      if (!(await page.$(`[data-testid="cfg-${k}"]`))) fail(`Settings has no field for ${k}`);
    }
    // A value the server refuses: its 400 message is shown inline.
    const bad = JSON.parse(BAD_CONFIG);
    const [sec] = Object.keys(bad), [key] = Object.keys(bad[sec]);
    const sel = `[data-testid="cfg-${sec}.${key}"]`;
    const old = await page.inputValue(sel);
    await page.fill(sel, String(bad[sec][key]));
    await page.click("[data-testid=settings-save]");
    const msg = await until("a refused value showed no error message",
      () => { const e = document.querySelector("[data-testid=settings-error]"); return !e.hidden && e.textContent; });
    say(`SETTINGS_ERROR ${JSON.stringify(msg)}`);
    if (!msg.includes(key)) fail(`the 400 message does not name the field ${key}: ${JSON.stringify(msg)}`);
    await shot("settings-error");
    await page.fill(sel, old);
    if (GREETING) {
      await page.fill('[data-testid="cfg-agent.greeting"]', GREETING);
      await page.click("[data-testid=settings-save]");
      const res = await until("saving the greeting showed no result",
        () => { const e = document.querySelector("[data-testid=settings-result]"); return !e.hidden && e.textContent; });
      say(`SETTINGS_SAVED ${JSON.stringify(res)}`);
      if (!res.includes("agent.greeting")) fail(`the save result does not list agent.greeting as applied: ${JSON.stringify(res)}`);
      const v = await page.inputValue('[data-testid="cfg-agent.greeting"]');
      if (v !== GREETING) fail(`after saving, the greeting field shows ${JSON.stringify(v)}`);
    }
    await page.evaluate(() => window.scrollTo(0, 0));
    await shot("settings");
  });

  await step("back-to-live", async () => {
    await page.click("[data-testid=nav-live]");
    await until("the Live view did not come back", () => document.querySelector("[data-testid=live-calls]"));
  });

  const errs = consoleErrors.filter((e) => !/favicon/.test(e));
  if (errs.length) say(`CONSOLE_ERRORS ${JSON.stringify(errs.slice(0, 10))}`);
  say("PASS");
  await browser.close();
  process.exit(0);
} catch (e) {
  const reason = e instanceof StepFailure ? e.message : (e && e.stack) || String(e);
  say(`FAIL ${current}: ${reason.split("\n").join(" | ")}`);
  try { await page.screenshot({ path: path.join(shots, `failure-${current}.png`) }); say(`SCREENSHOT failure-${current}.png`); } catch { /* ignore */ }
  if (consoleErrors.length) say(`CONSOLE_ERRORS ${JSON.stringify(consoleErrors.slice(0, 10))}`);
  await browser.close().catch(() => {});
  process.exit(1);
}
