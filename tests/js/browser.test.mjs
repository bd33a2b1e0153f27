// The demo page served by roomd, in headless Chromium: two tabs chat and see
// each other come, speak and go away; two more are matched into one room.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Browser } from "./cdp.mjs";
import { startServer } from "./harness.mjs";

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await Browser.launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** The demo as `name`, once its client is connected. */
async function demo(name) {
  const page = await browser.open(`${server.http}/?name=${encodeURIComponent(name)}`);
  await page.waitFor(`() => document.getElementById("status").textContent === "connected"`);
  return page;
}

/** Source of a predicate: the member list names `name`, with `away` state. */
function member(name, away = false) {
  return `() => [...document.querySelectorAll("#members li")].some(
    (li) => li.textContent.startsWith(${JSON.stringify(name)}) && li.dataset.away === "${away}")`;
}

function logHas(line) {
  return `() => [...document.querySelectorAll("#log li")].some((li) => li.textContent === ${JSON.stringify(line)})`;
}

test("two tabs of the demo chat and see each other's presence", async () => {
  const alice = await demo("alice");
  await alice.eval(`document.getElementById("room-name").value = "demo-chat";
    document.getElementById("create").click()`);
  await alice.waitFor(`() => !document.getElementById("chat").hidden
    && document.getElementById("chat-title").textContent === "demo-chat"`);
  await alice.waitFor(member("alice (you)"));

  // Bob finds the room in the list of public rooms and joins from there.
  const bob = await demo("bob");
  await bob.waitFor(`() => [...document.querySelectorAll("#rooms tr")].some(
    (tr) => tr.firstChild.textContent === "demo-chat")`);
  await bob.eval(`[...document.querySelectorAll("#rooms tr")]
    .find((tr) => tr.firstChild.textContent === "demo-chat").querySelector("button").click()`);
  await bob.waitFor(member("alice"));
  await bob.waitFor(member("bob (you)"));
  await alice.waitFor(member("bob"));
  await alice.waitFor(logHas("bob joined"));

  await alice.eval(`document.getElementById("text").value = "hi bob";
    document.getElementById("say").requestSubmit()`);
  await bob.waitFor(logHas("alice: hi bob"));
  await bob.eval(`document.getElementById("text").value = "hi alice";
    document.getElementById("say").requestSubmit()`);
  await alice.waitFor(logHas("bob: hi alice"));
  const order = await alice.eval(`[...document.querySelectorAll("#log li:not(.event)")].map((li) => li.textContent)`);
  assert.deepEqual(order, ["alice: hi bob", "bob: hi alice"]);

  // Bob's tab goes away: alice sees him away (his seat is kept for the grace period).
  await bob.close();
  await alice.waitFor(member("bob", true));
  await alice.waitFor(logHas("bob is away"));
  await alice.close();
});

test("two tabs that find a match land in the same room", async () => {
  const carol = await demo("carol");
  const dave = await demo("dave");
  await carol.eval(`document.getElementById("match").click()`);
  await carol.waitFor(`() => document.getElementById("match-status").textContent !== ""`);
  await dave.eval(`document.getElementById("match").click()`);
  const inRoom = `() => !document.getElementById("chat").hidden
    && document.getElementById("chat-title").textContent.startsWith("r-")`;
  await carol.waitFor(inRoom);
  await dave.waitFor(inRoom);
  const rooms = await Promise.all([carol, dave].map((p) => p.eval(`document.getElementById("chat-title").textContent`)));
  assert.equal(rooms[0], rooms[1]);
  await carol.waitFor(member("dave"));
  await dave.waitFor(member("carol"));
  await carol.close();
  await dave.close();
});
