// Starling JavaScript client library: speaks Starling's signaling protocol
// (JSON-RPC 2.0 over a WebSocket at /v1/rtc) and runs the two peer
// connections it describes: "publisher" (this client offers, carries what it
// sends plus the "data" channel) and "subscriber" (the server offers, carries
// what it receives). Plain ES module, no dependencies.
//
//   const client = new StarlingClient();            // ws(s)://<this host>/v1/rtc
//   client.on('track', ({track, participantId, trackId}) => ...);
//   await client.join('myroom', {name: 'Ann'});
//   await client.publish(cameraTrack, {source: 'camera'});
//   await client.sendData('hello');
//   await client.leave();

import {RPCConnection, StarlingError, signalingURL} from './starling-rpc.js';

export {StarlingError, signalingURL};

/** Every event a StarlingClient dispatches, with what its detail holds. */
export const EVENTS = [
  'stateChanged', // {state, previous}: new → connecting → joined → leaving → closed
  'participantJoined', 'participantUpdated', // {participant}
  'participantLeft', // {participantId, reason, participant}
  'trackPublished', 'trackUpdated', // {track}
  'trackUnpublished', // {trackId, participantId}
  'track', // RemoteTrack {track, participantId, trackId, kind, mid, receiver, transceiver}
  'trackUnsubscribed', // the RemoteTrack that the server stopped forwarding
  'subscriptionUpdated', 'publishLayers', 'activeSpeakers', // the notification's params
  'data', // {from, payload}
  'connectionStateChanged', // {target: 'publisher'|'subscriber', state}
  'leave', // {reason}: the session ended (server leave, client leave, lost socket)
  'error', // {error}: something failed outside any call the app awaits
  'notification', // {method, params}: a server notification this library does not know
];

const MAX_DATA = 16 << 10; // bytes of one data message
const DATA_LABEL = 'data';
const TARGETS = ['publisher', 'subscriber'];

/** Parses the media sections of an SDP: [{kind, port, mid, direction, streamId, trackId}]. */
export function parseMediaSections(sdp) {
  const sections = [];
  let sessionDirection = 'sendrecv';
  let cur = null;
  for (const line of sdp.split(/\r?\n/)) {
    if (line.startsWith('m=')) {
      const [kind, port] = line.slice(2).split(' ');
      cur = {kind, port: Number(port), mid: null, direction: null, streamId: null, trackId: null};
      sections.push(cur);
    } else if (/^a=(sendrecv|sendonly|recvonly|inactive)$/.test(line)) {
      if (cur) cur.direction = line.slice(2); else sessionDirection = line.slice(2);
    } else if (cur && line.startsWith('a=mid:')) {
      cur.mid = line.slice(6).trim();
    } else if (cur && (line.startsWith('a=msid:') || /^a=ssrc:\d+ msid:/.test(line)) && !cur.trackId) {
      const [streamId, trackId] = line.slice(line.indexOf('msid:') + 5).trim().split(/\s+/);
      Object.assign(cur, {streamId, trackId: trackId ?? null});
    }
  }
  for (const s of sections) s.direction ??= sessionDirection;
  return sections;
}

function iceCandidateInit(c) {
  if (typeof c.toJSON === 'function') return c.toJSON();
  const {candidate, sdpMid, sdpMLineIndex, usernameFragment} = c;
  return {candidate, sdpMid, sdpMLineIndex, usernameFragment};
}

