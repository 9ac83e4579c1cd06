// Tests of web/static/starling.js against a scripted server and fake
// WebSocket / RTCPeerConnection objects. Run: node --test web/testdata/client_test.mjs
// (web_test.go runs it when node is installed).

import test from 'node:test';
import assert from 'node:assert/strict';
import {lib, tick, until, FakeWebSocket, FakeChannel, FakePC, subscriberOffer, participant, joined} from './fakes.mjs';

const {StarlingClient, StarlingError, parseMediaSections} = lib;

// ---- tests ----

test('join sends the params, builds both connections and offers the data channel', async () => {
  const {client, ws, pub, sub} = await joined({autoSubscribe: false});
  assert.equal(ws.url, 'ws://127.0.0.1:7900/v1/rtc');
  assert.deepEqual(ws.requests('join')[0].params, {room: 'room1', name: 'Ann', autoSubscribe: false});
  assert.equal(ws.requests('join')[0].jsonrpc, '2.0');
  assert.equal(client.state, 'joined');
  assert.equal(client.participantId, 'PA');
  assert.deepEqual([...client.participants.keys()], ['PB']);
  assert.deepEqual(pub.config.iceServers, [{urls: ['turn:127.0.0.1:3478'], username: 'u', credential: 'c'}]);
  assert.equal(pub.config.bundlePolicy, 'max-bundle', 'publisher: see publisherBundlePolicy');
  assert.equal(sub.config.bundlePolicy, 'max-bundle');
  assert.equal(sub.config.rtcpMuxPolicy, 'require');
  assert.deepEqual(pub.channels.map((c) => c.label), ['data']);

  await until(() => ws.requests('offer').length === 1, 'publisher offer');
  const offer = ws.requests('offer')[0];
  assert.deepEqual(offer.params.tracks, []);
  assert.match(offer.params.sdp, /offer/);
  // Local candidates go out after the offer, then the end-of-candidates null.
  await until(() => ws.notifications('candidate').length === 2, 'publisher candidates');
  const idx = (m) => ws.sent.indexOf(m);
  const [c1, end] = ws.notifications('candidate');
  assert.ok(idx(c1) > idx(offer));
  assert.equal(c1.params.target, 'publisher');
  assert.match(c1.params.candidate.candidate, /^candidate:/);
  assert.deepEqual(end.params, {target: 'publisher', candidate: null});

  // A server candidate before the answer waits for it.
  ws.push({jsonrpc: '2.0', method: 'candidate', params: {target: 'publisher', candidate: {candidate: 'candidate:9 1 udp 1 127.0.0.1 9 typ host', sdpMid: '0'}}});
  assert.equal(pub.added.length, 0);
  ws.reply(offer, {sdp: 'server answer', tracks: []});
  await until(() => pub.added.length === 1, 'publisher candidate added');
  assert.equal(pub.remoteDescription.sdp, 'server answer');
  client.leave();
});

