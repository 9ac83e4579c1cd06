// Reconnection state of web/static/starling.js: a lost socket is followed by
// join with resume (and an ICE restart), or by a fresh join that publishes
// the local tracks again; fatal errors and the timeout end the session.

import test from 'node:test';
import assert from 'node:assert/strict';
import {tick, until, FakeWebSocket, FakePC, participant, joined} from './fakes.mjs';

const fast = {reconnectDelays: [1], reconnectTimeout: 2000};

/** Records the events a client dispatches, in order. */
function recorder(client, types) {
  const seen = [];
  for (const type of types) client.on(type, (d) => seen.push([type, d]));
  return seen;
}

/** Waits for a socket other than `old` that has sent a join request; returns it. */
async function nextSocket(old, n = 1) {
  await until(() => FakeWebSocket.last !== old && FakeWebSocket.last.requests('join').length >= n, 'a new socket with a join');
  return FakeWebSocket.last;
}

test('a lost socket resumes with the resume token and restarts ICE', async () => {
  const {client, ws, pub} = await joined({}, fast);
  await until(() => ws.requests('offer').length === 1, 'first offer');
  ws.reply(ws.requests('offer')[0], {sdp: 'a1', tracks: []});
  const seen = recorder(client, ['stateChanged', 'reconnecting', 'reconnected', 'participantJoined', 'leave']);

  ws.close(1006);
  assert.equal(client.state, 'reconnecting');
  await assert.rejects(client.publish({id: 'x', kind: 'audio'}), {code: 409, message: 'reconnecting'});
  const ws2 = await nextSocket(ws);
  const join = ws2.requests('join')[0];
  assert.deepEqual(join.params, {room: 'room1', name: 'Ann', resume: 'rt'});

  // A notification that arrives before the join result waits for it.
  ws2.push({jsonrpc: '2.0', method: 'participantJoined', params: {participant: participant('PC', 'Cy')}});
  assert.equal(client.participants.has('PC'), false);
  ws2.reply(join, {participant: participant('PA', 'Ann'), room: {name: 'room1', sid: 'RM_1'}, participants: [participant('PB', 'Bob')], resumeToken: 'rt2'});
  await until(() => client.state === 'joined', 'joined again');
  assert.equal(client.resumeToken, 'rt2');
  assert.equal(client.participants.get('PC').name, 'Cy');
  assert.equal(client.participantId, 'PA');
  assert.equal(FakePC.all.length, 2, 'the peer connections are kept');

  await until(() => ws2.requests('offer').length === 1, 'ICE restart offer');
  assert.deepEqual(pub.offerOptions.at(-1), {iceRestart: true});
  assert.match(ws2.requests('offer')[0].params.sdp, /ice restart/);
  assert.equal(ws.requests('offer').length, 1, 'nothing more on the old socket');
  assert.deepEqual(seen.map(([t, d]) => t === 'stateChanged' ? `${d.previous}>${d.state}` : t),
    ['joined>reconnecting', 'reconnecting', 'reconnecting>joined', 'participantJoined', 'reconnected']);
  assert.deepEqual(seen.find(([t]) => t === 'reconnected')[1], {resumed: true, url: 'ws://127.0.0.1:7900/v1/rtc', newConnections: false});
  assert.equal(client.reconnectAttempt, 0);
  client.leave();
});