export class StarlingClient extends EventTarget {
  /**
   * @param {string} [url] signaling URL; default ws(s)://<page host>/v1/rtc.
   * @param {object} [options] requestTimeout (ms, 15000), leaveTimeout (ms, 2000),
   *   and for tests or other runtimes: WebSocket, RTCPeerConnection.
   */
  constructor(url, options = {}) {
    super();
    this.url = signalingURL(url);
    this.options = {requestTimeout: 15000, leaveTimeout: 2000, ...options};
    this._rpc = new RPCConnection(this.url, this.options, {
      onNotification: (method, params) => {
        if (this.state === 'connecting') this._early.push({method, params});
        else this._onNotification(method, params);
      },
      onError: (err) => this._emitError(err),
      onClose: ({message}) => {
        if (this.state !== 'joined') return; // joining and leaving handle this themselves
        this._emitError(new StarlingError(0, message));
        this._close('disconnected');
      },
    });
    this._RTCPeerConnection = options.RTCPeerConnection ?? globalThis.RTCPeerConnection;
    this.state = 'new';
    this.room = null; // {name, sid}
    this.localParticipant = null; // Participant
    this.participants = new Map(); // id → Participant, the others in the room
    this.iceServers = [];
    this.resumeToken = null;
    this.publisher = null; // RTCPeerConnection
    this.subscriber = null; // RTCPeerConnection
    this.localTracks = new Map(); // MediaStreamTrack id → LocalTrack {track, trackId, source, name, sender, info}
    this.remoteTracks = new Map(); // server track id → RemoteTrack
    this._early = []; // notifications received before the join result was processed
    this._handlers = [];
    this._dataOut = null;
    this._dataIn = null;
    this._subChain = Promise.resolve(); // subscriber offers and candidates, in order
    this._offerInFlight = null; // the publisher offer being exchanged
    this._offerQueued = null; // the publisher offer that will follow it
    this._holdLocal = {publisher: false, subscriber: false};
    this._localCandidates = {publisher: [], subscriber: []};
    this._remoteCandidates = {publisher: [], subscriber: []};
  }

  /** Calls fn(detail) on each `type` event; returns a function that removes it. */
  on(type, fn) {
    const listener = (ev) => fn(ev.detail);
    this._handlers.push({type, fn, listener});
    this.addEventListener(type, listener);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    const i = this._handlers.findIndex((h) => h.type === type && h.fn === fn);
    if (i < 0) return;
    this.removeEventListener(type, this._handlers[i].listener);
    this._handlers.splice(i, 1);
  }

  get participantId() { return this.localParticipant?.id ?? null; }

  /** Connects, joins `room` and sets up both peer connections; resolves to the join result. */
  async join(room, {name, token, metadata, autoSubscribe, resume} = {}) {
    if (this.state !== 'new') throw new StarlingError(409, 'this client has already joined; create a new one', 'join');
    if (!room) throw new StarlingError(-32602, 'a room name is required', 'join');
    this._setState('connecting');
    try {
      await this._rpc.open();
      const params = {room};
      for (const [k, v] of Object.entries({name, token, metadata, resume})) if (v) params[k] = v;
      if (autoSubscribe !== undefined) params.autoSubscribe = Boolean(autoSubscribe);
      const result = await this.request('join', params);
      this._onJoined(result);
      return result;
    } catch (err) {
      this._close('joinFailed', false);
      throw err;
    }
  }

  /** Publishes a MediaStreamTrack; resolves to the server's Track. Options:
   * source ('camera', 'microphone', 'screen', ...; default by kind), name,
   * sendEncodings (RTCRtpEncodingParameters[] for simulcast) and layers ([{rid, width, height}]). */
  async publish(track, {source, name, sendEncodings, layers} = {}) {
    this._mustBeJoined('publish');
    if (this.localTracks.has(track.id)) throw new StarlingError(409, 'this track is already published', 'publish');
    const init = {direction: 'sendonly', streams: this._localStream ? [this._localStream] : []};
    if (sendEncodings) init.sendEncodings = sendEncodings;
    const transceiver = this.publisher.addTransceiver(track, init);
    const local = {
      track, trackId: track.id, source: source ?? (track.kind === 'audio' ? 'microphone' : 'camera'),
      name, layers, transceiver, sender: transceiver.sender, info: null,
    };
    this.localTracks.set(track.id, local);
    try {
      await this._negotiate();
      if (!local.info) throw new StarlingError(500, 'the server did not publish the track', 'publish');
      return local.info;
    } catch (err) {
      this._dropLocal(local);
      throw err;
    }
  }

  /** Stops publishing a track (a MediaStreamTrack, its id or the server track id). The app still owns the track. */
  async unpublish(track) {
    const local = this._local(track, 'unpublish');
    this._dropLocal(local);
    if (local.info) await this.request('unpublish', {trackId: local.info.id});
  }

  /** Mutes or unmutes a published track: disables it locally and tells the server. */
  async mute(track, muted = true) {
    const local = this._local(track, 'mute');
    if (!local.info) throw new StarlingError(409, 'the track is not published yet', 'mute');
    local.track.enabled = !muted;
    await this.request('mute', {trackId: local.info.id, muted});
    local.info.muted = muted;
  }

