// Several nodes in web/static/starling.js: the join skips a node that is
// down, a reconnection goes through the other nodes in turn (resume, or a
// fresh join that publishes again where the session is unknown), a node
// that shuts down is left for the next one, and a resume through another
// node of a cluster (newConnections) sets up new connections.

import test from 'node:test';
import assert from 'node:assert/strict';
import {until, FakeWebSocket, FakePC, participant, lib} from './fakes.mjs';

const A = 'ws://127.0.0.1:7900/v1/rtc';
const B = 'ws://127.0.0.1:7901/v1/rtc';
const C = 'ws://127.0.0.1:7902/v1/rtc';
const fast = {reconnectDelays: [1], reconnectTimeout: 2000};

function newClient(url, options = {}) {
  FakePC.all = [];
  return new lib.StarlingClient(url, {WebSocket: FakeWebSocket, RTCPeerConnection: FakePC, requestTimeout: 500, leaveTimeout: 100, ...fast, ...options});
}

const joinResult = (id, token) => ({participant: participant(id, 'Ann'), room: {name: 'room1', sid: 'RM_1'}, participants: [participant('PB', 'Bob')], resumeToken: token});

/** Waits for a socket to `url`, other than `old`, that sent n join requests. */
async function socketTo(url, old, n = 1) {
  await until(() => FakeWebSocket.last !== old && FakeWebSocket.last.url === url && FakeWebSocket.last.requests('join').length >= n, `a join on ${url}`);
  return FakeWebSocket.last;
}

/** A client of A and B joined through A (options: the client's). */
async function joinedOnA(options = {}) {
  const client = newClient([A, B], options);
  const joining = client.join('room1', {name: 'Ann'});
  const ws = await socketTo(A, null);
  ws.reply(ws.requests('join')[0], joinResult('PA', 'rt'));
  await joining;
  return {client, ws};
}

/** A client joined through B (A is down), publishing a microphone. */
async function joinedOnB() {
  FakeWebSocket.refuseURLs = new Set([A]);
  const client = newClient(`${A}, ${B}`);
  const joining = client.join('room1', {name: 'Ann'});
  const ws = await socketTo(B, null);
  ws.reply(ws.requests('join')[0], joinResult('PA', 'rt'));
  await joining;
  FakeWebSocket.refuseURLs = new Set();
  await until(() => ws.requests('offer').length === 1, 'first offer');
  ws.reply(ws.requests('offer')[0], {sdp: 'a1', tracks: []});
  const mic = {id: 'mic-1', kind: 'audio', enabled: true};
  const publishing = client.publish(mic, {name: 'microphone'});
  await until(() => ws.requests('offer').length === 2, 'offer with the track');
  ws.reply(ws.requests('offer')[1], {sdp: 'a2', tracks: [{id: 'TR_a', cid: 'mic-1', participantId: 'PA', kind: 'audio', source: 'microphone'}]});
  await publishing;
  return {client, ws, mic};
}

test('the URL list: comma-separated, arrays, options.urls, http → ws, no duplicates', () => {
  assert.deepEqual(lib.serverURLs('http://127.0.0.1:7900/v1/rtc, ws://127.0.0.1:7901/v1/rtc', [B, 'wss://x.example/v1/rtc']),
    [A, B, 'wss://x.example/v1/rtc']);
  assert.deepEqual(lib.serverURLs([A, B]), [A, B]);
  const c = newClient(A, {urls: [B, C]});
  assert.deepEqual(c.urls, [A, B, C]);
  assert.equal(c.url, A);
});

test('the join skips a node that is down', async () => {
  const {client} = await joinedOnB();
  assert.equal(client.url, B);
  assert.equal(client.state, 'joined');
  client.leave();
});

test('all nodes down: the join fails', async () => {
  FakeWebSocket.refuseURLs = new Set([A, B]);
  try {
    const client = newClient([A, B]);
    await assert.rejects(client.join('room1', {name: 'Ann'}), {code: 0});
    assert.equal(client.state, 'closed');
  } finally {
    FakeWebSocket.refuseURLs = new Set();
  }
});

test('a refusal (4xx) is not retried on the next node', async () => {
  const client = newClient([A, B]);
  const joining = client.join('room1', {name: 'Ann'});
  const ws = await socketTo(A, null);
  ws.push({jsonrpc: '2.0', id: ws.requests('join')[0].id, error: {code: 401, message: 'bad token'}});
  await assert.rejects(joining, {code: 401});
  assert.equal(FakeWebSocket.last, ws, 'no socket to B');
});