test('an unknown resume token rejoins as a new participant and publishes again', async () => {
  const {client, ws} = await joined({}, fast);
  await until(() => ws.requests('offer').length === 1, 'first offer');
  const mic = {id: 'mic-1', kind: 'audio', enabled: true};
  const publishing = client.publish(mic, {name: 'microphone'});
  ws.reply(ws.requests('offer')[0], {sdp: 'a1', tracks: []});
  await until(() => ws.requests('offer').length === 2, 'offer with the track');
  ws.reply(ws.requests('offer')[1], {sdp: 'a2', tracks: [{id: 'TR_a', cid: 'mic-1', participantId: 'PA', kind: 'audio', source: 'microphone'}]});
  await publishing;
  const muting = client.mute(mic, true);
  ws.reply(ws.requests('mute')[0], {});
  await muting;
  const seen = recorder(client, ['participantLeft', 'participantJoined', 'trackUnsubscribed', 'reconnected']);

  ws.close(1006);
  const ws2 = await nextSocket(ws);
  ws2.push({jsonrpc: '2.0', id: ws2.requests('join')[0].id, error: {code: 404, message: 'resume: unknown or expired resume token'}});
  await until(() => ws2.requests('join').length === 2, 'a fresh join on the same socket');
  assert.deepEqual(ws2.requests('join')[1].params, {room: 'room1', name: 'Ann'});
  ws2.reply(ws2.requests('join')[1], {participant: participant('PA2', 'Ann'), room: {name: 'room1', sid: 'RM_1'}, participants: [participant('PC', 'Cy')], resumeToken: 'rt3'});
  await until(() => client.state === 'joined', 'joined again');
  assert.equal(client.participantId, 'PA2');
  assert.equal(client.resumeToken, 'rt3');
  assert.equal(FakePC.all.length, 4, 'new peer connections');
  const [, , pub2] = FakePC.all;
  assert.equal(pub2.transceivers[0].sender.track, mic);
  assert.equal(mic.enabled, false, 'still muted locally');
  assert.deepEqual(pub2.channels.map((c) => c.label), ['data']);

  await until(() => ws2.requests('offer').length === 1, 'offer that publishes again');
  assert.deepEqual(ws2.requests('offer')[0].params.tracks, [{trackId: 'mic-1', source: 'microphone', name: 'microphone'}]);
  ws2.reply(ws2.requests('offer')[0], {sdp: 'a3', tracks: [{id: 'TR_a2', cid: 'mic-1', participantId: 'PA2', kind: 'audio', source: 'microphone'}]});
  await until(() => ws2.requests('mute').length === 1, 'the mute state restored');
  assert.deepEqual(ws2.requests('mute')[0].params, {trackId: 'TR_a2', muted: true});
  assert.deepEqual(seen.map(([t, d]) => [t, d.participantId ?? d.participant?.id ?? d.resumed]),
    [['participantLeft', 'PB'], ['participantJoined', 'PC'], ['reconnected', false]]);
  assert.equal(seen[0][1].reason, 'reconnect');
  client.leave();
});

test('a join error no retry can fix ends the session', async () => {
  const {client, ws} = await joined({}, fast);
  const left = [];
  client.on('leave', (d) => left.push(d));
  ws.close(1006);
  const ws2 = await nextSocket(ws);
  ws2.push({jsonrpc: '2.0', id: ws2.requests('join')[0].id, error: {code: 401, message: 'token expired'}});
  await until(() => client.state === 'closed', 'closed');
  assert.deepEqual(left, [{reason: 'rejected: token expired'}]);
  assert.equal(ws2.requests('join').length, 1, 'no fresh join after 401');
});

test('a server that stays down is retried until reconnectTimeout', async () => {
  const {client, ws} = await joined({}, {reconnectDelays: [1, 2, 5], reconnectTimeout: 60});
  const attempts = [];
  const left = [];
  client.on('reconnecting', ({attempt}) => attempts.push(attempt));
  client.on('leave', (d) => left.push(d));
  // The library times the retries with Date.now, and the test moves it: on
  // a starved machine the first attempt alone took longer than the 60 ms
  // (one attempt, then reconnectFailed).
  const realNow = Date.now;
  let now = realNow();
  Date.now = () => now;
  FakeWebSocket.refuse = true;
  try {
    const before = FakeWebSocket.count;
    ws.close(1006);
    await until(() => attempts.length >= 3, 'three attempts');
    assert.equal(client.state, 'reconnecting');
    now += 60;
    await until(() => client.state === 'closed', 'the client gives up once reconnectTimeout has passed');
    assert.deepEqual(left, [{reason: 'reconnectFailed'}]);
    assert.deepEqual(attempts, attempts.map((_, i) => i + 1));
    assert.equal(FakeWebSocket.count - before, attempts.length, 'one socket per attempt');
  } finally {
    Date.now = realNow;
    FakeWebSocket.refuse = false;
  }
});

test('leave while reconnecting stops the attempts', async () => {
  const {client, ws} = await joined({}, {reconnectDelays: [20], reconnectTimeout: 2000});
  const left = [];
  client.on('leave', (d) => left.push(d));
  const before = FakeWebSocket.count;
  ws.close(1006);
  await client.leave();
  assert.equal(client.state, 'closed');
  assert.deepEqual(left, [{reason: 'clientLeave'}]);
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(FakeWebSocket.count, before, 'no new socket');
});

test('a failed publisher connection restarts ICE', async () => {
  const {client, ws, pub} = await joined();
  await until(() => ws.requests('offer').length === 1, 'first offer');
  ws.reply(ws.requests('offer')[0], {sdp: 'a1', tracks: []});
  await tick();
  pub.connectionState = 'failed';
  pub.onconnectionstatechange();
  await until(() => ws.requests('offer').length === 2, 'restart offer');
  assert.deepEqual(pub.offerOptions.at(-1), {iceRestart: true});
  client.leave();
});