test('publish announces the msid track id and serialises offers', async () => {
  const {client, ws, pub} = await joined();
  await until(() => ws.requests('offer').length === 1, 'first offer');
  const cam = {id: 'cam-1', kind: 'video', enabled: true};
  const mic = {id: 'mic-1', kind: 'audio', enabled: true};
  const pCam = client.publish(cam, {source: 'camera', name: 'Cam'});
  const pMic = client.publish(mic);
  await tick();
  assert.equal(ws.requests('offer').length, 1, 'one offer in flight at a time');
  ws.reply(ws.requests('offer')[0], {sdp: 'a1', tracks: []});
  await until(() => ws.requests('offer').length === 2, 'second offer');
  await tick();
  assert.equal(ws.requests('offer').length, 2, 'both tracks share the next offer');
  const second = ws.requests('offer')[1];
  assert.deepEqual(second.params.tracks, [{trackId: 'cam-1', source: 'camera', name: 'Cam'}, {trackId: 'mic-1', source: 'microphone'}]);
  assert.deepEqual(pub.transceivers.map((t) => t.direction), ['sendonly', 'sendonly']);
  ws.reply(second, {sdp: 'a2', tracks: [
    {id: 'TR_v', cid: 'cam-1', participantId: 'PA', kind: 'video', source: 'camera', layers: []},
    {id: 'TR_a', cid: 'mic-1', participantId: 'PA', kind: 'audio', source: 'microphone', layers: []},
  ]});
  assert.equal((await pCam).id, 'TR_v');
  assert.equal((await pMic).id, 'TR_a');

  const muting = client.mute(mic, true);
  assert.equal(mic.enabled, false);
  await until(() => ws.requests('mute').length, 'mute');
  const mute = ws.requests('mute')[0];
  assert.deepEqual(mute.params, {trackId: 'TR_a', muted: true});
  ws.reply(mute, {});
  await muting;
  assert.equal(client.localTracks.get('mic-1').info.muted, true);

  const unpublishing = client.unpublish('TR_v');
  await until(() => ws.requests('unpublish').length, 'unpublish');
  assert.deepEqual(ws.requests('unpublish')[0].params, {trackId: 'TR_v'});
  // Until the server answered, the sender stays and no offer stops sending
  // the track (the server must learn of the unpublish first).
  await tick();
  assert.deepEqual(pub.transceivers.map((t) => t.direction), ['sendonly', 'sendonly']);
  assert.equal(ws.requests('offer').length, 2, 'no offer before the unpublish result');
  ws.reply(ws.requests('unpublish')[0], {});
  await unpublishing;
  assert.deepEqual(pub.transceivers.map((t) => t.direction), ['inactive', 'sendonly']);
  await until(() => ws.requests('offer').length === 3, 'offer after unpublish');
  assert.deepEqual(ws.requests('offer')[2].params.tracks, []);
  client.leave();
});

test('a failed offer rejects publish with the server error and rolls back', async () => {
  const {client, ws, pub} = await joined();
  await until(() => ws.requests('offer').length === 1, 'first offer');
  ws.reply(ws.requests('offer')[0], {sdp: 'a1', tracks: []});
  const p = client.publish({id: 'cam', kind: 'video'});
  await until(() => ws.requests('offer').length === 2, 'second offer');
  ws.push({jsonrpc: '2.0', id: ws.requests('offer')[1].id, error: {code: 403, message: 'not allowed to publish'}});
  await assert.rejects(p, (err) => err instanceof StarlingError && err.code === 403 && err.message === 'not allowed to publish' && err.method === 'offer');
  assert.equal(client.localTracks.size, 0);
  assert.equal(pub.rollbacks, 1);
  // Rolled back, then offered again without the track.
  await until(() => ws.requests('offer').length === 3, 'offer after the failure');
  assert.deepEqual(ws.requests('offer')[2].params.tracks, []);
  assert.deepEqual(pub.transceivers.map((t) => t.direction), ['inactive']);
  client.leave();
});

