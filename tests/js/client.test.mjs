// roomd.js in Node against a real roomd (target/release/roomd, or $ROOMD_BIN),
// over the `ws` package's WebSocket. Connection drops are made by a TCP
// proxy the test controls.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import WebSocket from "ws";
import { Client, RoomdError } from "../../src/web/roomd.js";
import { next, quiet, rejectsWith, startProxy, startServer, until } from "./harness.mjs";

/** Clients and proxies of the running test, closed after it. */
const open = [];

function client(url, opts = {}) {
  const c = new Client(url, { WebSocket, reconnect: { minMs: 10, maxMs: 100 }, ...opts });
  open.push(c);
  return c;
}

async function connected(url, opts) {
  const c = client(url, opts);
  await c.connect();
  return c;
}

async function proxyTo(server) {
  const p = await startProxy(server.port);
  open.push(p);
  return p;
}

afterEach(async () => {
  for (const x of open.splice(0)) await x.close();
});

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

/** Two clients named alice and bob in a fresh room `name` (alice owns it). */
async function pair(name) {
  const a = await connected(server.url, { meta: "alice" });
  const b = await connected(server.url, { meta: "bob" });
  const ra = await a.create(name);
  const seen = next(ra, "presence", (p) => p.join?.id === b.id);
  const rb = await b.join(name);
  await seen;
  return { a, b, ra, rb };
}

