// roomd.js: a client for roomd's JSON subprotocol (roomd.v1.json).
//
// One ES module with no dependencies and no build step. It runs in browsers
// and in Node: it uses the global `WebSocket` where there is one, or the
// class given as the `WebSocket` option (e.g. the `ws` package's).
//
//   import { Client } from "/roomd.js";
//   const client = new Client("ws://127.0.0.1:7700/ws", { meta: "alice" });
//   await client.connect();
//   const room = await client.join("lobby");
//   room.on("msg", (m) => console.log(m.from, m.data));
//   room.on("presence", () => console.log([...room.members.values()]));
//   const { seq } = await room.publish("hello");
//
// Contracts (the README's "Clients" section says more):
// - Every request carries a `rid`. Its promise resolves with the reply and
//   rejects with a RoomdError whose `code` is the protocol's error code, or
//   one of this library's: "timeout" (no reply within requestTimeoutMs),
//   "disconnected" (the connection dropped after the request went out: it
//   may or may not have run), "closed" (close() was called, or the client
//   stopped reconnecting), "queue_full", "match_timeout", "unmatched".
// - After an unexpected close the client reconnects with exponential backoff
//   and full jitter, resumes its session with the last `seq` seen in each
//   room, rejoins each room for a fresh snapshot (members, props, state) and
//   emits "recovered" per room. Requests made while it reconnects wait (at
//   most `queueMax` of them, each for at most requestTimeoutMs) and go out
//   after the resume.
// - A room's "msg" listeners see each published message once, in `seq`
//   order: anything at or below the last seq seen is dropped.

const PROTOCOL = "roomd.v1.json";

/** Close codes after which reconnecting cannot help: 1008 policy (origin or
 * auth refused), 4002 too many bad requests, 4003 another connection took
 * the session over. */
const FINAL_CLOSE = new Set([1008, 4002, 4003]);

/** Messages held for a room that has no "msg" listener yet (one that arrived
 * with `joined` in the same read, before `await` returned the Room). */
const EARLY_MSGS_MAX = 1000;

/** An error from roomd (`code` is the protocol's error code) or from this
 * library (see the codes above). `reply` is the server's `err` message. */
export class RoomdError extends Error {
  constructor(code, message, reply) {
    super(message);
    this.name = "RoomdError";
    this.code = code;
    if (reply !== undefined) {
      this.reply = reply;
      if (reply.ver !== undefined) this.ver = reply.ver;
    }
  }
}

/** A minimal event emitter: on() returns a function that unsubscribes. A
 * listener that throws does not stop the others or the client: the error is
 * rethrown on its own (an uncaught error the host reports). */
class Emitter {
  constructor() {
    this._listeners = new Map();
  }

  on(event, fn) {
    let set = this._listeners.get(event);
    if (!set) this._listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
  }

  _has(event) {
    return (this._listeners.get(event)?.size ?? 0) > 0;
  }