  subscribe(trackIds) { return this.request('subscribe', {trackIds}); }
  unsubscribe(trackIds) { return this.request('unsubscribe', {trackIds}); }
  /** params: {trackId, paused?, maxWidth?, maxHeight?, quality?}. */
  setSubscription(params) { return this.request('setSubscription', params); }
  ping() { return this.request('ping', {}); }

  /** Sends a text message to every other participant (≤ 16 KiB of UTF-8). */
  async sendData(text) {
    this._mustBeJoined('sendData');
    text = String(text);
    if (new TextEncoder().encode(text).length > MAX_DATA) throw new StarlingError(413, 'data message over 16 KiB', 'sendData');
    const ch = this._dataOut;
    if (ch.readyState === 'connecting') {
      await new Promise((resolve, reject) => {
        ch.addEventListener('open', resolve, {once: true});
        ch.addEventListener('close', () => reject(new StarlingError(0, 'data channel closed', 'sendData')), {once: true});
      });
    }
    if (ch.readyState !== 'open') throw new StarlingError(409, `data channel is ${ch.readyState}`, 'sendData');
    ch.send(text);
  }

  /** Sends `leave`, then closes the peer connections and the socket. Never rejects. */
  async leave() {
    if (this.state === 'closed' || this.state === 'leaving') return;
    if (this.state === 'joined') {
      this._setState('leaving');
      let timer;
      const timeout = new Promise((resolve) => { timer = setTimeout(resolve, this.options.leaveTimeout); });
      await Promise.race([this.request('leave', {}).catch(() => {}), timeout]);
      clearTimeout(timer);
    }
    this._close('clientLeave');
  }

  /** Sends a JSON-RPC request; resolves to its result or rejects with a StarlingError. */
  request(method, params = {}) { return this._rpc.request(method, params); }

  /** The Track the server announced with this id, if any (remote or local). */
  trackInfo(trackId) {
    for (const p of [this.localParticipant, ...this.participants.values()]) {
      const t = p?.tracks?.find((x) => x.id === trackId);
      if (t) return t;
    }
    return null;
  }

  // ---- internals: signaling ----

  _onNotification(method, p) {
    switch (method) {
      case 'offer':
        this._subChain = this._subChain.then(() => this._onSubscriberOffer(p.sdp))
          .catch((err) => this._emitError(err));
        return;
      case 'candidate': return this._onRemoteCandidate(p.target, p.candidate);
      case 'participantJoined':
      case 'participantUpdated':
        if (p.participant.id === this.participantId) this.localParticipant = p.participant;
        else this.participants.set(p.participant.id, p.participant);
        break;
      case 'participantLeft':
        p = {...p, participant: this.participants.get(p.participantId) ?? null};
        this.participants.delete(p.participantId);
        break;
      case 'trackPublished':
      case 'trackUpdated': this._upsertTrack(p.track); break;
      case 'trackUnpublished': {
        const owner = this._owner(p.participantId);
        if (owner) owner.tracks = (owner.tracks ?? []).filter((t) => t.id !== p.trackId);
        break;
      }
      case 'publishLayers': this._applyPublishLayers(p).catch((err) => this._emitError(err)); break;
      case 'subscriptionUpdated':
      case 'activeSpeakers': break;
      case 'leave': return this._close(p.reason ?? 'serverLeave');
      default: return this._emit('notification', {method, params: p});
    }
    this._emit(method, p);
  }

  // ---- internals: session ----