test('a draining node (503) passes the join to the next node', async () => {
  const client = newClient([A, B]);
  const joining = client.join('room1', {name: 'Ann'});
  const ws = await socketTo(A, null);
  ws.push({jsonrpc: '2.0', id: ws.requests('join')[0].id, error: {code: 503, message: 'server is shutting down (draining): join through another node'}});
  const wsB = await socketTo(B, ws);
  wsB.reply(wsB.requests('join')[0], joinResult('PA', 'rt'));
  await joining;
  assert.equal(client.url, B);
  client.leave();
});

test('a 503 from every node: the join is tried again, then succeeds', async () => {
  const client = newClient(A);
  const joining = client.join('room1', {name: 'Ann'});
  const ws = await socketTo(A, null);
  ws.push({jsonrpc: '2.0', id: ws.requests('join')[0].id, error: {code: 503, message: 'server is shutting down (draining): join through another node'}});
  const again = await socketTo(A, ws);
  again.reply(again.requests('join')[0], joinResult('PA', 'rt'));
  await joining;
  assert.equal(client.state, 'joined');
  client.leave();

  // Not beyond joinRetryTimeout.
  const late = newClient(A, {joinRetryTimeout: 0});
  const j2 = late.join('room1', {name: 'Ann'});
  const ws2 = await socketTo(A, again);
  ws2.push({jsonrpc: '2.0', id: ws2.requests('join')[0].id, error: {code: 503, message: 'busy'}});
  await assert.rejects(j2, {code: 503});
});

test('the node dies: resume through the next node, refused there, rejoin and publish again', async () => {
  const {client, ws, mic} = await joinedOnB();
  const seen = [];
  client.on('reconnected', (d) => seen.push(d));
  FakeWebSocket.refuseURLs = new Set([B]); // B is gone: the next attempt starts with B, then A
  ws.close(1006);
  const wsA = await socketTo(A, ws);
  FakeWebSocket.refuseURLs = new Set();
  assert.deepEqual(wsA.requests('join')[0].params, {room: 'room1', name: 'Ann', resume: 'rt'});
  wsA.push({jsonrpc: '2.0', id: wsA.requests('join')[0].id, error: {code: 404, message: 'resume: unknown or expired resume token'}});
  await until(() => wsA.requests('join').length === 2, 'a fresh join on A');
  wsA.reply(wsA.requests('join')[1], joinResult('PA2', 'rt2'));
  await until(() => client.state === 'joined', 'joined on A');
  assert.equal(client.url, A);
  assert.equal(client.participantId, 'PA2');
  await until(() => wsA.requests('offer').length === 1, 'offer that publishes again');
  assert.deepEqual(wsA.requests('offer')[0].params.tracks, [{trackId: 'mic-1', source: 'microphone', name: 'microphone'}]);
  assert.equal(FakePC.all.at(-2).transceivers[0].sender.track, mic);
  assert.deepEqual(seen, [{resumed: false, url: A, newConnections: true}]);
  client.leave();
});

test('a node that shuts down: no leave for the app, the session goes on at the next node', async () => {
  const {client, ws} = await joinedOnA();
  const left = [];
  client.on('leave', (d) => left.push(d));
  ws.push({jsonrpc: '2.0', method: 'leave', params: {reason: 'serverShutdown'}});
  ws.close(1000);
  const wsB = await socketTo(B, ws);
  assert.equal(wsB.requests('join')[0].params.resume, 'rt');
  wsB.reply(wsB.requests('join')[0], {...joinResult('PA', 'rt2'), newConnections: true});
  await until(() => client.state === 'joined', 'joined on B');
  assert.deepEqual(left, []);
  assert.equal(client.url, B);
  client.leave();

  // With one node, a shutdown still ends the session.
  const single = newClient(A);
  const j2 = single.join('room1', {name: 'Ann'});
  const ws2 = await socketTo(A, wsB);
  ws2.reply(ws2.requests('join')[0], joinResult('PA', 'rt'));
  await j2;
  const left2 = [];
  single.on('leave', (d) => left2.push(d));
  ws2.push({jsonrpc: '2.0', method: 'leave', params: {reason: 'serverShutdown'}});
  assert.deepEqual(left2, [{reason: 'serverShutdown'}]);
  assert.equal(single.state, 'closed');
});