test('subscriber offers map msid to participant and track, and are answered', async () => {
  const {client, ws, sub} = await joined();
  const tracks = [];
  const gone = [];
  client.on('track', (t) => tracks.push(t));
  client.on('trackUnsubscribed', (t) => gone.push(t));
  ws.push({jsonrpc: '2.0', method: 'offer', params: {sdp: subscriberOffer([
    {kind: 'audio', mid: '0', participantId: 'PB', trackId: 'TR_a'},
    {kind: 'video', mid: '1', participantId: 'PB', trackId: 'TR_v'},
  ])}});
  // A candidate right behind the offer is applied after it.
  ws.push({jsonrpc: '2.0', method: 'candidate', params: {target: 'subscriber', candidate: {candidate: 'candidate:7 1 udp 1 127.0.0.1 7 typ host', sdpMid: '0'}}});
  await until(() => ws.notifications('answer').length === 1, 'answer');
  assert.deepEqual(ws.notifications('answer')[0].params, {sdp: 'client answer'});
  assert.deepEqual(tracks.map((t) => [t.participantId, t.trackId, t.kind, t.track.id]),
    [['PB', 'TR_a', 'audio', '{browser-0}'], ['PB', 'TR_v', 'video', '{browser-1}']]);
  await until(() => sub.added.length === 1, 'subscriber candidate');
  await until(() => ws.notifications('candidate').some((c) => c.params.target === 'subscriber'), 'subscriber local candidate');
  const answerAt = ws.sent.indexOf(ws.notifications('answer')[0]);
  assert.ok(ws.sent.findIndex((m) => m.method === 'candidate' && m.params.target === 'subscriber') > answerAt);

  // The video goes inactive, the audio's transceiver is reused for another track.
  ws.push({jsonrpc: '2.0', method: 'offer', params: {sdp: subscriberOffer([
    {kind: 'audio', mid: '0', participantId: 'PC', trackId: 'TR_c'},
    {kind: 'video', mid: '1', direction: 'inactive'},
  ])}});
  await until(() => ws.notifications('answer').length === 2, 'second answer');
  assert.deepEqual(gone.map((t) => t.trackId).sort(), ['TR_a', 'TR_v']);
  assert.deepEqual(tracks.slice(2).map((t) => [t.participantId, t.trackId]), [['PC', 'TR_c']]);
  assert.deepEqual([...client.remoteTracks.keys()], ['TR_c']);
  client.leave();
});

test('room events update participants and reach listeners', async () => {
  const {client, ws} = await joined();
  const seen = [];
  for (const ev of ['participantJoined', 'participantLeft', 'trackPublished', 'trackUnpublished', 'activeSpeakers', 'notification']) {
    client.on(ev, (d) => seen.push([ev, d]));
  }
  const off = client.on('participantUpdated', () => seen.push(['updated']));
  off();
  ws.push({jsonrpc: '2.0', method: 'participantJoined', params: {participant: participant('PC', 'Cy')}});
  ws.push({jsonrpc: '2.0', method: 'participantUpdated', params: {participant: participant('PC', 'Cyd')}});
  ws.push({jsonrpc: '2.0', method: 'trackPublished', params: {track: {id: 'TR_x', participantId: 'PC', kind: 'video'}}});
  assert.equal(client.participants.get('PC').name, 'Cyd');
  assert.equal(client.trackInfo('TR_x').kind, 'video');
  ws.push({jsonrpc: '2.0', method: 'trackUnpublished', params: {trackId: 'TR_x', participantId: 'PC'}});
  assert.equal(client.trackInfo('TR_x'), null);
  ws.push({jsonrpc: '2.0', method: 'participantLeft', params: {participantId: 'PC', reason: 'clientLeave'}});
  ws.push({jsonrpc: '2.0', method: 'activeSpeakers', params: {speakers: [{participantId: 'PB', level: 0.5}]}});
  ws.push({jsonrpc: '2.0', method: 'somethingNew', params: {x: 1}});
  assert.deepEqual(seen.map(([ev]) => ev), ['participantJoined', 'trackPublished', 'trackUnpublished', 'participantLeft', 'activeSpeakers', 'notification']);
  assert.equal(seen[3][1].participant.name, 'Cyd');
  assert.equal(client.participants.has('PC'), false);
  client.leave();
});

test('data goes out on the publisher channel and comes in on the subscriber channel', async () => {
  const {client, sub, pub} = await joined();
  const got = [];
  client.on('data', (d) => got.push(d));
  const ch = new FakeChannel('data');
  sub.ondatachannel({channel: ch});
  ch.onmessage({data: JSON.stringify({from: 'PB', payload: 'hello'})});
  ch.onmessage({data: new TextEncoder().encode(JSON.stringify({from: 'PB', payload: 'bytes'})).buffer});
  assert.deepEqual(got, [{from: 'PB', payload: 'hello'}, {from: 'PB', payload: 'bytes'}]);

  const sending = client.sendData('hi there');
  await tick();
  assert.deepEqual(pub.channels[0].sent, []);
  pub.channels[0].open();
  await sending;
  assert.deepEqual(pub.channels[0].sent, ['hi there']);
  await assert.rejects(client.sendData('x'.repeat(16 * 1024 + 1)), (err) => err.code === 413);
  client.leave();
});

