// A headless Chromium driven over the DevTools protocol through
// --remote-debugging-pipe (fd 3: commands in, fd 4: replies and events out,
// each a JSON message ended by a NUL byte). Node built-ins only.

import { spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

/** $CHROMIUM_BIN, else Debian's chromium (the binary itself, not its
 * wrapper script), else `chromium` on the PATH. */
function chromiumPath() {
  if (process.env.CHROMIUM_BIN) return process.env.CHROMIUM_BIN;
  for (const p of ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]) if (existsSync(p)) return p;
  return "chromium";
}

export class Browser {
  /** Starts headless Chromium; resolves once it answers. */
  static async launch({ timeoutMs = 15000 } = {}) {
    const profile = mkdtempSync(path.join(tmpdir(), "roomd-chromium-"));
    const proc = spawn(
      chromiumPath(),
      [
        "--headless",
        "--no-sandbox", // CI runs as root, where the sandbox refuses to start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--remote-debugging-pipe",
        `--user-data-dir=${profile}`,
        "about:blank",
      ],
      { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] },
    );
    const b = new Browser(proc, profile, timeoutMs);
    await b.send("Browser.getVersion");
    return b;
  }

  constructor(proc, profile, timeoutMs) {
    this.proc = proc;
    this.profile = profile;
    this.timeoutMs = timeoutMs;
    this.events = new EventEmitter();
    this.events.setMaxListeners(100);
    this.pending = new Map();
    this.nextId = 1;
    this.stderr = "";
    this.exited = new Promise((resolve) => proc.once("exit", resolve));
    proc.once("error", (err) => this._failAll(new Error(`cannot start Chromium: ${err.message}`)));
    proc.once("exit", (code, signal) => this._failAll(new Error(`Chromium exited (${code ?? signal})\n${this.stderr}`)));
    proc.stdio[2].on("data", (d) => {
      this.stderr = (this.stderr + d).slice(-8192);
    });
    let buf = Buffer.alloc(0);
    proc.stdio[4].on("data", (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      let end;
      while ((end = buf.indexOf(0)) >= 0) {
        const msg = JSON.parse(buf.subarray(0, end).toString("utf8"));
        buf = buf.subarray(end + 1);
        this._dispatch(msg);
      }
    });
  }

  _dispatch(msg) {
    if (msg.id !== undefined) {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.error) p.reject(new Error(`${p.method}: ${msg.error.message}`));
      else p.resolve(msg.result);
    } else {
      this.events.emit(msg.method, msg.params, msg.sessionId);
    }
  }

  _failAll(err) {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
  }

  /** One DevTools command (on a page when `sessionId` is given). */
  send(method, params = {}, sessionId) {
    const id = this.nextId++;
    const msg = { id, method, params };
    if (sessionId) msg.sessionId = sessionId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no answer from Chromium in ${this.timeoutMs} ms\n${this.stderr}`));
      }, this.timeoutMs);
      this.pending.set(id, { resolve, reject, timer, method });
      this.proc.stdio[3].write(JSON.stringify(msg) + "\0");
    });
  }

  /** Opens a tab on `url`; resolves once its load event fired. */
  async open(url) {
    const { targetId } = await this.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await this.send("Target.attachToTarget", { targetId, flatten: true });
    const page = new Page(this, targetId, sessionId);
    await this.send("Runtime.enable", {}, sessionId);
    await this.send("Page.enable", {}, sessionId);
    const loaded = new Promise((resolve) => {
      const on = (_params, sid) => {
        if (sid !== sessionId) return;
        this.events.off("Page.loadEventFired", on);
        resolve();
      };
      this.events.on("Page.loadEventFired", on);
    });
    await this.send("Page.navigate", { url }, sessionId);
    await loaded;
    return page;
  }

  async close() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      try {
        await this.send("Browser.close");
      } catch {
        this.proc.kill("SIGKILL");
      }
    }
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 5000);
    await this.exited;
    clearTimeout(timer);
    rmSync(this.profile, { recursive: true, force: true });
  }
}

export class Page {
  constructor(browser, targetId, sessionId) {
    this.browser = browser;
    this.targetId = targetId;
    this.sessionId = sessionId;
    /** Uncaught exceptions and console errors of the page, for messages. */
    this.errors = [];
    browser.events.on("Runtime.exceptionThrown", (p, sid) => {
      if (sid === sessionId) this.errors.push(p.exceptionDetails?.exception?.description ?? p.exceptionDetails?.text);
    });
    browser.events.on("Runtime.consoleAPICalled", (p, sid) => {
      if (sid === sessionId && p.type === "error") this.errors.push(p.args.map((a) => a.value ?? a.description).join(" "));
    });
  }

  /** Evaluates `expression` in the page (awaiting a promise); resolves to
   * its value. */
  async eval(expression) {
    const r = await this.browser.send(
      "Runtime.evaluate",
      { expression, awaitPromise: true, returnByValue: true },
      this.sessionId,
    );
    if (r.exceptionDetails) {
      const d = r.exceptionDetails;
      throw new Error(`in the page: ${d.exception?.description ?? d.text}\npage errors: ${this.errors.join("\n")}`);
    }
    return r.result.value;
  }

  /** Resolves once `predicate` (the source of a function of no arguments,
   * run in the page) returns true: checked now and after every change of
   * the document. Rejects after `timeoutMs`. */
  async waitFor(predicate, timeoutMs = 10000) {
    const ok = await this.eval(`new Promise((resolve) => {
      const check = ${predicate};
      if (check()) return resolve(true);
      const timer = setTimeout(() => { observer.disconnect(); resolve(false); }, ${timeoutMs});
      const observer = new MutationObserver(() => {
        if (!check()) return;
        clearTimeout(timer);
        observer.disconnect();
        resolve(true);
      });
      observer.observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
    })`);
    if (!ok) {
      const text = await this.eval("document.body.innerText");
      throw new Error(`waited ${timeoutMs} ms for ${predicate}\npage text:\n${text}\npage errors: ${this.errors.join("\n")}`);
    }
  }

  /** Closes the tab (its WebSocket goes with it). */
  close() {
    return this.browser.send("Target.closeTarget", { targetId: this.targetId });
  }
}