test('a resume with newConnections keeps the participant and sets up new connections', async () => {
  const {client, ws, mic} = await joinedOnB();
  const seen = [];
  for (const type of ['participantLeft', 'participantJoined', 'reconnected']) client.on(type, (d) => seen.push([type, d]));
  const pcs = FakePC.all.length;
  ws.close(1006);
  const ws2 = await socketTo(B, ws); // B first: it was the node joined
  assert.equal(ws2.requests('join')[0].params.resume, 'rt');
  ws2.reply(ws2.requests('join')[0], {...joinResult('PA', 'rt2'), participants: [participant('PB', 'Bob'), participant('PC', 'Cy')], newConnections: true});
  await until(() => client.state === 'joined', 'joined again');
  assert.equal(client.participantId, 'PA');
  assert.equal(client.resumeToken, 'rt2');
  assert.equal(FakePC.all.length, pcs + 2, 'two new peer connections');
  assert.ok(FakePC.all.slice(0, pcs).every((pc) => pc.closed), 'the old ones are closed');
  await until(() => ws2.requests('offer').length === 1, 'a new publisher offer');
  assert.deepEqual(ws2.requests('offer')[0].params.tracks, [{trackId: 'mic-1', source: 'microphone', name: 'microphone'}]);
  assert.equal(FakePC.all.at(-2).transceivers[0].sender.track, mic);
  assert.deepEqual(seen.map(([t, d]) => [t, d.participant?.id ?? d.resumed]),
    [['participantJoined', 'PC'], ['reconnected', true]]);
  assert.equal(seen.at(-1)[1].newConnections, true);
  client.leave();
});

test('a node that never answers is given up after connectTimeout', async () => {
  FakeWebSocket.hangURLs = new Set([A]);
  try {
    const client = newClient([A, B], {connectTimeout: 20});
    const joining = client.join('room1', {name: 'Ann'});
    const hung = FakeWebSocket.last;
    assert.equal(hung.url, A);
    const ws = await socketTo(B, hung);
    assert.equal(hung.readyState, 3, 'the hung socket is closed');
    ws.reply(ws.requests('join')[0], joinResult('PA', 'rt'));
    await joining;
    assert.equal(client.url, B);
    client.leave();
  } finally {
    FakeWebSocket.hangURLs = new Set();
  }
});

test('a node that goes silent is noticed by the heartbeat and left for the next one', async () => {
  const {client, ws} = await joinedOnA({heartbeat: 30});
  // A live node answers the pings: the session stays.
  for (let i = 0; i < 3; i++) {
    await until(() => ws.requests('ping').length > i, `ping ${i + 1}`);
    ws.reply(ws.requests('ping')[i], {});
  }
  assert.equal(client.state, 'joined');
  // Then the node goes silent (no close, no answer).
  const seen = [];
  client.on('reconnecting', (d) => seen.push(d));
  const wsB = await socketTo(B, ws);
  assert.match(seen[0].reason, /did not answer a ping/);
  assert.equal(ws.readyState, 3, 'the silent socket is closed');
  assert.equal(wsB.requests('join')[0].params.resume, 'rt');
  client.leave();
});

test('reconnect {reason: drain}: the session resumes through the next node, the draining one is not tried', async () => {
  const {client, ws} = await joinedOnA();
  const left = [];
  const unknown = [];
  client.on('leave', (d) => left.push(d));
  client.on('notification', (d) => unknown.push(d));
  const before = FakeWebSocket.count;
  const oldPeers = [client.publisher, client.subscriber];
  ws.push({jsonrpc: '2.0', method: 'reconnect', params: {reason: 'drain'}});
  ws.close(1000);
  const wsB = await socketTo(B, ws);
  assert.equal(FakeWebSocket.count, before + 1, 'one new socket, to B');
  assert.equal(wsB.requests('join')[0].params.resume, 'rt');
  wsB.reply(wsB.requests('join')[0], {...joinResult('PA', 'rt2'), newConnections: true});
  await until(() => client.state === 'joined', 'joined on B');
  assert.equal(client.participantId, 'PA');
  assert.deepEqual(left, []);
  assert.deepEqual(unknown, []);
  // Make-before-break: the drained node's connections stay open (it relays
  // what they send until the others take it from B) until it closes them.
  assert.ok(oldPeers.every((pc) => !pc.closed), 'the old connections are kept while the new ones take over');
  assert.notEqual(client.publisher, oldPeers[0]);
  oldPeers[0].connectionState = 'closed';
  oldPeers[0].onconnectionstatechange?.({});
  assert.ok(oldPeers[0].closed && !oldPeers[1].closed, 'the one its node closed is let go');
  client.leave();
  await until(() => oldPeers[1].closed, 'the other old connection closed at leave');
});
