// Fakes for the client library's tests: a scripted WebSocket server side,
// RTCPeerConnection and RTCDataChannel, and a join helper. Used by the
// *_test.mjs files next to this one.

import assert from 'node:assert/strict';
import {cpSync, mkdtempSync, writeFileSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join, dirname} from 'node:path';
import {fileURLToPath, pathToFileURL} from 'node:url';

// The library is plain .js ES modules; load a copy marked as ESM.
const dir = mkdtempSync(join(tmpdir(), 'starling-js-'));
cpSync(join(dirname(fileURLToPath(import.meta.url)), '..', 'static'), dir, {recursive: true});
writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
export const lib = await import(pathToFileURL(join(dir, 'starling.js')).href);
export const ui = await import(pathToFileURL(join(dir, 'ui.js')).href);
const {StarlingClient, parseMediaSections} = lib;
rmSync(dir, {recursive: true, force: true});

export const tick = () => new Promise((r) => setTimeout(r, 0));
export async function until(cond, what) {
  for (let i = 0; i < 200; i++) {
    if (cond()) return;
    await tick();
  }
  assert.fail(`timed out waiting for ${what}`);
}

// ---- fakes ----

export class FakeWebSocket {
  static last = null;
  static count = 0;
  static refuse = false;
  static refuseURLs = new Set(); // nodes that are down
  static hangURLs = new Set(); // hosts that drop packets: the socket never opens
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeWebSocket.last = this;
    FakeWebSocket.count++;
    if (FakeWebSocket.refuse || FakeWebSocket.refuseURLs.has(url)) {
      // The server is down: the socket errors and closes without opening.
      setTimeout(() => { this.readyState = 3; this.onerror?.({}); this.onclose?.({code: 1006, reason: ''}); }, 0);
      return;
    }
    if (FakeWebSocket.hangURLs.has(url)) return;
    setTimeout(() => { this.readyState = 1; this.onopen?.(); }, 0);
  }
  send(s) { this.sent.push(JSON.parse(s)); }
  close(code = 1000) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({code, reason: ''});
  }
  // server side
  push(obj) { this.onmessage?.({data: JSON.stringify(obj)}); }
  requests(method) { return this.sent.filter((m) => m.method === method && m.id !== undefined); }
  notifications(method) { return this.sent.filter((m) => m.method === method && m.id === undefined); }
  reply(req, result) { this.push({jsonrpc: '2.0', id: req.id, result}); }
}

export class FakeChannel extends EventTarget {
  constructor(label) { super(); this.label = label; this.readyState = 'connecting'; this.sent = []; }
  send(d) { this.sent.push(d); }
  open() { this.readyState = 'open'; this.dispatchEvent(new Event('open')); }
  close() { this.readyState = 'closed'; }
}