  _onJoined(result) {
    this.room = result.room;
    this.localParticipant = result.participant;
    for (const p of result.participants ?? []) this.participants.set(p.id, p);
    this.resumeToken = result.resumeToken ?? null;
    this.iceServers = (result.iceServers ?? []).map(({urls, username, credential}) => {
      const s = {urls};
      if (username) s.username = username;
      if (credential) s.credential = credential;
      return s;
    });
    const config = {iceServers: this.iceServers, bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require'};
    for (const target of TARGETS) {
      const pc = new this._RTCPeerConnection(config);
      this[target] = pc;
      pc.onicecandidate = (ev) => this._onLocalCandidate(target, ev.candidate);
      pc.onconnectionstatechange = () => this._emit('connectionStateChanged', {target, state: pc.connectionState});
    }
    this._localStream = globalThis.MediaStream ? new MediaStream() : null; // msid stream id of our tracks
    this.subscriber.ondatachannel = (ev) => {
      if (ev.channel.label !== DATA_LABEL) return;
      this._dataIn = ev.channel;
      ev.channel.binaryType = 'arraybuffer';
      ev.channel.onmessage = (e) => this._onData(e.data);
    };
    this._dataOut = this.publisher.createDataChannel(DATA_LABEL);
    this._setState('joined');
    for (const m of this._early.splice(0)) this._onNotification(m.method, m.params ?? {});
    this._negotiate().catch((err) => this._emitError(err)); // the data channel
  }

  _onData(data) {
    if (typeof data !== 'string') data = new TextDecoder().decode(data);
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      this._emitError(new StarlingError(-32700, 'unparsable data message'));
      return;
    }
    this._emit('data', {from: msg.from, payload: msg.payload});
  }

  _close(reason, emit = true) {
    if (this.state === 'closed') return;
    const wasIn = this.state === 'joined' || this.state === 'leaving';
    this._setState('closed');
    this._rpc.close();
    for (const x of [this._dataOut, this._dataIn, this.publisher, this.subscriber]) {
      try { x?.close(); } catch { /* already closed */ }
    }
    this.remoteTracks.clear();
    if (emit && wasIn) this._emit('leave', {reason});
  }

  // ---- internals: publisher ----

  /** Asks for a publisher offer; resolves when an offer made after this call has its answer.
   * One offer is in flight at a time; changes made meanwhile share the next one. */
  _negotiate() {
    if (!this._offerQueued) {
      const prev = this._offerInFlight ?? Promise.resolve();
      const p = prev.catch(() => {}).then(() => {
        this._offerQueued = null;
        this._offerInFlight = p;
        return this._sendOffer();
      });
      p.catch(() => {}).then(() => { if (this._offerInFlight === p) this._offerInFlight = null; });
      this._offerQueued = p;
    }
    return this._offerQueued;
  }

  async _sendOffer() {
    const pc = this.publisher;
    if (this.state !== 'joined') throw new StarlingError(0, 'not joined', 'offer');
    this._holdLocal.publisher = true; // until the offer is on the wire before them
    let reply;
    try {
      await pc.setLocalDescription(await pc.createOffer());
      const announced = [...this.localTracks.values()].filter((t) => !t.info && t.transceiver.mid != null);
      const tracks = announced.map(({trackId, source, name, layers}) => {
        const a = {trackId, source};
        if (name) a.name = name;
        if (layers) a.layers = layers;
        return a;
      });
      reply = this.request('offer', {sdp: pc.localDescription.sdp, tracks});
    } finally {
      this._releaseLocalCandidates('publisher');
    }
    let result;
    try {
      result = await reply;
    } catch (err) {
      if (pc.signalingState === 'have-local-offer') await pc.setLocalDescription({type: 'rollback'}).catch(() => {});
      throw err;
    }
    await pc.setRemoteDescription({type: 'answer', sdp: result.sdp});
    for (const info of result.tracks ?? []) {
      const local = this.localTracks.get(info.cid);
      if (local) local.info = info;
    }
    this._flushRemoteCandidates('publisher');
    return result;
  }

  _local(track, method) {
    const id = typeof track === 'string' ? track : track?.id;
    const local = this.localTracks.get(id) ?? [...this.localTracks.values()].find((t) => t.info?.id === id);
    if (!local) throw new StarlingError(404, 'no such published track', method);
    return local;
  }

  _dropLocal(local) {
    if (this.localTracks.get(local.trackId) !== local) return;
    this.localTracks.delete(local.trackId);
    if (this.state !== 'joined') return;
    try { this.publisher.removeTrack(local.sender); } catch { /* connection closed */ }
    this._negotiate().catch((err) => this._emitError(err));
  }

  async _applyPublishLayers({trackId, active}) {
    const local = [...this.localTracks.values()].find((t) => t.info?.id === trackId);
    if (!local) return;
    const quality = new Map((local.info.layers ?? []).map((l) => [l.rid, l.quality]));
    const params = local.sender.getParameters();
    let changed = false;
    for (const enc of params.encodings ?? []) {
      const q = quality.get(enc.rid);
      if (!enc.rid || !q) continue;
      const on = active.includes(q);
      if (enc.active !== on) { enc.active = on; changed = true; }
    }
    if (changed) await local.sender.setParameters(params);
  }

