// Shared helpers of the JavaScript tests: a real roomd process, a TCP proxy
// the test controls (to cut, stall or refuse connections), and bounded waits
// on events.

import { spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, "../..");
/** The binary under test: $ROOMD_BIN, or the release build. */
export const ROOMD_BIN = process.env.ROOMD_BIN ?? path.join(ROOT, "target/release/roomd");

/** Upper bound on any single wait for the server or the client. */
export const WATCHDOG_MS = 5000;

/** Starts `roomd --listen 127.0.0.1:0 --workers 1 ...args` and resolves once
 * it printed `roomd listening on HOST:PORT`. `stop()` sends SIGTERM and
 * resolves when it exited. */
export function startServer(args = []) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("ROOMD_")) env[k] = v;
  const child = spawn(ROOMD_BIN, ["--listen", "127.0.0.1:0", "--workers", "1", ...args], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr = (stderr + d).slice(-16384);
  });
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`roomd printed no listening line in ${WATCHDOG_MS} ms; stderr:\n${stderr}`));
    }, WATCHDOG_MS);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${ROOMD_BIN}: ${err.message}`));
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`roomd exited (${code ?? signal}) before listening; stderr:\n${stderr}`));
    });
    child.stdout.on("data", function onData(d) {
      out += d;
      const m = /roomd listening on (\S+):(\d+)\n/.exec(out);
      if (!m) return;
      clearTimeout(timer);
      child.stdout.off("data", onData);
      child.stdout.resume();
      const port = Number(m[2]);
      resolve({
        port,
        url: `ws://127.0.0.1:${port}/ws`,
        http: `http://127.0.0.1:${port}`,
        child,
        stderr: () => stderr,
        exited,
        async stop(signal = "SIGTERM") {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          return exited;
        },
      });
    });
  });
}

/** A TCP proxy on 127.0.0.1 in front of `targetPort`. `cut()` destroys every
 * connection it carries (both sides see the TCP connection end), `block()`
 * makes it drop new connections at once until `unblock()`, `stall()` stops
 * forwarding from clients to the server until `unstall()`, and `freeze()`
 * stops the connections it carries now in both directions (a dead route:
 * nobody sees an end). Emits "connection" for every connection it
 * accepted. */
export async function startProxy(targetPort) {
  const events = new EventEmitter();
  const pairs = new Set();
  let target = targetPort;
  let blocked = false;
  let stalled = false;
  const server = net.createServer((client) => {
    client.setNoDelay(true);
    events.emit("connection");
    proxy.accepted++;
    if (blocked) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target, "127.0.0.1");
    upstream.setNoDelay(true);
    const pair = { client, upstream };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    upstream.on("data", (d) => client.write(d));
    client.on("data", (d) => upstream.write(d));
    if (stalled) client.pause();
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = server.address().port;
  const proxy = {
    port,
    url: `ws://127.0.0.1:${port}/ws`,
    events,
    accepted: 0,
    cut() {
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
      pairs.clear();
    },
    block() {
      blocked = true;
    },
    unblock() {
      blocked = false;
    },
    stall() {
      stalled = true;
      for (const { client } of pairs) client.pause();
    },
    unstall() {
      stalled = false;
      for (const { client } of pairs) client.resume();
    },
    freeze() {
      for (const { client, upstream } of pairs) {
        client.pause();
        upstream.pause();
      }
    },
    retarget(p) {
      target = p;
    },
    close() {
      proxy.cut();
      return new Promise((resolve) => server.close(resolve));
    },
  };
  return proxy;
}

/** Resolves with the arguments of the first `event` of `emitter` (a roomd.js
 * Client or Room, or a Node EventEmitter) for which `filter` holds; rejects
 * after `timeoutMs`. */
export function next(emitter, event, filter = () => true, timeoutMs = WATCHDOG_MS) {
  return new Promise((resolve, reject) => {
    let off;
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no matching "${event}" within ${timeoutMs} ms`));
    }, timeoutMs);
    const fn = (...args) => {
      if (!filter(...args)) return;
      clearTimeout(timer);
      off();
      resolve(args.length > 1 ? args : args[0]);
    };
    if (emitter instanceof EventEmitter) {
      emitter.on(event, fn);
      off = () => emitter.off(event, fn);
    } else {
      off = emitter.on(event, fn);
    }
  });
}

/** Resolves once `cond()` holds, checking after every `event` of `emitter`;
 * rejects after `timeoutMs`. */
export async function until(emitter, event, cond, timeoutMs = WATCHDOG_MS) {
  if (cond()) return;
  await next(emitter, event, () => cond(), timeoutMs);
}

/** Resolves after `ms`: only for "nothing happens" checks, never to wait for
 * something that has an event. */
export function quiet(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Asserts that `promise` rejects with a RoomdError of `code`; returns it. */
export async function rejectsWith(promise, code) {
  try {
    await promise;
  } catch (err) {
    if (err?.code !== code) {
      throw new Error(`expected code ${code}, got ${err?.code}: ${err?.message}`);
    }
    if (!(err instanceof Error)) throw new Error("rejections are Errors");
    return err;
  }
  throw new Error(`expected a rejection with code ${code}, it resolved`);
}
