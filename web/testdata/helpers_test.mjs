// The client library's helpers (simulcast encodings, adaptive subscription,
// connection quality, replaceTrack) and the app's pure helpers in ui.js.

import test from 'node:test';
import assert from 'node:assert/strict';
import {lib, ui, until, FakeWebSocket, joined, subscriberOffer} from './fakes.mjs';

const {simulcastLayers, videoRequest, qualityScore} = lib;

test('simulcastLayers: rids q/h/f at 1/4, 1/2, 1/1 with size hints', () => {
  const {sendEncodings, layers} = simulcastLayers(1280, 720);
  assert.deepEqual(sendEncodings.map((e) => [e.rid, e.scaleResolutionDownBy, e.active]), [['q', 4, true], ['h', 2, true], ['f', 1, true]]);
  assert.ok(sendEncodings.every((e, i) => i === 0 || e.maxBitrate > sendEncodings[i - 1].maxBitrate));
  assert.deepEqual(layers, [{rid: 'q', width: 320, height: 180}, {rid: 'h', width: 640, height: 360}, {rid: 'f', width: 1280, height: 720}]);
  assert.equal(simulcastLayers(undefined, undefined).layers, undefined, 'no hints without a size');
});

test('publish with simulcast sends three encodings and announces the layers', async () => {
  const {client, ws, pub} = await joined();
  await until(() => ws.requests('offer').length === 1, 'first offer');
  ws.reply(ws.requests('offer')[0], {sdp: 'a1', tracks: []});
  const cam = {id: 'cam', kind: 'video', enabled: true, getSettings: () => ({width: 640, height: 360})};
  const p = client.publish(cam, {source: 'camera', simulcast: true});
  await until(() => ws.requests('offer').length === 2, 'offer with the camera');
  assert.deepEqual(pub.transceivers[0].init.sendEncodings.map((e) => e.rid), ['q', 'h', 'f']);
  assert.deepEqual(ws.requests('offer')[1].params.tracks, [{trackId: 'cam', source: 'camera', layers: [
    {rid: 'q', width: 160, height: 90}, {rid: 'h', width: 320, height: 180}, {rid: 'f', width: 640, height: 360}]}]);
  ws.reply(ws.requests('offer')[1], {sdp: 'a2', tracks: [{id: 'TR_v', cid: 'cam', participantId: 'PA', kind: 'video'}]});
  await p;

  // Another camera replaces it without an offer, and keeps the mute state.
  cam.enabled = false;
  const cam2 = {id: 'cam2', kind: 'video', enabled: true};
  await client.replaceTrack(cam, cam2);
  assert.equal(pub.transceivers[0].sender.track, cam2);
  assert.equal(cam2.enabled, false);
  assert.equal(client._findLocal('cam2').info.id, 'TR_v');
  await assert.rejects(client.replaceTrack(cam2, {id: 'mic', kind: 'audio'}), {code: -32602});
  assert.equal(ws.requests('offer').length, 2);
  client.leave();
});

test('videoRequest: paused when unseen, else a cap with slack rounded to 32', () => {
  assert.deepEqual(videoRequest({width: 0, height: 0}), {paused: true});
  assert.deepEqual(videoRequest({width: 640, height: 360, visible: false}), {paused: true});
  assert.deepEqual(videoRequest({width: 160, height: 90}), {paused: false, maxWidth: 256, maxHeight: 160});
  assert.deepEqual(videoRequest({width: 640, height: 360}), {paused: false, maxWidth: 960, maxHeight: 544});
  assert.deepEqual(videoRequest({width: 640, height: 360, pixelRatio: 2}), {paused: false, maxWidth: 1920, maxHeight: 1088});
  assert.deepEqual(videoRequest({width: 10, height: 5, slack: 1}), {paused: false, maxWidth: 32, maxHeight: 32});
});