  _emit(event, ...args) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Bytes in JSON mode: valid UTF-8 travels as a string, anything else as
// base64 under the key with "64" appended (`data64`, `meta64`), and props
// values as {"data64": ...}.

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function fromBase64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function asBytes(value) {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  return null;
}

/** Sets `out[key]` (a string) or `out[key + "64"]` (base64) from a string or
 * bytes. */
function putBytes(out, key, value) {
  if (typeof value === "string") {
    out[key] = value;
    return;
  }
  const bytes = asBytes(value);
  if (!bytes) throw new TypeError(`${key} must be a string or a Uint8Array`);
  try {
    out[key] = strictUtf8.decode(bytes);
  } catch {
    out[key + "64"] = toBase64(bytes);
  }
}

/** `m[key]` as sent (a string), or `m[key + "64"]` decoded to bytes. */
function getBytes(m, key) {
  if (typeof m[key] === "string") return m[key];
  if (typeof m[key + "64"] === "string") return fromBase64(m[key + "64"]);
  return undefined;
}

function encodeProps(set) {
  const out = {};
  for (const [k, v] of Object.entries(set)) {
    if (v === null || v === undefined) {
      out[k] = null;
    } else if (typeof v === "string") {
      out[k] = v;
    } else {
      const tmp = {};
      putBytes(tmp, "data", v);
      out[k] = tmp.data ?? { data64: tmp.data64 };
    }
  }
  return out;
}

function decodeProps(set) {
  const out = {};
  for (const [k, v] of Object.entries(set ?? {})) {
    out[k] = v !== null && typeof v === "object" ? fromBase64(v.data64 ?? "") : v;
  }
  return out;
}

function sameValue(a, b) {
  if (typeof a === "string" || typeof b === "string" || a == null || b == null) {
    return a === b;
  }
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// ---------------------------------------------------------------------------

/**
 * One room this client sits in. `members` is a Map of member id to meta (a
 * string, a Uint8Array, or undefined), in join order; `away` the ids whose
 * connection dropped and may come back; `props` an object of string or
 * Uint8Array values; `state`, `ver`, `owner` as in `joined`; `seq` the last
 * message seq seen.
 *
 * Events: "msg" ({from, seq, data} for a publish, {from, to, data} for a
 * send), "presence" (the server's message: {join: {id, meta}}, {leave, why},
 * {away}, {back}; after a reconnect, differences found in the fresh
 * snapshot come as join/leave with `resync: true`), "props" ({set, ver}),
 * "state" ({state, ver}), "closed" ({why}: the server's reason, or "lost"
 * with `code` when the seat could not be taken back after a reconnect),
 * "recovered" ({recovered}).
 */
export class Room extends Emitter {
  constructor(client, name) {
    super();
    this.client = client;
    this.name = name;
    this.members = new Map();
    this.away = new Set();
    this.props = {};
    this.state = null;
    this.ver = 0;
    this.seq = 0;
    this.owner = null;
    /** The meta given to join (used again if a rejoin needs a new seat). */
    this._meta = undefined;
    this._early = [];
  }

  on(event, fn) {
    const off = super.on(event, fn);
    if (event === "msg" && this._early.length > 0) {
      const early = this._early;
      this._early = [];
      for (const m of early) this._emit("msg", m);
    }
    return off;
  }

  /** Broadcasts `data` (string or Uint8Array) to the room; resolves to
   * {seq}. With `echo` the sender gets its own "msg" too. */
  async publish(data, { echo = false } = {}) {
    const msg = { t: "pub", room: this.name };
    if (echo) msg.echo = true;
    putBytes(msg, "data", data);
    const reply = await this.client._request(msg);
    // Without echo this client never sees its own message; what came before
    // it arrived before this reply, so a resume need not replay it.
    if (!echo && reply.seq > this.seq) this.seq = reply.seq;
    return { seq: reply.seq };
  }

  /** Sends `data` to member `to` only (no seq, no history). */
  async send(to, data) {
    const msg = { t: "send", room: this.name, to };
    putBytes(msg, "data", data);
    await this.client._request(msg);
  }

  /** Sets props (null deletes a key); with `expect`, only if the room's
   * `ver` is still that (else code "conflict", with `ver`). Resolves to
   * {ver}. */
  async setProps(set, { expect } = {}) {
    const msg = { t: "props", room: this.name, set: encodeProps(set) };
    if (expect !== undefined) msg.expect = expect;
    const reply = await this.client._request(msg);
    return { ver: reply.ver };
  }

  /** Moves the room to state `to` (owner only). Resolves to {ver}. */
  async setState(to) {
    const reply = await this.client._request({ t: "state", room: this.name, to });
    return { ver: reply.ver };
  }

  /** Leaves the room. The Room stops receiving at once. */
  async leave() {
    this.client._forget(this);
    await this.client._request({ t: "leave", room: this.name });
  }

  /** Applies a `joined` snapshot. With `announce`, differences from what
   * was known come as events (after a reconnect). */
  _snapshot(m, announce) {
    const before = this.members;
    const beforeProps = this.props;
    const beforeState = this.state;
    this.members = new Map(m.members.map((x) => [x.id, getBytes(x, "meta")]));
    for (const id of this.away) if (!this.members.has(id)) this.away.delete(id);
    this.props = decodeProps(m.props);
    this.state = m.state;
    this.ver = m.ver;
    this.owner = m.owner ?? null;
    if (m.seq > this.seq) this.seq = m.seq;
    if (!announce) return;
    for (const [id, meta] of this.members) {
      if (!before.has(id)) this._emit("presence", { room: this.name, join: { id, meta }, resync: true });
    }
    for (const id of before.keys()) {
      if (!this.members.has(id)) this._emit("presence", { room: this.name, leave: id, resync: true });
    }
    const set = {};
    for (const k of Object.keys(beforeProps)) if (!(k in this.props)) set[k] = null;
    for (const [k, v] of Object.entries(this.props)) {
      if (!sameValue(beforeProps[k], v)) set[k] = v;
    }
    if (Object.keys(set).length > 0) this._emit("props", { set, ver: this.ver });
    if (beforeState !== this.state) this._emit("state", { state: this.state, ver: this.ver });
  }

  /** A room-scoped message from the server. */
  _deliver(m) {
    switch (m.t) {
      case "msg": {
        const msg = { from: m.from, data: getBytes(m, "data") };
        if (m.seq !== undefined) {
          if (m.seq <= this.seq) return; // seen before the drop, replayed
          this.seq = m.seq;
          msg.seq = m.seq;
        }
        if (m.to !== undefined) msg.to = m.to;
        if (this._has("msg")) {
          this._emit("msg", msg);
        } else if (this._early.length < EARLY_MSGS_MAX) {
          this._early.push(msg);
        }
        return;
      }
      case "presence":
        if (m.join) {
          const meta = getBytes(m.join, "meta");
          this.members.set(m.join.id, meta);
          this.away.delete(m.join.id);
          this._emit("presence", { room: this.name, join: { id: m.join.id, meta } });
        } else if (m.leave !== undefined) {
          this.members.delete(m.leave);
          this.away.delete(m.leave);
          // The server hands ownership to the member seated longest.
          if (this.owner === m.leave) this.owner = this.members.keys().next().value ?? null;
          this._emit("presence", { room: this.name, leave: m.leave, why: m.why });
        } else if (m.away !== undefined) {
          this.away.add(m.away);
          this._emit("presence", { room: this.name, away: m.away });
        } else if (m.back !== undefined) {
          this.away.delete(m.back);
          this._emit("presence", { room: this.name, back: m.back });
        }
        return;
      case "props": {
        const set = decodeProps(m.set);
        for (const [k, v] of Object.entries(set)) {
          if (v === null) delete this.props[k];
          else this.props[k] = v;
        }
        this.ver = m.ver;
        this._emit("props", { set, ver: m.ver });
        return;
      }
      case "state":
        this.state = m.state;
        this.ver = m.ver;
        this._emit("state", { state: m.state, ver: m.ver });
        return;
      case "closed":
      case "kicked":
        this.client._forget(this);
        this.state = "closed";
        this._emit("closed", { why: m.t === "kicked" ? "kicked" : m.why });
        return;
    }
  }
}

// ---------------------------------------------------------------------------

/**
 * A connection to roomd that survives drops.
 *
 * Options: `token` (sent as the `token` query parameter), `meta` (string or
 * Uint8Array, sent in `hello`), `WebSocket` (a class; default the global
 * one), `reconnect` ({minMs = 250, maxMs = 10000}, or false to stay closed
 * after a drop), `requestTimeoutMs` (10000), `queueMax` (100 requests held
 * while reconnecting).
 *
 * Events: "state" (state, {code, reason} of the close that caused it),
 * "error" (an `err` the server sent without a rid, as a RoomdError),
 * "message" (every message from the server, decoded, before it is handled).
 */
export class Client extends Emitter {
  constructor(url, opts = {}) {
    super();
    const u = new URL(url);
    if (u.protocol === "http:") u.protocol = "ws:";
    if (u.protocol === "https:") u.protocol = "wss:";
    if (u.pathname === "/") u.pathname = "/ws";
    if (opts.token !== undefined) u.searchParams.set("token", opts.token);
    this.url = u.toString();
    this.id = null;
    this.session = null;
    this.state = "closed";
    /** Rooms this client sits in, by name. */
    this.rooms = new Map();
    this._meta = opts.meta;
    this._WebSocket = opts.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError("no WebSocket: pass one as the WebSocket option (e.g. the ws package's)");
    }
    const rc = opts.reconnect ?? {};
    this._reconnect = rc === false ? null : { minMs: rc.minMs ?? 250, maxMs: rc.maxMs ?? 10000 };
    this._timeoutMs = opts.requestTimeoutMs ?? 10000;
    this._queueMax = opts.queueMax ?? 100;
    this._ws = null;
    this._rid = 0;
    this._pending = new Map(); // rid -> entry, for requests sent or queued
    this._queue = []; // entries waiting for the connection
    this._matching = new Map(); // queue name -> match entry, after `queued`
    this._matched = new Map(); // room name -> match entry, after `matched`
    this._connecting = null; // {resolve, reject} of connect()
    this._welcome = null; // the current connection's welcome, once it came
    this._attempt = 0;
    this._retryTimer = null;
    this._retryMs = null; // from `closing`
    this._openTimer = null;
    this._beat = null;
    this._lastRx = 0;
    this._lastError = null;
  }

  /** Opens the connection; resolves to the `welcome` message. Rejects with
   * code "unauthorized" (HTTP 401), "refused" (close 1008) or
   * "connect_failed" when the first connection fails: a first connection is
   * not retried. While reconnecting, resolves once connected again. */
  connect() {
    if (this.state === "connected") return Promise.resolve(this._welcome);
    if (this._connecting) return this._connecting.promise;
    if (this.state === "reconnecting") {
      // Already on its way back: wait for it rather than start over.
      return new Promise((resolve, reject) => {
        const off = this.on("state", (state) => {
          if (state === "connected") {
            off();
            resolve(this._welcome);
          } else if (state === "closed") {
            off();
            reject(new RoomdError("closed", "the client stopped reconnecting"));
          }
        });
      });
    }
    let resolve, reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this._connecting = { promise, resolve, reject };
    this.session = null;
    this._attempt = 0;
    this._setState("connecting");
    this._open();
    return promise;
  }

  /** Closes for good (close code 1000: the server frees every seat at once).
   * Pending requests reject with code "closed". */
  close() {
    const ws = this._ws;
    this._detach();
    if (ws) {
      try {
        ws.close(1000);
      } catch {
        // Already closing.
      }
    }
    this._shutdown({ code: 1000, reason: "closed by the client" });
  }

  /** Creates a room; resolves to its Room (or, with join: false, to its
   * name). Without a name the server picks one. */
  async create(name, { max, private: priv, props, autostart, join, idleMs, meta } = {}) {
    const msg = { t: "create" };
    if (name != null) msg.room = name;
    if (max !== undefined) msg.max = max;
    if (priv) msg.private = true;
    if (props) msg.props = encodeProps(props);
    if (autostart) msg.autostart = true;
    if (idleMs !== undefined) msg.idle_ms = idleMs;
    if (join === false) msg.join = false;
    if (meta !== undefined) putBytes(msg, "meta", meta);
    return this._request(msg, { meta });
  }

  /** Joins a room; resolves to its Room once the snapshot arrived. */
  async join(name, { meta } = {}) {
    const msg = { t: "join", room: name };
    if (meta !== undefined) putBytes(msg, "meta", meta);
    return this._request(msg, { meta });
  }

  /** Waits in matchmaking queue `queue` for `size` players; resolves to the
   * Room once `matched` and its `joined` arrived. Rejects with code
   * "match_timeout" after `waitMs` (the server's default when absent). */
  async match(queue, { size, rating, waitMs } = {}) {
    const msg = { t: "match", queue, size };
    if (rating !== undefined) msg.rating = rating;
    if (waitMs !== undefined) msg.wait_ms = waitMs;
    return this._request(msg, { match: true });
  }

  /** Leaves a matchmaking queue; the pending match() rejects with
   * "unmatched". */
  async unmatch(queue) {
    await this._request({ t: "unmatch", queue });
    const e = this._matching.get(queue);
    if (e) {
      this._matching.delete(queue);
      e.done(new RoomdError("unmatched", `left queue ${queue}`));
    }
  }

  /** Public rooms: resolves to [{room, members, max, state}]. `filter`:
   * {state, hasSpace, limit}. */
  async list(filter = {}) {
    const msg = { t: "list" };
    if (filter.state !== undefined) msg.state = filter.state;
    const hasSpace = filter.hasSpace ?? filter.has_space;
    if (hasSpace !== undefined) msg.has_space = hasSpace;
    if (filter.limit !== undefined) msg.limit = filter.limit;
    const reply = await this._request(msg);
    return reply.rooms;
  }

  /** A round trip; resolves to the time it took in milliseconds. */
  async ping() {
    const t0 = Date.now();
    await this._request({ t: "ping" });
    return Date.now() - t0;
  }

  // -------------------------------------------------------------------------
  // Requests

  _nextRid() {
    this._rid = this._rid >= 0xffffffff ? 1 : this._rid + 1;
    return this._rid;
  }

  /** Sends `msg` with a fresh rid (now, or after the reconnect); resolves
   * with the reply (a Room for create/join/match). */
  _request(msg, opts = {}) {
    return new Promise((resolve, reject) => {
      if (this.state === "closed") {
        reject(new RoomdError("closed", "the client is closed; call connect() first"));
        return;
      }
      const done = (err, value) => (err ? reject(err) : resolve(value));
      const e = this._entry(msg, done, opts);
      if (this.state === "connected") {
        this._transmit(e);
      } else if (this._queue.length >= this._queueMax) {
        this._settle(e, new RoomdError("queue_full", `${this._queueMax} requests already wait for the connection`));
      } else {
        this._queue.push(e);
      }
    });
  }

  /** The library's own requests during a resume: sent at once on the open
   * connection, answered by synchronous callback. */
  _call(msg, done, opts = {}) {
    const e = this._entry(msg, done, { ...opts, internal: true });
    this._transmit(e);
    return e;
  }

  _entry(msg, done, opts) {
    const rid = this._nextRid();
    const e = { rid, msg: { ...msg, rid }, done, sent: false, timer: null, ...opts };
    if (this._timeoutMs > 0) {
      e.timer = setTimeout(() => {
        this._settle(e, new RoomdError("timeout", `no reply to ${msg.t} within ${this._timeoutMs} ms`));
      }, this._timeoutMs);
    }
    this._pending.set(rid, e);
    return e;
  }

  _transmit(e) {
    e.sent = true;
    this._sendRaw(e.msg);
  }

  /** Sends `msg` on the current connection; a connection going down (its
   * close event settles what was sent) or gone (after close()) takes
   * nothing. */
  _sendRaw(msg) {
    try {
      this._ws?.send(JSON.stringify(msg));
    } catch {
      // Closing.
    }
  }

  /** Ends entry `e` once: with an error, or with `value`. */
  _settle(e, err, value) {
    if (this._pending.get(e.rid) !== e) return;
    this._pending.delete(e.rid);
    clearTimeout(e.timer);
    const i = this._queue.indexOf(e);
    if (i >= 0) this._queue.splice(i, 1);
    e.done(err, value);
  }

  /** The Room for a `joined`, created or refreshed. */
  _seat(m, meta) {
    let room = this.rooms.get(m.room);
    if (!room) {
      room = new Room(this, m.room);
      this.rooms.set(m.room, room);
    }
    if (meta !== undefined) room._meta = meta;
    room._snapshot(m, false);
    return room;
  }

  _forget(room) {
    if (this.rooms.get(room.name) === room) this.rooms.delete(room.name);
  }

  // -------------------------------------------------------------------------
  // The connection

  _setState(state, info = {}) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", state, info);
  }