test('errors, unknown ids and timeouts', async () => {
  const {client, ws} = await joined();
  const errors = [];
  client.on('error', ({error}) => errors.push(error));
  const p = client.subscribe(['TR_nope']);
  const req = ws.requests('subscribe')[0];
  assert.deepEqual(req.params, {trackIds: ['TR_nope']});
  ws.push({jsonrpc: '2.0', id: req.id, error: {code: 404, message: 'unknown track TR_nope'}});
  await assert.rejects(p, {name: 'StarlingError', code: 404, message: 'unknown track TR_nope'});
  ws.push({jsonrpc: '2.0', id: null, error: {code: -32700, message: 'parse error'}});
  ws.onmessage({data: 'not json'});
  assert.deepEqual(errors.map((e) => e.code), [-32700, -32700]);
  await assert.rejects(client.ping(), {code: 0});
  client.leave();
});

test('leave sends leave, closes everything and emits leave', async () => {
  const {client, ws, pub, sub} = await joined();
  const left = [];
  client.on('leave', (d) => left.push(d));
  const p = client.leave();
  await until(() => ws.requests('leave').length, 'leave request');
  ws.reply(ws.requests('leave')[0], {});
  await p;
  assert.deepEqual(left, [{reason: 'clientLeave'}]);
  assert.equal(client.state, 'closed');
  assert.equal(ws.readyState, 3);
  assert.ok(pub.closed && sub.closed);
  await assert.rejects(client.publish({id: 'x', kind: 'audio'}), {code: 409});
});

test('server leave and a lost socket end the session', async () => {
  let {client, ws} = await joined();
  let left = [];
  client.on('leave', (d) => left.push(d));
  ws.push({jsonrpc: '2.0', method: 'leave', params: {reason: 'kicked'}});
  assert.deepEqual(left, [{reason: 'kicked'}]);

  ({client, ws} = await joined({}, {reconnect: false}));
  left = [];
  const errors = [];
  client.on('leave', (d) => left.push(d));
  client.on('error', ({error}) => errors.push(error));
  const pending = client.ping();
  ws.close(1006);
  await assert.rejects(pending, {code: 0});
  assert.deepEqual(left, [{reason: 'disconnected'}]);
  assert.equal(errors.length, 1);
});

test('a join error rejects with its code and message', async () => {
  const client = new StarlingClient('ws://127.0.0.1:1/v1/rtc', {WebSocket: FakeWebSocket, RTCPeerConnection: FakePC});
  const p = client.join('room1', {token: 'bad'});
  await until(() => FakeWebSocket.last?.requests('join').length, 'join request');
  const ws = FakeWebSocket.last;
  ws.push({jsonrpc: '2.0', id: ws.requests('join')[0].id, error: {code: 401, message: 'bad token'}});
  await assert.rejects(p, {code: 401, message: 'bad token', method: 'join'});
  assert.equal(client.state, 'closed');
  await assert.rejects(client.join('room1'), {code: 409});
});

test('publishLayers turns simulcast encodings on and off', async () => {
  const {client, ws, pub} = await joined();
  await until(() => ws.requests('offer').length === 1, 'first offer');
  const cam = {id: 'cam', kind: 'video'};
  const p = client.publish(cam, {sendEncodings: [{rid: 'q'}, {rid: 'h'}, {rid: 'f'}], layers: [{rid: 'q', width: 320, height: 180}]});
  ws.reply(ws.requests('offer')[0], {sdp: 'a1', tracks: []});
  await until(() => ws.requests('offer').length === 2, 'second offer');
  assert.deepEqual(ws.requests('offer')[1].params.tracks[0].layers, [{rid: 'q', width: 320, height: 180}]);
  ws.reply(ws.requests('offer')[1], {sdp: 'a2', tracks: [{id: 'TR_v', cid: 'cam', participantId: 'PA', kind: 'video', simulcast: true,
    layers: [{quality: 'low', rid: 'q'}, {quality: 'medium', rid: 'h'}, {quality: 'high', rid: 'f'}]}]});
  await p;
  ws.push({jsonrpc: '2.0', method: 'publishLayers', params: {trackId: 'TR_v', active: ['low', 'medium']}});
  await until(() => pub.transceivers[0].params.encodings[2].active === false, 'high layer off');
  assert.deepEqual(pub.transceivers[0].params.encodings.map((e) => e.active), [true, true, false]);
  client.leave();
});