let candidateSeq = 0;
export class FakePC {
  static all = [];
  static msidPrefix = null; // set: offers carry a=msid track ids of their own
  constructor(config) {
    this.config = config;
    this.transceivers = [];
    this.channels = [];
    this.added = [];
    this.localDescription = null;
    this.remoteDescription = null;
    this.signalingState = 'stable';
    this.nextMid = 0;
    FakePC.all.push(this);
  }
  createDataChannel(label) {
    const ch = new FakeChannel(label);
    this.channels.push(ch);
    if (this.nextMid === 0) this.nextMid = 1; // mid 0 is the data section
    return ch;
  }
  addTransceiver(track, init) {
    const params = {encodings: (init.sendEncodings ?? [{}]).map((e) => ({active: true, ...e}))};
    const sender = {
      track, getParameters: () => structuredClone(params), setParameters: async (p) => { Object.assign(params, p); },
      replaceTrack: async (t) => { sender.track = t; },
    };
    const tr = {mid: null, direction: init.direction, init, sender, params};
    this.transceivers.push(tr);
    return tr;
  }
  removeTrack(sender) {
    const tr = this.transceivers.find((t) => t.sender === sender);
    tr.direction = 'inactive';
    sender.track = null;
  }
  getTransceivers() { return this.transceivers; }
  async createOffer(options) {
    (this.offerOptions ??= []).push(options ?? null);
    let sdp = `offer with ${this.transceivers.length} transceivers${options?.iceRestart ? ' (ice restart)' : ''}`;
    if (FakePC.msidPrefix) {
      // Like Firefox: a=msid names the track with an id of its own.
      let mid = this.nextMid;
      sdp += '\r\n' + this.transceivers.map((t) => [`m=${t.sender.track?.kind ?? 'audio'} 9 UDP/TLS/RTP/SAVPF 96`,
        `a=mid:${t.mid ?? String(mid++)}`, 'a=sendonly', `a=msid:{stream} ${FakePC.msidPrefix}${t.sender.track?.id}`].join('\r\n')).join('\r\n');
    }
    return {type: 'offer', sdp};
  }
  /** Stats the test set in this.stats (an array of report objects). */
  async getStats() { return new Map((this.stats ?? []).map((s, i) => [s.id ?? `s${i}`, s])); }
  async createAnswer() { return {type: 'answer', sdp: 'client answer'}; }
  async setLocalDescription(d) {
    if (d.type === 'rollback') { this.signalingState = 'stable'; this.rollbacks = (this.rollbacks ?? 0) + 1; return; }
    for (const tr of this.transceivers) tr.mid ??= String(this.nextMid++);
    this.localDescription = d;
    this.signalingState = d.type === 'offer' ? 'have-local-offer' : 'stable';
    const n = ++candidateSeq;
    setTimeout(() => {
      this.onicecandidate?.({candidate: {candidate: `candidate:${n} 1 udp 1 127.0.0.1 ${5000 + n} typ host`, sdpMid: '0', sdpMLineIndex: 0,
        toJSON() { return {candidate: this.candidate, sdpMid: '0', sdpMLineIndex: 0}; }}});
      this.onicecandidate?.({candidate: null});
    }, 0);
  }
  async setRemoteDescription(d) {
    this.remoteDescription = d;
    this.signalingState = d.type === 'offer' ? 'have-remote-offer' : 'stable';
    if (d.type !== 'offer') return;
    for (const s of parseMediaSections(d.sdp)) {
      if (s.kind === 'application' || this.transceivers.some((t) => t.mid === s.mid)) continue;
      this.transceivers.push({mid: s.mid, receiver: {track: {id: `{browser-${s.mid}}`, kind: s.kind}}});
    }
  }
  async addIceCandidate(c) { this.added.push(c ?? null); }
  close() { this.closed = true; }
}

export function subscriberOffer(tracks) {
  const lines = ['v=0', 'o=- 1 1 IN IP4 0.0.0.0', 's=-', 't=0 0', 'a=group:BUNDLE 0 1 2'];
  for (const t of tracks) {
    lines.push(`m=${t.kind} ${t.port ?? 9} UDP/TLS/RTP/SAVPF 96`, `a=mid:${t.mid}`, `a=${t.direction ?? 'sendonly'}`);
    if (t.trackId) lines.push(`a=msid:${t.participantId} ${t.trackId}`);
  }
  lines.push('m=application 9 UDP/DTLS/SCTP webrtc-datachannel', 'a=mid:99', 'a=sendrecv');
  return lines.join('\r\n') + '\r\n';
}

export const participant = (id, name, tracks = []) => ({id, name, metadata: '', joinedAt: 1, tracks});

/** Joins with a fresh client; returns {client, ws, pub, sub}. */
export async function joined(opts = {}, clientOpts = {}) {
  FakePC.all = [];
  const client = new StarlingClient('http://127.0.0.1:7900/v1/rtc', {WebSocket: FakeWebSocket, RTCPeerConnection: FakePC, requestTimeout: 500, leaveTimeout: 100, ...clientOpts});
  const p = client.join('room1', {name: 'Ann', ...opts});
  await until(() => FakeWebSocket.last?.requests('join').length, 'join request');
  const ws = FakeWebSocket.last;
  ws.reply(ws.requests('join')[0], {
    participant: participant('PA', 'Ann'), room: {name: 'room1', sid: 'RM_1'},
    participants: [participant('PB', 'Bob')],
    iceServers: [{urls: ['turn:127.0.0.1:3478'], username: 'u', credential: 'c', credentialType: 'password'}],
    resumeToken: 'rt',
  });
  await p;
  const [pub, sub] = FakePC.all;
  return {client, ws, pub, sub};
}