test('setVideoSize merges changes and sends only what differs', async () => {
  const {client, ws, sub} = await joined({}, {subscriptionDelay: 5});
  ws.push({jsonrpc: '2.0', method: 'offer', params: {sdp: subscriberOffer([{kind: 'video', mid: '0', participantId: 'PB', trackId: 'TR_v'}])}});
  await until(() => client.remoteTracks.has('TR_v'), 'remote track');
  const reqs = () => ws.requests('setSubscription');
  const answer = async (n) => { await until(() => reqs().length === n, `setSubscription #${n}`); ws.reply(reqs()[n - 1], {}); };

  client.setVideoSize('TR_v', {width: 100, height: 50});
  const done = client.setVideoSize('TR_v', {width: 640, height: 360}); // within the delay: merged
  await answer(1);
  await done;
  assert.deepEqual(reqs()[0].params, {trackId: 'TR_v', paused: false, maxWidth: 960, maxHeight: 544});
  await client.setVideoSize('TR_v', {width: 630, height: 355}); // same cap after rounding: nothing sent
  assert.equal(reqs().length, 1);
  const hiding = client.setVideoSize('TR_v', {width: 640, height: 360, visible: false});
  await answer(2);
  await hiding;
  assert.deepEqual(reqs()[1].params, {trackId: 'TR_v', paused: true});
  const failing = client.setVideoSize('TR_v', {width: 160, height: 90});
  await until(() => reqs().length === 3, 'third');
  ws.push({jsonrpc: '2.0', id: reqs()[2].id, error: {code: 404, message: 'unknown track'}});
  await failing;
  const again = client.setVideoSize('TR_v', {width: 160, height: 90}); // a failure is retried on the next call
  await answer(4);
  await again;
  assert.deepEqual(reqs()[3].params, {trackId: 'TR_v', paused: false, maxWidth: 256, maxHeight: 160});
  await client.setVideoSize('TR_nope', {width: 160, height: 90}); // not subscribed: nothing sent
  assert.equal(reqs().length, 4);
  assert.ok(sub);
  client.leave();
});

test('qualityScore thresholds', () => {
  assert.equal(qualityScore({lossRate: 0, rttMs: 20, jitterMs: 2}), 'excellent');
  assert.equal(qualityScore({lossRate: 0.03, rttMs: 20}), 'good');
  assert.equal(qualityScore({rttMs: 300}), 'good');
  assert.equal(qualityScore({lossRate: 0.2}), 'poor');
  assert.equal(qualityScore({jitterMs: 150}), 'poor');
  assert.equal(qualityScore({packets: 0, expecting: true}), 'lost');
  assert.equal(qualityScore({packets: 0, expecting: false}), 'excellent');
});

test('connectionQuality rates each participant from stats deltas', async () => {
  const {client, ws, sub, pub} = await joined();
  ws.push({jsonrpc: '2.0', method: 'offer', params: {sdp: subscriberOffer([
    {kind: 'audio', mid: '0', participantId: 'PB', trackId: 'TR_a'}, {kind: 'video', mid: '1', participantId: 'PB', trackId: 'TR_v'}])}});
  await until(() => client.remoteTracks.size === 2, 'remote tracks');
  const inbound = (mid, received, lost, bytes) => ({type: 'inbound-rtp', mid, packetsReceived: received, packetsLost: lost, bytesReceived: bytes, jitter: 0.004});
  const pair = {id: 'CP', type: 'candidate-pair', currentRoundTripTime: 0.03, nominated: true, state: 'succeeded'};
  sub.stats = [inbound('0', 100, 0, 10000), inbound('1', 300, 0, 300000), pair, {type: 'transport', selectedCandidatePairId: 'CP'}];
  pub.stats = [{type: 'outbound-rtp', packetsSent: 500, bytesSent: 1e5}, {type: 'remote-inbound-rtp', packetsLost: 0, jitter: 0.002, roundTripTime: 0.04}];
  let q = await client.connectionQuality();
  assert.equal(q.get('PB').score, 'excellent');
  assert.equal(q.get('PB').rttMs, 30);
  assert.equal(q.get('PA').rttMs, 40);
  // 50 lost of 200 → 25 % loss: poor.
  sub.stats = [inbound('0', 150, 20, 15000), inbound('1', 400, 30, 400000), pair, {type: 'transport', selectedCandidatePairId: 'CP'}];
  q = await client.connectionQuality();
  assert.equal(q.get('PB').packets, 150);
  assert.equal(q.get('PB').lossRate, 0.25);
  assert.equal(q.get('PB').score, 'poor');
  // Nothing more arrives though the tracks are not muted: lost.
  q = await client.connectionQuality();
  assert.equal(q.get('PB').score, 'lost');
  client.leave();
});