test('parseMediaSections reads mid, direction and msid', () => {
  const s = parseMediaSections(subscriberOffer([{kind: 'video', mid: 'v0', participantId: 'P1', trackId: 'T1'}, {kind: 'audio', mid: 'a1', port: 0, direction: 'inactive'}]));
  assert.deepEqual(s.map(({kind, port, mid, direction, streamId, trackId}) => [kind, port, mid, direction, streamId, trackId]), [
    ['video', 9, 'v0', 'sendonly', 'P1', 'T1'],
    ['audio', 0, 'a1', 'inactive', null, null],
    ['application', 9, '99', 'sendrecv', null, null],
  ]);
  const legacy = parseMediaSections('m=audio 9 RTP/AVP 0\r\na=mid:0\r\na=ssrc:1 msid:S T\r\n');
  assert.deepEqual([legacy[0].streamId, legacy[0].trackId, legacy[0].direction], ['S', 'T', 'sendrecv']);
});

test('publish announces the a=msid track id of the SDP when it is not the MediaStreamTrack id', async () => {
  FakePC.msidPrefix = 'ff-';
  try {
    const {client, ws} = await joined();
    await until(() => ws.requests('offer').length === 1, 'first offer');
    ws.reply(ws.requests('offer')[0], {sdp: 'a1', tracks: []});
    const mic = {id: 'mic-1', kind: 'audio', enabled: true};
    const p = client.publish(mic, {source: 'microphone'});
    await until(() => ws.requests('offer').length === 2, 'offer with the track');
    assert.match(ws.requests('offer')[1].params.sdp, /a=msid:\{stream\} ff-mic-1/);
    assert.deepEqual(ws.requests('offer')[1].params.tracks, [{trackId: 'ff-mic-1', source: 'microphone'}]);
    ws.reply(ws.requests('offer')[1], {sdp: 'a2', tracks: [{id: 'TR_a', cid: 'ff-mic-1', participantId: 'PA', kind: 'audio'}]});
    assert.equal((await p).id, 'TR_a');
    client.leave();
  } finally {
    FakePC.msidPrefix = null;
  }
});

test('audio mix: join asks for it, setAudioMix switches, the mix Track is kept apart', async () => {
  const {client, ws} = await joined({audioMix: true});
  assert.equal(ws.requests('join')[0].params.audioMix, true);
  assert.equal(client.audioMix, false, 'not until the server announces the mix');
  const mix = {id: 'TR_mix', participantId: '', kind: 'audio', source: 'mix', codec: 'audio/opus', layers: []};
  ws.push({jsonrpc: '2.0', method: 'trackPublished', params: {track: mix}});
  await until(() => client.audioMix, 'mix announced');
  assert.deepEqual(client.mixTrack, mix);
  assert.deepEqual(client.trackInfo('TR_mix'), mix);
  assert.ok(!(client.participants.get('PB').tracks ?? []).some((t) => t.id === 'TR_mix'), 'the mix belongs to nobody');

  const off = client.setAudioMix(false);
  await until(() => ws.requests('setAudioMix').length === 1, 'setAudioMix request');
  assert.deepEqual(ws.requests('setAudioMix')[0].params, {enabled: false});
  ws.reply(ws.requests('setAudioMix')[0], {});
  await off;
  ws.push({jsonrpc: '2.0', method: 'trackUnpublished', params: {trackId: 'TR_mix', participantId: ''}});
  await until(() => !client.audioMix, 'mix unpublished');
  assert.equal(client.mixTrack, null);
  client.leave();
});