  // ---- internals: subscriber ----

  async _onSubscriberOffer(sdp) {
    const pc = this.subscriber;
    if (!pc || this.state !== 'joined') return;
    const sections = parseMediaSections(sdp);
    const forwarded = new Map(); // mid → section, for the tracks the server sends now
    for (const s of sections) {
      if (s.kind !== 'application' && s.port !== 0 && s.trackId && /send/.test(s.direction)) forwarded.set(s.mid, s);
    }
    for (const rt of [...this.remoteTracks.values()]) {
      const s = forwarded.get(rt.mid);
      if (s?.trackId === rt.trackId && s.streamId === rt.participantId) continue;
      this.remoteTracks.delete(rt.trackId);
      this._emit('trackUnsubscribed', rt);
    }
    await pc.setRemoteDescription({type: 'offer', sdp});
    for (const tr of pc.getTransceivers()) {
      const s = forwarded.get(tr.mid);
      if (!s || this.remoteTracks.get(s.trackId)?.mid === tr.mid) continue;
      const track = tr.receiver.track;
      const rt = {track, participantId: s.streamId, trackId: s.trackId, kind: track.kind, mid: tr.mid, receiver: tr.receiver, transceiver: tr};
      this.remoteTracks.set(s.trackId, rt);
      this._emit('track', rt);
    }
    this._flushRemoteCandidates('subscriber');
    this._holdLocal.subscriber = true; // until the answer is on the wire before them
    try {
      await pc.setLocalDescription(await pc.createAnswer());
      this._rpc.notify('answer', {sdp: pc.localDescription.sdp});
    } finally {
      this._releaseLocalCandidates('subscriber');
    }
  }

  // ---- internals: ICE ----

  _onLocalCandidate(target, candidate) {
    if (candidate && !candidate.candidate) return; // end of one generation; null follows at the very end
    const init = candidate ? iceCandidateInit(candidate) : null;
    if (this._holdLocal[target]) this._localCandidates[target].push(init);
    else this._rpc.notify('candidate', {target, candidate: init});
  }

  _releaseLocalCandidates(target) {
    this._holdLocal[target] = false;
    for (const c of this._localCandidates[target].splice(0)) this._rpc.notify('candidate', {target, candidate: c});
  }

  _onRemoteCandidate(target, candidate) {
    if (!TARGETS.includes(target)) return;
    const add = () => {
      const pc = this[target];
      if (!pc || this.state !== 'joined') return;
      if (!pc.remoteDescription) this._remoteCandidates[target].push(candidate);
      else this._addCandidate(pc, candidate);
    };
    if (target === 'subscriber') this._subChain = this._subChain.then(add).catch((err) => this._emitError(err));
    else add();
  }

  _flushRemoteCandidates(target) {
    for (const c of this._remoteCandidates[target].splice(0)) this._addCandidate(this[target], c);
  }

  _addCandidate(pc, candidate) {
    const p = candidate ? pc.addIceCandidate(candidate) : pc.addIceCandidate();
    p.catch((err) => { if (candidate) this._emitError(err); }); // end-of-candidates is best effort
  }

  // ---- internals: bookkeeping ----

  _owner(participantId) {
    return participantId === this.participantId ? this.localParticipant : this.participants.get(participantId);
  }

  _upsertTrack(track) {
    const owner = this._owner(track.participantId);
    if (owner) owner.tracks = [...(owner.tracks ?? []).filter((t) => t.id !== track.id), track];
    if (track.participantId !== this.participantId) return;
    for (const local of this.localTracks.values()) if (local.info?.id === track.id) local.info = {...local.info, ...track};
  }

  _mustBeJoined(method) {
    if (this.state !== 'joined') throw new StarlingError(409, 'not joined', method);
  }

  _setState(state) {
    const previous = this.state;
    if (previous === state) return;
    this.state = state;
    this._emit('stateChanged', {state, previous});
  }

  _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, {detail})); }

  _emitError(error) { this._emit('error', {error}); }
}