test('ui.gridLayout picks the column count that makes tiles largest', () => {
  assert.deepEqual(ui.gridLayout({width: 1000, height: 600, count: 1, gap: 0}), {cols: 1, rows: 1, tileWidth: 1000, tileHeight: 562});
  assert.equal(ui.gridLayout({width: 1280, height: 600, count: 2, gap: 10}).cols, 2);
  assert.equal(ui.gridLayout({width: 380, height: 700, count: 2, gap: 10}).cols, 1, 'a phone stacks them');
  const g = ui.gridLayout({width: 1280, height: 720, count: 9, gap: 10});
  assert.deepEqual([g.cols, g.rows], [3, 3]);
  assert.ok(g.tileWidth * 3 + 20 <= 1280 && g.tileHeight * 3 + 20 <= 720);
  assert.equal(ui.gridLayout({width: 0, height: 0, count: 3}).cols, 1);
});

test('ui.pickFeatured: pinned, then screen share, then speaker', () => {
  const tiles = ['PB', 'PC', 'PC/screen/TR_s'];
  assert.equal(ui.pickFeatured({tiles}), 'PB');
  assert.equal(ui.pickFeatured({tiles, lastSpeaker: 'PC'}), 'PC');
  assert.equal(ui.pickFeatured({tiles, speaking: ['PX', 'PC'], lastSpeaker: 'PB'}), 'PC');
  assert.equal(ui.pickFeatured({tiles, speaking: ['PB'], screens: ['PC/screen/TR_s']}), 'PC/screen/TR_s');
  assert.equal(ui.pickFeatured({tiles, pinned: 'PB', screens: ['PC/screen/TR_s']}), 'PB');
  assert.equal(ui.pickFeatured({tiles, pinned: 'gone'}), 'PB');
  assert.equal(ui.pickFeatured({tiles: []}), null);
});

test('ui chat messages: our JSON form, plain text from others, other JSON ignored', () => {
  assert.deepEqual(ui.chatDecode(ui.chatEncode('hi <b>there</b>')), {text: 'hi <b>there</b>'});
  assert.deepEqual(ui.chatDecode('hello from a Go client'), {text: 'hello from a Go client'});
  assert.deepEqual(ui.chatDecode('{not json'), {text: '{not json'});
  assert.equal(ui.chatDecode('{"type":"cursor","x":1}'), null);
  assert.equal(ui.chatDecode(undefined), null);
  assert.equal(JSON.parse(ui.chatEncode('x'.repeat(5000))).text.length, 4000);
});

test('ui messages for join errors, leave reasons and media errors', () => {
  assert.match(ui.joinErrorMessage({code: 413}, 'r').title, /full/);
  assert.match(ui.joinErrorMessage({code: 401}, 'r').title, /not valid/);
  assert.equal(ui.joinErrorMessage({code: 401}, 'r').retry, false);
  assert.match(ui.joinErrorMessage({code: 0, message: 'connection closed'}, 'r').title, /reach the server/);
  assert.match(ui.joinErrorMessage({code: 500, message: 'internal error'}, 'r').detail, /internal error/);
  assert.equal(ui.joinErrorMessage({code: 503, message: 'server is shutting down (draining): join through another node'}, 'r').retry, true);
  assert.match(ui.leaveMessage('clientLeave'), /You left/);
  assert.match(ui.leaveMessage('reconnectFailed'), /could not be restored/);
  assert.match(ui.leaveMessage('duplicate'), /another tab or device/); // the server's reason (PROTOCOL.md)
  assert.match(ui.leaveMessage('roomFull'), /filled up/);
  assert.match(ui.leaveMessage('rejected: token expired'), /token expired/);
  assert.match(ui.mediaErrorMessage('NotAllowedError'), /can’t see or hear you.*blocked.*site settings/);
  assert.match(ui.mediaErrorMessage('NotFoundError', {hasAudio: true}), /^Your camera is off: no camera/);
  assert.equal(ui.mediaErrorMessage(null), null);
  assert.equal(ui.mediaErrorMessage('NotReadableError', {hasAudio: true, hasVideo: true}), null);
});

test('ui small helpers', () => {
  assert.equal(ui.initials('ann lee'), 'AL');
  assert.equal(ui.initials('  bob '), 'B');
  assert.equal(ui.initials(''), '?');
  assert.equal(ui.initials('émile zola smith'), 'ÉS');
  assert.match(ui.randomRoomName(() => 0.5), /^[a-z]+-[a-z]+-\d\d$/);
  assert.equal(ui.qualityLabel(null), 'Connection: measuring…');
  assert.equal(ui.qualityLabel({score: 'good', rttMs: 120, lossRate: 0.031}), 'Connection: good, 120 ms round trip, 3.1% loss');
  assert.ok(FakeWebSocket);
});