  _open() {
    this._welcome = null;
    this._lastError = null;
    let ws;
    try {
      ws = new this._WebSocket(this.url, PROTOCOL);
    } catch (err) {
      this._lastError = err;
      queueMicrotask(() => this._onClose(null, 1006, String(err?.message ?? err)));
      return;
    }
    this._ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onmessage = (ev) => this._onFrame(ws, ev.data);
    ws.onerror = (ev) => {
      if (this._ws === ws) this._lastError = ev;
    };
    ws.onclose = (ev) => this._onClose(ws, ev.code, ev.reason);
    // A connect that hangs (a dead route) counts as failed.
    this._openTimer = setTimeout(() => this._lose(ws, "no welcome in time"), this._timeoutMs);
  }

  /** Drops `ws` without waiting for its closing handshake. */
  _lose(ws, reason) {
    if (this._ws !== ws) return;
    try {
      ws.close(4000);
    } catch {
      // Nothing to close.
    }
    this._onClose(ws, 1006, reason);
  }

  /** Stops listening to the current connection. */
  _detach() {
    clearTimeout(this._openTimer);
    clearInterval(this._beat);
    clearTimeout(this._retryTimer);
    this._beat = null;
    this._retryTimer = null;
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onmessage = null;
      ws.onclose = null;
      ws.onerror = () => {};
    }
  }

  _onFrame(ws, data) {
    if (this._ws !== ws) return;
    if (typeof data !== "string") data = new TextDecoder().decode(data);
    let m;
    try {
      m = JSON.parse(data);
    } catch {
      return;
    }
    this._lastRx = Date.now();
    this._emit("message", m);
    if (m.t === "welcome") {
      this._onWelcome(m);
      return;
    }
    if (m.rid !== undefined && this._onReply(m)) return;
    switch (m.t) {
      case "joined": {
        const match = this._matched.get(m.room);
        if (match) {
          this._matched.delete(m.room);
          match.done(null, this._seat(m));
        }
        return;
      }
      case "matched": {
        const e = this._matching.get(m.queue);
        if (e) {
          this._matching.delete(m.queue);
          this._matched.set(m.room, e);
        }
        return;
      }
      case "match_timeout": {
        const e = this._matching.get(m.queue);
        if (e) {
          this._matching.delete(m.queue);
          e.done(new RoomdError("match_timeout", `no match in queue ${m.queue}`));
        }
        return;
      }
      case "closing":
        this._retryMs = m.retry_ms;
        return;
      case "err":
        this._emit("error", new RoomdError(m.code, m.msg, m));
        return;
    }
    if (m.room !== undefined) this.rooms.get(m.room)?._deliver(m);
  }

  /** A reply carrying a rid; returns whether it was one of ours. */
  _onReply(m) {
    const e = this._pending.get(m.rid);
    if (!e) return false;
    switch (m.t) {
      case "err":
        this._settle(e, new RoomdError(m.code, m.msg, m));
        return true;
      case "created":
        // `joined` (same rid) follows unless the request said join: false.
        if (e.msg.join === false) this._settle(e, null, m.room);
        return true;
      case "joined":
        if (e.onJoined) this._settle(e, null, m);
        else this._settle(e, null, this._seat(m, e.meta));
        return true;
      case "queued":
        if (e.match) {
          // The reply is in; the match itself may take up to wait_ms.
          this._pending.delete(e.rid);
          clearTimeout(e.timer);
          this._matching.set(m.queue, e);
          return true;
        }
        break;
      case "left":
      case "ok":
      case "pong":
      case "rooms":
      case "resumed":
        this._settle(e, null, m);
        return true;
    }
    // Not a reply after all (e.g. a broadcast); let the caller route it.
    return false;
  }

  _onWelcome(m) {
    clearTimeout(this._openTimer);
    this._welcome = m;
    this._startHeartbeat(m.hb_ms);
    if (this.session !== null && this.state === "reconnecting") {
      this._resume(m);
      return;
    }
    this.id = m.id;
    this.session = m.session;
    if (this._meta !== undefined) {
      const hello = { t: "hello" };
      putBytes(hello, "meta", this._meta);
      this._sendRaw(hello);
    }
    this._connected();
    const c = this._connecting;
    this._connecting = null;
    c?.resolve(m);
  }

  _connected() {
    this._attempt = 0;
    this._retryMs = null;
    this._setState("connected");
    const queue = this._queue;
    this._queue = [];
    for (const e of queue) this._transmit(e);
  }

  /** Resumes the session on a new connection (see Reconnect in the README). */
  _resume(welcome) {
    const last = {};
    for (const [name, room] of this.rooms) last[name] = room.seq;
    const hello = { t: "hello", resume: this.session, last };
    if (this._meta !== undefined) putBytes(hello, "meta", this._meta);
    const ws = this._ws;
    this._call(hello, (err, m) => {
      if (this._ws !== ws) return; // that connection is gone; the next resumes
      if (err && err.code === "timeout") {
        this._lose(ws, "no answer to resume");
        return;
      }
      if (err) {
        // The session is gone (past the grace period, or another server):
        // the welcome's fresh session goes on, and every room is joined anew.
        this.id = welcome.id;
        this.session = welcome.session;
        for (const room of [...this.rooms.values()]) this._resync(room, false);
      } else {
        this.id = m.id ?? this.id;
        const rooms = m.rooms ?? {};
        for (const room of [...this.rooms.values()]) {
          const st = rooms[room.name];
          if (st && st.closed !== undefined) {
            this._forget(room);
            room.state = "closed";
            room._emit("closed", { why: st.closed });
          } else {
            this._resync(room, st?.recovered === true);
          }
        }
        for (const name of Object.keys(rooms)) {
          if (this.rooms.has(name) || rooms[name].closed !== undefined) continue;
          const match = this._matched.get(name);
          if (match) {
            // Matched just before the drop: the seat is ours, take the room.
            this._matched.delete(name);
            const room = new Room(this, name);
            this.rooms.set(name, room);
            this._resync(room, false, match);
          } else {
            // A create or join whose reply was lost with the connection (its
            // promise rejected "disconnected"): give the seat back.
            this._sendRaw({ t: "leave", room: name });
          }
        }
      }
      // A match whose room did not come back with the session.
      for (const e of this._matched.values()) {
        e.done(new RoomdError("disconnected", "the connection dropped before the match's room was joined"));
      }
      this._matched.clear();
      if (this._ws === ws) this._connected();
    });
  }

  /** Rejoins `room` for a fresh snapshot, then emits "recovered". */
  _resync(room, recovered, match) {
    const msg = { t: "join", room: room.name };
    if (room._meta !== undefined) putBytes(msg, "meta", room._meta);
    const ws = this._ws;
    this._call(
      msg,
      (err, m) => {
        if (this._ws !== ws || this.rooms.get(room.name) !== room) return;
        if (err && err.code === "timeout") {
          this._lose(ws, "no answer to a rejoin");
          return;
        }
        if (err) {
          this._forget(room);
          room.state = "closed";
          room._emit("closed", { why: "lost", code: err.code });
          match?.done(err);
          return;
        }
        room._snapshot(m, !match);
        room._emit("recovered", { recovered });
        match?.done(null, room);
      },
      { onJoined: true },
    );
  }

  _startHeartbeat(hbMs) {
    clearInterval(this._beat);
    const every = Math.max(100, hbMs || 5000);
    this._lastRx = Date.now();
    const ws = this._ws;
    // Browsers hide WebSocket pings, so the library pings when idle; a
    // connection silent for three intervals is treated as dropped.
    this._beat = setInterval(() => {
      const idle = Date.now() - this._lastRx;
      if (idle >= 3 * every) {
        this._lose(ws, "no traffic for three heartbeat intervals");
      } else if (idle >= every) {
        try {
          ws.send('{"t":"ping"}');
        } catch {
          // Closing; the close event follows.
        }
      }
    }, every);
  }

  _onClose(ws, code, reason) {
    if (ws !== null && this._ws !== ws) return;
    const hadWelcome = this._welcome !== null;
    const err = this._lastError;
    this._detach();
    const info = { code, reason };
    // Requests that went out on this connection may or may not have run.
    for (const e of [...this._pending.values()]) {
      if (e.sent) {
        this._settle(e, new RoomdError("disconnected", `connection closed (${code}) before the reply to ${e.msg.t}`));
      }
    }
    for (const e of this._matching.values()) {
      e.done(new RoomdError("disconnected", `connection closed (${code}) while waiting in queue`));
    }
    this._matching.clear();
    const unauthorized = /\b401\b/.test(String(err?.message ?? err?.error?.message ?? ""));
    if (this.state === "connecting" && !hadWelcome) {
      // The first connection failed: tell connect(), do not retry.
      const codeName = unauthorized ? "unauthorized" : code === 1008 ? "refused" : "connect_failed";
      this._shutdown(info, new RoomdError(codeName, `could not connect to ${this.url} (${code} ${reason ?? ""})`.trim()));
      return;
    }
    if (!this._reconnect || FINAL_CLOSE.has(code) || unauthorized) {
      this._shutdown(info);
      return;
    }
    this._setState("reconnecting", info);
    if (this.state !== "reconnecting") return; // a listener called close()
    let delay;
    if (code === 1001 && this._retryMs != null) {
      // The server is shutting down and said when to come back; a little
      // jitter spreads its clients out.
      delay = this._retryMs + Math.random() * this._reconnect.minMs;
      this._retryMs = null;
    } else {
      const cap = Math.min(this._reconnect.maxMs, this._reconnect.minMs * 2 ** this._attempt);
      delay = Math.random() * cap;
      this._attempt++;
    }
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      this._open();
    }, delay);
  }

  /** Stops for good: every pending request rejects. */
  _shutdown(info, connectErr) {
    this._detach();
    const queued = [...this._pending.values()];
    for (const e of queued) this._settle(e, new RoomdError("closed", "the client is closed"));
    for (const e of this._matching.values()) e.done(new RoomdError("closed", "the client is closed"));
    for (const e of this._matched.values()) e.done(new RoomdError("closed", "the client is closed"));
    this._matching.clear();
    this._matched.clear();
    this.rooms.clear();
    this._setState("closed", info);
    const c = this._connecting;
    this._connecting = null;
    c?.reject(connectErr ?? new RoomdError("closed", "closed before the connection was up"));
  }
}