describe("connection", () => {
  test("connect resolves on welcome; state goes connecting, connected, closed", async () => {
    const c = client(server.url);
    const states = [];
    c.on("state", (s) => states.push(s));
    assert.equal(c.state, "closed");
    const welcome = await c.connect();
    assert.equal(c.state, "connected");
    assert.equal(c.id, welcome.id);
    assert.ok(c.id > 0);
    assert.match(welcome.server, /^roomd\//);
    c.close();
    assert.deepEqual(states, ["connecting", "connected", "closed"]);
    await rejectsWith(c.list(), "closed");
  });

  test("an HTTP URL and a bare origin reach /ws", async () => {
    const c = await connected(server.http);
    assert.equal(c.state, "connected");
    assert.equal(typeof (await c.ping()), "number");
  });

  test("auth failure: connect rejects with unauthorized and does not retry", async () => {
    const guarded = await startServer(["--jwt-key", "secret"]);
    try {
      const c = client(guarded.url);
      const err = await rejectsWith(c.connect(), "unauthorized");
      assert.ok(err instanceof RoomdError);
      assert.equal(c.state, "closed");
    } finally {
      await guarded.stop();
    }
  });
});

describe("rooms", () => {
  test("create and join: the members map and presence follow joins and leaves", async () => {
    const a = await connected(server.url, { meta: "alice" });
    const b = await connected(server.url, { meta: "bob" });
    const c = await connected(server.url, { meta: "carol" });
    const ra = await a.create("members-1", { max: 4 });
    assert.equal(ra.name, "members-1");
    assert.deepEqual([...ra.members], [[a.id, "alice"]]);
    assert.equal(ra.owner, a.id);
    assert.equal(ra.state, "waiting");
    assert.equal(a.rooms.get("members-1"), ra);

    const bobSeen = next(ra, "presence", (p) => p.join !== undefined);
    const rb = await b.join("members-1");
    assert.deepEqual((await bobSeen).join, { id: b.id, meta: "bob" });
    assert.deepEqual([...rb.members.keys()], [a.id, b.id], "join order");
    assert.equal(ra.members.get(b.id), "bob");

    // A join's meta wins over the hello's for that room.
    const carolSeen = next(rb, "presence", (p) => p.join?.id === c.id);
    await c.join("members-1", { meta: "carol the third" });
    await carolSeen;
    assert.equal(rb.members.get(c.id), "carol the third");
    assert.equal(ra.members.size, 3);

    const bobLeft = next(ra, "presence", (p) => p.leave !== undefined);
    await rb.leave();
    assert.deepEqual(await bobLeft, { room: "members-1", leave: b.id, why: "left" });
    assert.deepEqual([...ra.members.keys()], [a.id, c.id]);
    assert.equal(b.rooms.has("members-1"), false);

    // The owner leaving hands the room to the member seated longest.
    const aliceLeft = next(c.rooms.get("members-1"), "presence", (p) => p.leave === a.id);
    await ra.leave();
    await aliceLeft;
    assert.equal(c.rooms.get("members-1").owner, c.id);
  });

  test("create with join: false resolves to the name; a server-picked name", async () => {
    const a = await connected(server.url);
    assert.equal(await a.create("nojoin-1", { join: false }), "nojoin-1");
    assert.equal(a.rooms.size, 0);
    const picked = await a.create(null);
    assert.match(picked.name, /^r-[0-9a-f]{16}$/);
  });

  test("list: public rooms with their figures, not private ones", async () => {
    const a = await connected(server.url);
    await a.create("list-public", { max: 4 });
    await a.create("list-private", { private: true });
    const rooms = await a.list();
    const mine = rooms.find((r) => r.room === "list-public");
    assert.deepEqual(
      { members: mine.members, max: mine.max, state: mine.state },
      { members: 1, max: 4, state: "waiting" },
    );
    assert.equal(rooms.some((r) => r.room === "list-private"), false);
    const playing = await a.list({ state: "playing" });
    assert.equal(playing.some((r) => r.room === "list-public"), false);
    assert.ok((await a.list({ limit: 1 })).length <= 1);
  });

  test("props and state: compare-and-set, conflict carries ver, owner-only state", async () => {
    const { ra, rb } = await pair("props-1");
    const ver0 = ra.ver;
    const seen = next(rb, "props");
    const { ver } = await ra.setProps({ map: "dust", mode: "ffa" }, { expect: ver0 });
    assert.equal(ver, ver0 + 1);
    assert.deepEqual(await seen, { set: { map: "dust", mode: "ffa" }, ver });
    assert.deepEqual(rb.props, { map: "dust", mode: "ffa" });
    assert.equal(rb.ver, ver);

    const err = await rejectsWith(rb.setProps({ map: "nuke" }, { expect: ver0 }), "conflict");
    assert.equal(err.ver, ver, "a conflict carries the current ver");

    const deleted = next(ra, "props");
    await rb.setProps({ mode: null });
    await deleted;
    assert.deepEqual(ra.props, { map: "dust" });

    await rejectsWith(rb.setState("playing"), "forbidden");
    const stateSeen = next(rb, "state");
    const st = await ra.setState("playing");
    assert.deepEqual(await stateSeen, { state: "playing", ver: st.ver });
    assert.equal(rb.state, "playing");
    await rejectsWith(ra.setState("waiting"), "invalid_state");
  });

  test("errors reject with the protocol's code", async () => {
    const a = await connected(server.url);
    const missing = await rejectsWith(a.join("no-such-room"), "not_found");
    assert.ok(missing.message.length > 0);
    await a.create("errors-1");
    await rejectsWith(a.create("errors-1"), "exists");
    await rejectsWith(a.join("bad name!"), "bad_request");
    const b = await connected(server.url);
    const rb = await b.join("errors-1");
    await rb.leave();
    await rejectsWith(rb.publish("after leaving"), "not_member");
  });

  test("match: two clients are seated in one room; alone, match_timeout", async () => {
    const a = await connected(server.url, { meta: "alice" });
    const b = await connected(server.url, { meta: "bob" });
    const [ra, rb] = await Promise.all([a.match("duel", { size: 2 }), b.match("duel", { size: 2 })]);
    assert.equal(ra.name, rb.name);
    assert.deepEqual(new Set(ra.members.keys()), new Set([a.id, b.id]));
    assert.equal(rb.members.get(a.id), "alice");
    const got = next(rb, "msg");
    await ra.publish("gg");
    assert.equal((await got).data, "gg");

    const c = await connected(server.url);
    await rejectsWith(c.match("lonely", { size: 2, waitMs: 50 }), "match_timeout");
  });
});

describe("messages", () => {
  test("publish: seq, echo and string data; send: to one member, no seq", async () => {
    const { a, b, ra, rb } = await pair("pub-1");
    const got = [];
    rb.on("msg", (m) => got.push(m));
    assert.deepEqual(await ra.publish("hello"), { seq: 1 });
    assert.equal(ra.seq, 1, "the sender's own seq counts as seen");
    const echoed = next(ra, "msg");
    assert.deepEqual(await ra.publish("again", { echo: true }), { seq: 2 });
    assert.deepEqual(await echoed, { from: a.id, seq: 2, data: "again" });
    await ra.send(b.id, "psst");
    await until(rb, "msg", () => got.length === 3);
    assert.deepEqual(got, [
      { from: a.id, seq: 1, data: "hello" },
      { from: a.id, seq: 2, data: "again" },
      { from: a.id, to: b.id, data: "psst" },
    ]);
    assert.equal(rb.seq, 2);
  });

  test("bytes: invalid UTF-8 travels as data64 and arrives as a Uint8Array", async () => {
    const { a, b, ra, rb } = await pair("bin-1");
    const wire = [];
    b.on("message", (m) => m.t === "msg" && wire.push(m));
    const got = [];
    rb.on("msg", (m) => got.push(m));

    const binary = new Uint8Array([0, 255, 254, 1, 128, 10]);
    const big = new Uint8Array(40000).map((_, i) => (i * 7919) & 0xff);
    const utf8 = new TextEncoder().encode("héllo ✓");
    await ra.publish(binary);
    await ra.publish(big);
    await ra.publish(utf8);
    await ra.send(b.id, binary);
    await until(rb, "msg", () => got.length === 4);

    assert.ok(got[0].data instanceof Uint8Array);
    assert.deepEqual(got[0].data, binary);
    assert.deepEqual(got[1].data, big);
    assert.equal(got[2].data, "héllo ✓", "valid UTF-8 bytes go as data and arrive as a string");
    assert.deepEqual(got[3].data, binary);
    assert.equal(typeof wire[0].data64, "string");
    assert.equal(wire[0].data, undefined);
    assert.equal(typeof wire[2].data, "string");

    // Props values and meta follow the same rule.
    const seen = next(ra, "props");
    await rb.setProps({ blob: binary, text: "plain" });
    await seen;
    assert.deepEqual(ra.props.blob, binary);
    assert.equal(ra.props.text, "plain");
    const c = await connected(server.url, { meta: new Uint8Array([0xff, 0]) });
    const joined = next(ra, "presence", (p) => p.join?.id === c.id);
    await c.join("bin-1");
    assert.deepEqual((await joined).join.meta, new Uint8Array([0xff, 0]));
  });
});

describe("requests", () => {
  test("a request with no reply rejects with timeout; one cut off, with disconnected", async () => {
    const proxy = await proxyTo(server);
    const c = await connected(proxy.url, { requestTimeoutMs: 200 });
    proxy.stall();
    const t0 = Date.now();
    await rejectsWith(c.ping(), "timeout");
    assert.ok(Date.now() - t0 >= 190, "not before requestTimeoutMs");
    proxy.unstall();
    assert.equal(typeof (await c.ping()), "number", "the connection still works");

    proxy.stall();
    const inFlight = c.list();
    proxy.cut();
    await rejectsWith(inFlight, "disconnected");
  });

  test("while reconnecting, requests wait (bounded in number and time)", async () => {
    const proxy = await proxyTo(server);
    const c = await connected(proxy.url, { requestTimeoutMs: 300, queueMax: 2 });
    proxy.block();
    const down = next(c, "state", (s) => s === "reconnecting");
    proxy.cut();
    await down;
    const first = c.ping();
    const second = c.list();
    await rejectsWith(c.ping(), "queue_full");
    await rejectsWith(first, "timeout");
    await rejectsWith(second, "timeout");

    const waiting = c.list();
    const up = next(c, "state", (s) => s === "connected");
    proxy.unblock();
    await up;
    assert.ok(Array.isArray(await waiting), "a queued request went out after the resume");
  });
});

describe("reconnect", () => {
  test("a cut in the middle of a stream: every message arrives once and in order", async () => {
    const busy = await startServer(["--history", "2000"]);
    try {
      const proxy = await proxyTo(busy);
      const rx = await connected(proxy.url, { meta: "rx" });
      const tx = await connected(busy.url, { meta: "tx" });
      const rroom = await rx.create("stream");
      const troom = await tx.join("stream");

      // The receiver's connection is cut after its 300th message and stays
      // down while 50 more are published (they can only come as a replay).
      const N = 1000;
      const CUT_AT = 300;
      const GAP = 50;
      const got = [];
      const recovered = [];
      const states = [];
      let published = 0;
      let publishedAtCut = null;
      rx.on("state", (s) => states.push(s));
      rroom.on("recovered", (r) => recovered.push(r));
      rroom.on("msg", (m) => {
        got.push(m);
        if (got.length === CUT_AT) {
          publishedAtCut = published;
          proxy.block();
          proxy.cut();
        }
      });
      const sent = (async () => {
        for (let i = 1; i <= N; i++) {
          await troom.publish(`m${i}`);
          published = i;
          if (publishedAtCut !== null && published === publishedAtCut + GAP) proxy.unblock();
        }
      })();
      await until(rroom, "msg", () => got.length >= N, 20000);
      await sent;
      await until(rroom, "recovered", () => recovered.length > 0);

      assert.ok(publishedAtCut < N - GAP, `the cut came mid-stream (at ${publishedAtCut} published)`);
      assert.deepEqual(got.map((m) => m.seq), Array.from({ length: N }, (_, i) => i + 1));
      assert.deepEqual(got.map((m) => m.data), Array.from({ length: N }, (_, i) => `m${i + 1}`));
      assert.ok(got.every((m) => m.from === tx.id));
      assert.deepEqual(recovered, [{ recovered: true }]);
      assert.deepEqual(states, ["reconnecting", "connected"]);
      assert.equal(rroom.seq, N);
      assert.deepEqual(new Set(rroom.members.keys()), new Set([rx.id, tx.id]));
    } finally {
      await busy.stop();
    }
  });

  test("away and back: others see the drop; requests made meanwhile go out after the resume", async () => {
    const proxy = await proxyTo(server);
    const a = await connected(server.url, { meta: "alice" });
    const b = await connected(proxy.url, { meta: "bob" });
    const ra = await a.create("away-1");
    const rb = await b.join("away-1");
    const bobId = b.id;

    proxy.block();
    const away = next(ra, "presence", (p) => p.away === bobId);
    const down = next(b, "state", (s) => s === "reconnecting");
    proxy.cut();
    await Promise.all([away, down]);
    assert.ok(ra.away.has(bobId));

    const got = next(ra, "msg");
    const published = rb.publish("sent while away");
    const back = next(ra, "presence", (p) => p.back === bobId);
    const recovered = next(rb, "recovered");
    const reconnected = b.connect();
    proxy.unblock();
    await reconnected;
    assert.equal(b.state, "connected", "connect() while reconnecting waits for it");
    await back;
    assert.deepEqual(await recovered, { recovered: true });
    assert.equal(b.id, bobId, "the session and its id survive");
    assert.deepEqual(await published, { seq: 1 });
    assert.equal((await got).data, "sent while away");
    assert.equal(ra.away.has(bobId), false);
  });

  test("past the history: recovered false, and a fresh snapshot of the room", async () => {
    const small = await startServer(["--history", "4"]);
    try {
      const proxy = await proxyTo(small);
      const a = await connected(small.url, { meta: "alice" });
      const b = await connected(proxy.url, { meta: "bob" });
      const ra = await a.create("resync-1");
      const rb = await b.join("resync-1");
      const got = [];
      const presence = [];
      rb.on("msg", (m) => got.push(m));
      rb.on("presence", (p) => presence.push(p));
      await ra.publish("before");
      await until(rb, "msg", () => got.length === 1);

      proxy.block();
      const away = next(ra, "presence", (p) => p.away === b.id);
      proxy.cut();
      await away;
      for (let i = 0; i < 10; i++) await ra.publish(`missed ${i}`);
      await ra.setProps({ topic: "new" });
      const c = await connected(small.url, { meta: "carol" });
      await c.join("resync-1");

      const recovered = next(rb, "recovered");
      proxy.unblock();
      assert.deepEqual(await recovered, { recovered: false });
      assert.equal(rb.seq, 11, "the snapshot's seq");
      assert.deepEqual(rb.props, { topic: "new" });
      assert.equal(rb.members.get(c.id), "carol");
      assert.ok(presence.some((p) => p.join?.id === c.id && p.resync === true), "a resync join for carol");

      await ra.publish("after");
      await until(rb, "msg", () => got.length === 2);
      assert.deepEqual(got.map((m) => [m.seq, m.data]), [[1, "before"], [12, "after"]]);
    } finally {
      await small.stop();
    }
  });

  test("past the grace period: a fresh session joins its rooms again", async () => {
    const short = await startServer(["--grace-ms", "200"]);
    try {
      const proxy = await proxyTo(short);
      const a = await connected(short.url, { meta: "alice" });
      const b = await connected(proxy.url, { meta: "bob" });
      const ra = await a.create("grace-1");
      const rb = await b.join("grace-1");
      const oldId = b.id;

      proxy.block();
      const gone = next(ra, "presence", (p) => p.leave === oldId);
      proxy.cut();
      assert.equal((await gone).why, "disconnect");

      const rejoined = next(ra, "presence", (p) => p.join !== undefined);
      const recovered = next(rb, "recovered");
      proxy.unblock();
      assert.deepEqual(await recovered, { recovered: false });
      const { join } = await rejoined;
      assert.notEqual(b.id, oldId, "a new session, a new id");
      assert.deepEqual(join, { id: b.id, meta: "bob" }, "the hello's meta carried over");
      assert.deepEqual([...rb.members.keys()], [a.id, b.id]);
      assert.equal(b.rooms.get("grace-1"), rb);
    } finally {
      await short.stop();
    }
  });

  test("heartbeat: an idle connection is kept, a silent one is dropped and resumed", async () => {
    const fast = await startServer(["--hb-ms", "100", "--hb-misses", "50"]);
    try {
      const proxy = await proxyTo(fast);
      const c = await connected(proxy.url);
      const room = await c.create("silent-1");
      const id = c.id;
      await quiet(500);
      assert.equal(c.state, "connected", "the library's pings keep an idle connection");
      assert.equal(proxy.accepted, 1);

      const down = next(c, "state", (s) => s === "reconnecting");
      const recovered = next(room, "recovered");
      proxy.freeze();
      const [, info] = await down;
      assert.match(info.reason, /no traffic for three heartbeat intervals/);
      assert.deepEqual(await recovered, { recovered: true });
      assert.equal(c.id, id, "the same session, taken over from the frozen connection");
      proxy.cut(); // the frozen connection would hold the server's drain
    } finally {
      await fast.stop();
    }
  });

  test("close 4003: another connection took the session; no retry", async () => {
    const proxy = await proxyTo(server);
    const c = await connected(proxy.url);
    await c.create("replaced-1");
    const closed = next(c, "state", (s) => s === "closed");
    const thief = new WebSocket(server.url, "roomd.v1.json");
    open.push({ close: () => thief.close() });
    thief.on("message", (d) => {
      if (JSON.parse(d).t === "welcome") thief.send(JSON.stringify({ t: "hello", resume: c.session }));
    });
    const [, info] = await closed;
    assert.equal(info.code, 4003);
    await quiet(300);
    assert.equal(proxy.accepted, 1, "no reconnect after 4003");
    assert.equal(c.state, "closed");
  });

  test("close 1001: waits retry_ms, then comes back to the server that replaced it", async () => {
    const first = await startServer();
    const proxy = await proxyTo(first);
    const c = await connected(proxy.url, { meta: "x" });
    const room = await c.create("restart-1");
    const oldSession = c.session;
    let t0 = 0;
    const down = next(c, "state", (s) => s === "reconnecting" && (t0 = Date.now()) > 0);
    const lost = next(room, "closed");
    await first.stop("SIGTERM");
    const [, info] = await down;
    assert.equal(info.code, 1001);

    const second = await startServer();
    try {
      proxy.retarget(second.port);
      await next(proxy.events, "connection");
      const waited = Date.now() - t0;
      assert.ok(waited >= 900, `reconnected after ${waited} ms, retry_ms is 1000`);
      await until(c, "state", () => c.state === "connected");
      assert.notEqual(c.session, oldSession, "the new server has never seen the session");
      assert.deepEqual(await lost, { why: "lost", code: "not_found" });
    } finally {
      await second.stop();
    }
  });
});
