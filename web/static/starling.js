// Starling JavaScript client library: speaks Starling's signaling protocol
// (JSON-RPC 2.0 over a WebSocket at /v1/rtc) and runs the two peer
// connections it describes: "publisher" (this client offers, carries what it
// sends plus the "data" channel) and "subscriber" (the server offers, carries
// what it receives). Plain ES module, no dependencies. See docs/client-js.md.
//
//   const client = new StarlingClient();            // ws(s)://<this host>/v1/rtc
//   client.on('track', ({track, participantId, trackId}) => ...);
//   await client.join('myroom', {name: 'Ann'});
//   await client.publish(cameraTrack, {source: 'camera', simulcast: true});
//   await client.sendData('hello');
//   await client.leave();

import {RPCConnection, StarlingError, signalingURL, serverURLs} from './starling-rpc.js';

export {StarlingError, signalingURL, serverURLs};

/** Every event a StarlingClient dispatches, with what its detail holds. */
export const EVENTS = [
  'stateChanged', // {state, previous}: new → connecting → joined ⇄ reconnecting → leaving → closed
  'participantJoined', 'participantUpdated', // {participant}
  'participantLeft', // {participantId, reason, participant}
  'trackPublished', 'trackUpdated', // {track}
  'trackUnpublished', // {trackId, participantId}
  'track', // RemoteTrack {track, participantId, trackId, kind, mid, receiver, transceiver}
  'trackUnsubscribed', // the RemoteTrack that the server stopped forwarding
  'subscriptionUpdated', 'publishLayers', 'activeSpeakers', // the notification's params
  'data', // {from, payload}
  'connectionStateChanged', // {target: 'publisher'|'subscriber', state}
  'reconnecting', // {attempt, reason}: the socket dropped; the client is trying again
  'reconnected', // {resumed, url, newConnections}: back in the room (url: the node); resumed false = rejoined as a new participant
  'leave', // {reason}: the session ended (server leave, client leave, lost socket, retries exhausted)
  'error', // {error}: something failed outside any call the app awaits
  'notification', // {method, params}: a server notification this library does not know
];

const MAX_DATA = 16 << 10; // bytes of one data message
const DATA_LABEL = 'data';
const TARGETS = ['publisher', 'subscriber'];

/** Join errors that no retry can fix: bad token, not allowed, room full, bad params. */
const FATAL_CODES = new Set([401, 403, 413, -32602]);

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

/**
 * The three simulcast encodings Starling's camera video uses (rids q, h, f at
 * 1/4, 1/2 and full resolution) and the matching `layers` hints for `offer`.
 * width and height are the captured size (track.getSettings()).
 */
export function simulcastLayers(width, height) {
  const spec = [
    {rid: 'q', scale: 4, maxBitrate: 150_000},
    {rid: 'h', scale: 2, maxBitrate: 500_000},
    {rid: 'f', scale: 1, maxBitrate: 1_700_000},
  ];
  const sendEncodings = spec.map(({rid, scale, maxBitrate}) => ({rid, scaleResolutionDownBy: scale, maxBitrate, active: true}));
  const layers = width > 0 && height > 0
    ? spec.map(({rid, scale}) => ({rid, width: Math.round(width / scale), height: Math.round(height / scale)}))
    : undefined;
  return {sendEncodings, layers};
}

/**
 * The setSubscription a video element of width × height CSS pixels should
 * ask for: the server forwards the highest layer that fits maxWidth ×
 * maxHeight, and a layer up to `slack` times the element's device pixels
 * looks sharper than a smaller one scaled up. Sizes are rounded up to a
 * multiple of 32 so small resizes don't cause requests.
 */
export function videoRequest({width = 0, height = 0, visible = true, pixelRatio = 1, slack = 1.5} = {}) {
  if (!visible || width <= 0 || height <= 0) return {paused: true};
  const up = (v) => Math.max(32, Math.ceil((v * pixelRatio * slack) / 32) * 32);
  return {paused: false, maxWidth: up(width), maxHeight: up(height)};
}

/**
 * Rates a connection from its loss rate (0..1), round-trip time and jitter
 * (ms): 'excellent', 'good', 'poor', or 'lost' when nothing arrived though
 * something should have (expecting and no packets).
 */
export function qualityScore({lossRate = 0, rttMs = 0, jitterMs = 0, packets = 1, expecting = false} = {}) {
  if (expecting && packets === 0) return 'lost';
  if (lossRate > 0.1 || rttMs > 600 || jitterMs > 100) return 'poor';
  if (lossRate > 0.02 || rttMs > 250 || jitterMs > 40) return 'good';
  return 'excellent';
}

function iceCandidateInit(c) {
  if (typeof c.toJSON === 'function') return c.toJSON();
  const {candidate, sdpMid, sdpMLineIndex, usernameFragment} = c;
  return {candidate, sdpMid, sdpMLineIndex, usernameFragment};
}

export class StarlingClient extends EventTarget {
  /**
   * @param {string|string[]} [url] signaling URL; default ws(s)://<page host>/v1/rtc.
   *   Several nodes of one service: an array, or URLs comma-separated. The
   *   join tries them in order until one answers; a reconnection starts
   *   with the node last joined and goes on through the others in turn.
   * @param {object} [options] urls (more nodes, after url), connectTimeout (ms
   *   to open a socket before trying the next node, 10000), heartbeat (ms of silence
   *   before a ping, and to wait for its answer, 10000; 0 = off), requestTimeout (ms, 15000), leaveTimeout (ms,
   *   2000), reconnect (true: on a lost socket, resume or rejoin),
   *   reconnectDelays (ms between attempts; the last repeats),
   *   reconnectTimeout (ms before giving up, 60000), joinRetryTimeout (ms a
   *   join answered 503 by every node, e.g. draining, is tried again, 15000), subscriptionDelay (ms
   *   that setVideoSize waits for more changes, 150), publisherBundlePolicy
   *   ('max-bundle'), and for tests or other
   *   runtimes: WebSocket, RTCPeerConnection.
   */
  constructor(url, options = {}) {
    super();
    this.urls = serverURLs(url, options.urls);
    this._urlAt = 0; // index in urls of the node joined (or being tried)
    this.options = {
      requestTimeout: 15000, leaveTimeout: 2000, reconnect: true,
      reconnectDelays: [300, 1000, 2000, 4000, 8000], reconnectTimeout: 60000, joinRetryTimeout: 15000, subscriptionDelay: 150,
      // With max-bundle Firefox offers every m-section but the first as
      // bundle-only (port 0); the server reads those as live sections.
      publisherBundlePolicy: 'max-bundle',
      ...options,
    };
    this._RTCPeerConnection = options.RTCPeerConnection ?? globalThis.RTCPeerConnection;
    this.state = 'new';
    this.room = null; // {name, sid}
    this.localParticipant = null; // Participant
    this.participants = new Map(); // id → Participant, the others in the room
    this.iceServers = [];
    this.resumeToken = null;
    this.publisher = null; // RTCPeerConnection
    this.subscriber = null; // RTCPeerConnection
    this.localTracks = new Map(); // msid track id → LocalTrack {track, trackId, source, name, layers, sender, info}
    this.remoteTracks = new Map(); // server track id → RemoteTrack
    this.mixTrack = null; // the audio mix's Track while receiving it (setAudioMix)
    this.reconnectAttempt = 0; // attempts in the current reconnection, 0 when connected
    this._reconnectGen = 0;
    this._drained = false; // the node sent `reconnect`: move without a break (_keepOld)
    this._oldPeers = new Map(); // a drained node's connections, kept until it lets go, with their 15 s timers
    this._rpc = null;
    this._buffering = false; // notifications wait in _early until the join result is processed
    this._early = [];
    this._handlers = [];
    this._joinParams = null;
    this._dataOut = null;
    this._dataIn = null;
    this._videoPrefs = new Map(); // server track id → {sent, want, timer}
    this._subLog = {want: new Map(), settings: new Map()}; // see _foldSubscription
    this._qualityPrev = new Map(); // participant id → previous counters
    this._resetNegotiation();
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

  /** The signaling URL of the node joined (or being tried). */
  get url() { return this.urls[this._urlAt]; }

  /** Connects, joins `room` and sets up both peer connections; resolves to the join result. */
  async join(room, {name, token, metadata, autoSubscribe, audioMix, resume} = {}) {
    if (this.state !== 'new') throw new StarlingError(409, 'this client has already joined; create a new one', 'join');
    if (!room) throw new StarlingError(-32602, 'a room name is required', 'join');
    const params = {room};
    for (const [k, v] of Object.entries({name, token, metadata})) if (v) params[k] = v;
    if (autoSubscribe !== undefined) params.autoSubscribe = Boolean(autoSubscribe);
    if (audioMix) params.audioMix = true;
    this._joinParams = params;
    this._setState('connecting');
    try {
      const result = await this._joinRetrying(resume ? {...params, resume} : params);
      this._onJoined(result);
      return result;
    } catch (err) {
      this._close('joinFailed', false);
      throw err;
    }
  }

  /** _joinAny, in rounds while every node answers 503 (try again: a node
   * draining before it stops, or a cluster's room state store electing a
   * leader), with options.reconnectDelays between rounds, for up to
   * options.joinRetryTimeout ms; as the Go client's Dial does. */
  async _joinRetrying(params) {
    const started = Date.now();
    const delays = this.options.reconnectDelays;
    for (let round = 0; ; round++) {
      try {
        return await this._joinAny(params);
      } catch (err) {
        if (err.code !== 503 || this.state !== 'connecting' || Date.now() - started >= this.options.joinRetryTimeout) throw err;
        this._rpc?.close();
        this._rpc = null;
        this._buffering = false;
        await new Promise((r) => setTimeout(r, delays[Math.min(round, delays.length - 1)]));
        if (this.state !== 'connecting') throw err; // left meanwhile
      }
    }
  }

  /** Publishes a MediaStreamTrack; resolves to the server's Track. Options:
   * source ('camera', 'microphone', 'screen', ...; default by kind), name,
   * simulcast (true: the three encodings of simulcastLayers() for video),
   * or sendEncodings (RTCRtpEncodingParameters[]) and layers ([{rid, width, height}]). */
  async publish(track, {source, name, simulcast, sendEncodings, layers} = {}) {
    this._mustBeJoined('publish');
    if (this._findLocal(track.id)) throw new StarlingError(409, 'this track is already published', 'publish');
    if (simulcast && track.kind === 'video' && !sendEncodings) {
      const {width, height} = track.getSettings?.() ?? {};
      const s = simulcastLayers(width, height);
      sendEncodings = s.sendEncodings;
      layers ??= s.layers;
    }
    const local = {
      track, trackId: track.id, source: source ?? (track.kind === 'audio' ? 'microphone' : 'camera'),
      name, layers, sendEncodings, transceiver: null, sender: null, info: null,
    };
    this._addTransceiver(local);
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
    // `unpublish` first, and the offer that stops sending the track only
    // once its result is in: an offer the server saw first would unpublish
    // the track itself and the request would get 404. A 404 means the
    // server no longer has the track (what was asked); other errors throw,
    // and the sender is removed either way (docs/client-js.md).
    try {
      if (local.info) await this.request('unpublish', {trackId: local.info.id});
    } catch (err) {
      if (err.code !== 404) throw err;
    } finally {
      this._dropLocal(local);
    }
  }

  /** Sends `newTrack` in place of a published track (another camera or microphone), with no renegotiation. */
  async replaceTrack(track, newTrack) {
    const local = this._local(track, 'replaceTrack');
    if (newTrack.kind !== local.track.kind) throw new StarlingError(-32602, `cannot replace ${local.track.kind} with ${newTrack.kind}`, 'replaceTrack');
    newTrack.enabled = local.track.enabled;
    await local.sender.replaceTrack(newTrack);
    local.track = newTrack;
  }

  /** Mutes or unmutes a published track: disables it locally and tells the server. */
  async mute(track, muted = true) {
    const local = this._local(track, 'mute');
    if (!local.info) throw new StarlingError(409, 'the track is not published yet', 'mute');
    local.track.enabled = !muted;
    local.muted = muted;
    await this.request('mute', {trackId: local.info.id, muted});
    local.info.muted = muted;
  }

  /**
   * Receives the room's audio as ONE mixed track (true) or every other
   * participant's audio track (false). The mix arrives as a 'track' event
   * with participantId 'mix' (its Track, source 'mix', is this.mixTrack);
   * a speaker's mix leaves out its own voice.
   */
  async setAudioMix(enabled) {
    this._mustBeJoined('setAudioMix');
    await this.request('setAudioMix', {enabled: Boolean(enabled)});
    if (this._joinParams) this._joinParams.audioMix = Boolean(enabled) || undefined; // a rejoin keeps the choice
  }

  /** Whether this client receives the audio mix (its Track announced, until unpublished). */
  get audioMix() { return this.mixTrack !== null; }

  subscribe(trackIds) { return this.request('subscribe', {trackIds}); }
  unsubscribe(trackIds) { return this.request('unsubscribe', {trackIds}); }
  /** params: {trackId, paused?, maxWidth?, maxHeight?, quality?}. */
  setSubscription(params) { return this.request('setSubscription', params); }
  ping() { return this.request('ping', {}); }

  /**
   * Adaptive subscription: tells the server how big a remote video is shown
   * ({width, height} in CSS pixels, visible, pixelRatio), or that it is not
   * shown (visible false → paused). Changes within subscriptionDelay ms are
   * merged and a request is sent only when the result differs from the last
   * one sent. Returns a promise for the request (or undefined).
   */
  setVideoSize(trackId, size) {
    const want = videoRequest(size);
    let pref = this._videoPrefs.get(trackId);
    if (!pref) this._videoPrefs.set(trackId, pref = {sent: null, want: null, timer: null, done: null});
    pref.want = want;
    if (pref.timer) return pref.done;
    pref.done = new Promise((resolve) => {
      pref.timer = setTimeout(() => {
        pref.timer = null;
        resolve(this._flushVideoPref(trackId, pref));
      }, this.options.subscriptionDelay);
    });
    return pref.done;
  }

  async _flushVideoPref(trackId, pref) {
    const {want, sent} = pref;
    if (this.state !== 'joined' || !this.remoteTracks.has(trackId)) return;
    if (sent && sent.paused === want.paused && sent.maxWidth === want.maxWidth && sent.maxHeight === want.maxHeight) return;
    const params = want.paused ? {trackId, paused: true} : {trackId, ...want};
    pref.sent = want;
    try {
      await this.setSubscription(params);
    } catch (err) {
      if (pref.sent === want) pref.sent = null; // try again with the next change
      this._emitError(err);
    }
  }

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
  request(method, params = {}) {
    if (!this._rpc) return Promise.reject(new StarlingError(0, 'not connected', method));
    const done = this._rpc.request(method, params);
    if (method !== 'subscribe' && method !== 'unsubscribe' && method !== 'setSubscription') return done;
    return done.then((r) => { this._foldSubscription(method, params); return r; });
  }

  /** Remembers what was asked of the subscriptions, to re-send with a resume:
   * a cluster node that takes this participant over has none of the old
   * node's state (docs/PROTOCOL.md "Subscriptions across a takeover"). */
  _foldSubscription(method, params) {
    const log = this._subLog;
    if (method === 'setSubscription') {
      if (!params.trackId) return;
      const merged = {...(log.settings.get(params.trackId) ?? {})};
      for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) merged[k] = v;
      log.settings.set(params.trackId, merged);
      return;
    }
    for (const id of params.trackIds ?? []) log.want.set(id, method === 'subscribe');
  }

  /** The `subscriptions` of a resume (undefined when nothing was asked). */
  _subscriptionsToResend() {
    const {want, settings} = this._subLog;
    if (!want.size && !settings.size) return undefined;
    const subscribed = [], unsubscribed = [];
    for (const [id, on] of want) (on ? subscribed : unsubscribed).push(id);
    return {subscribed, unsubscribed, settings: [...settings.values()]};
  }

  /** The Track the server announced with this id, if any (remote or local). */
  trackInfo(trackId) {
    if (this.mixTrack?.id === trackId) return this.mixTrack;
    for (const p of [this.localParticipant, ...this.participants.values()]) {
      const t = p?.tracks?.find((x) => x.id === trackId);
      if (t) return t;
    }
    return null;
  }

  /**
   * Rates each participant's connection from getStats since the previous
   * call: resolves to a Map participant id → {score, lossRate, rttMs,
   * jitterMs, packets, bitrate}. Remote participants are rated by what this
   * client receives from them; the local participant by what the server
   * reports receiving from us (remote-inbound-rtp) and the publisher's RTT.
   */
  async connectionQuality() {
    const now = Date.now();
    const out = new Map();
    if (this.state !== 'joined' || !this.subscriber) return out;
    const [subStats, pubStats] = await Promise.all([this.subscriber.getStats(), this.publisher.getStats()]);
    const byParticipant = new Map();
    const byMid = new Map([...this.remoteTracks.values()].map((rt) => [rt.mid, rt]));
    const subRtt = selectedRtt(subStats);
    subStats.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      const rt = byMid.get(s.mid) ?? [...this.remoteTracks.values()].find((r) => r.track?.id === s.trackIdentifier);
      if (!rt) return;
      const c = byParticipant.get(rt.participantId) ?? {received: 0, lost: 0, bytes: 0, jitter: 0, expecting: false};
      c.received += s.packetsReceived ?? 0;
      c.lost += Math.max(0, s.packetsLost ?? 0);
      c.bytes += s.bytesReceived ?? 0;
      c.jitter = Math.max(c.jitter, (s.jitter ?? 0) * 1000);
      const info = this.trackInfo(rt.trackId);
      if (!info?.muted && rt.track?.readyState !== 'ended') c.expecting = true;
      byParticipant.set(rt.participantId, c);
    });
    if (this.participantId) {
      const c = {received: 0, lost: 0, bytes: 0, jitter: 0, expecting: false, rtt: selectedRtt(pubStats)};
      let any = false;
      pubStats.forEach((s) => {
        if (s.type === 'outbound-rtp') { c.received += s.packetsSent ?? 0; c.bytes += s.bytesSent ?? 0; any = true; }
        if (s.type === 'remote-inbound-rtp') {
          c.lost += Math.max(0, s.packetsLost ?? 0);
          c.jitter = Math.max(c.jitter, (s.jitter ?? 0) * 1000);
          if (s.roundTripTime) c.rtt = Math.max(c.rtt ?? 0, s.roundTripTime * 1000);
        }
      });
      if (any) byParticipant.set(this.participantId, c);
    }
    for (const [id, c] of byParticipant) {
      const prev = this._qualityPrev.get(id);
      const dt = prev ? (now - prev.at) / 1000 : 0;
      const packets = prev ? Math.max(0, c.received - prev.received) : c.received;
      const lost = prev ? Math.max(0, c.lost - prev.lost) : c.lost;
      const lossRate = packets + lost > 0 ? lost / (packets + lost) : 0;
      const bitrate = prev && dt > 0 ? Math.max(0, (c.bytes - prev.bytes) * 8 / dt) : 0;
      const rttMs = Math.round(c.rtt ?? subRtt ?? 0);
      const q = {lossRate, rttMs, jitterMs: Math.round(c.jitter), packets, bitrate: Math.round(bitrate)};
      q.score = qualityScore({...q, expecting: Boolean(prev) && c.expecting});
      out.set(id, q);
      this._qualityPrev.set(id, {...c, at: now});
    }
    for (const id of this._qualityPrev.keys()) if (!byParticipant.has(id)) this._qualityPrev.delete(id);
    return out;
  }

  // ---- internals: signaling ----

  _newRPC() {
    const rpc = new RPCConnection(this.url, this.options, {
      onNotification: (method, params) => {
        if (this._rpc !== rpc) return;
        if (this._buffering) this._early.push({method, params});
        else this._onNotification(method, params);
      },
      onError: (err) => { if (this._rpc === rpc) this._emitError(err); },
      onClose: ({message}) => { if (this._rpc === rpc) this._onSocketLost(message); },
    });
    this._rpc?.close();
    this._rpc = rpc;
    return rpc;
  }

  /** Opens a new socket and sends `join`; notifications wait until the caller processed the result. */
  async _connectAndJoin(params) {
    this._buffering = true;
    this._early = [];
    const rpc = this._newRPC();
    await rpc.open();
    return rpc.request('join', params);
  }

  /** _connectAndJoin through the nodes, from the current one on in turn:
   * a node that cannot be reached or fails (5xx, no answer) passes the
   * turn; a refusal (4xx, a JSON-RPC error) is the service's answer. */
  async _joinAny(params) {
    const from = this._urlAt;
    let last = null;
    for (let i = 0; i < this.urls.length; i++) {
      this._urlAt = (from + i) % this.urls.length;
      try {
        return await this._connectAndJoin(params);
      } catch (err) {
        if (err.code !== 0 && err.code < 500) throw err;
        last = err;
      }
    }
    throw last;
  }

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
      case 'trackUpdated':
        if (p.track.source === 'mix') this.mixTrack = p.track;
        else this._upsertTrack(p.track);
        break;
      case 'trackUnpublished': {
        if (this.mixTrack?.id === p.trackId) this.mixTrack = null;
        const owner = this._owner(p.participantId);
        if (owner) owner.tracks = (owner.tracks ?? []).filter((t) => t.id !== p.trackId);
        this._videoPrefs.delete(p.trackId);
        this._subLog.want.delete(p.trackId);
        this._subLog.settings.delete(p.trackId);
        break;
      }
      case 'publishLayers': {
        // One at a time: Chrome's setParameters needs the result of the latest getParameters.
        const params = p;
        this._layersChain = this._layersChain.then(() => this._applyPublishLayers(params)).catch((err) => this._emitError(err));
        break;
      }
      case 'subscriptionUpdated':
      case 'activeSpeakers': break;
      case 'reconnect':
        // A draining cluster node asks us to resume elsewhere and closes
        // the socket next: start the reconnection with the next node, at
        // once, and keep the old connections sending until the node lets
        // go of them (make-before-break, docs/cluster-failover.md).
        this._urlAt = (this._urlAt + 1) % this.urls.length;
        this._drained = true;
        return;
      case 'leave':
        // A node that shuts down: with other nodes to go to, carry on there
        // (the socket closes next, and the reconnection starts with the
        // next node) instead of ending the session.
        if (p.reason === 'serverShutdown' && this.options.reconnect && this.urls.length > 1 && this.state === 'joined') {
          this._urlAt = (this._urlAt + 1) % this.urls.length;
          return;
        }
        return this._close(p.reason ?? 'serverLeave');
      default: return this._emit('notification', {method, params: p});
    }
    this._emit(method, p);
  }

  // ---- internals: session ----

  _onJoined(result) {
    this.room = result.room;
    this.localParticipant = result.participant;
    this.participants.clear();
    for (const p of result.participants ?? []) this.participants.set(p.id, p);
    this.resumeToken = result.resumeToken ?? null;
    this.iceServers = (result.iceServers ?? []).map(({urls, username, credential}) => {
      const s = {urls};
      if (username) s.username = username;
      if (credential) s.credential = credential;
      return s;
    });
    for (const target of TARGETS) {
      const bundlePolicy = target === 'publisher' ? this.options.publisherBundlePolicy : 'max-bundle';
      const pc = new this._RTCPeerConnection({iceServers: this.iceServers, bundlePolicy, rtcpMuxPolicy: 'require'});
      this[target] = pc;
      pc.onicecandidate = (ev) => { if (this[target] === pc) this._onLocalCandidate(target, ev.candidate); };
      pc.onconnectionstatechange = () => {
        if (this[target] !== pc) return;
        this._emit('connectionStateChanged', {target, state: pc.connectionState});
        // The socket is fine but media is cut: restart ICE on what we offer.
        if (target === 'publisher' && pc.connectionState === 'failed' && this.state === 'joined') {
          this._negotiate({iceRestart: true}).catch((err) => this._emitError(err));
        }
      };
    }
    this._localStream = globalThis.MediaStream ? new MediaStream() : null; // msid stream id of our tracks
    const sub = this.subscriber;
    sub.ondatachannel = (ev) => {
      if (ev.channel.label !== DATA_LABEL || this.subscriber !== sub) return;
      this._dataIn = ev.channel;
      ev.channel.binaryType = 'arraybuffer';
      ev.channel.onmessage = (e) => this._onData(e.data);
    };
    this._dataOut = this.publisher.createDataChannel(DATA_LABEL);
    this._buffering = false;
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

  _onSocketLost(message) {
    if (this.state !== 'joined') return; // joining, leaving and reconnecting handle this themselves
    this._emitError(new StarlingError(0, message));
    if (this.options.reconnect && this._joinParams) this._reconnect(message);
    else this._close('disconnected');
  }

  /**
   * Gets back into the room after the socket dropped: `join` with `resume`
   * (the server keeps the participant, its tracks and subscriptions; we
   * restart ICE), or when the server no longer knows the resume token, a
   * fresh join (new participant id, new connections, the same local tracks
   * published again). Retries with the delays of options.reconnectDelays
   * until options.reconnectTimeout; errors no retry can fix end the session.
   */
  async _reconnect(reason) {
    const gen = ++this._reconnectGen;
    const current = () => gen === this._reconnectGen && this.state === 'reconnecting';
    this._setState('reconnecting');
    this._rpc?.close();
    this._rpc = null;
    const started = Date.now();
    const delays = this.options.reconnectDelays;
    for (let attempt = 1; ; attempt++) {
      this.reconnectAttempt = attempt;
      this._emit('reconnecting', {attempt, reason});
      const delay = attempt === 1 && this._drained ? 0 : delays[Math.min(attempt - 1, delays.length - 1)];
      await new Promise((r) => setTimeout(r, delay));
      if (!current()) return; // left meanwhile
      try {
        const {resumed, newConnections} = await this._rejoin(current);
        this.reconnectAttempt = 0;
        this._emit('reconnected', {resumed, url: this.url, newConnections});
        return;
      } catch (err) {
        if (!current()) return;
        this._rpc?.close();
        this._rpc = null;
        this._buffering = false;
        reason = err.message;
        if (FATAL_CODES.has(err.code)) {
          this._emitError(err);
          this._close(`rejected: ${err.message}`);
          return;
        }
        if (Date.now() - started >= this.options.reconnectTimeout) {
          this._close('reconnectFailed');
          return;
        }
      }
    }
  }

  /** One reconnection attempt; resolves to {resumed, newConnections}.
   * current() says whether this attempt is still wanted. */
  async _rejoin(current) {
    let result = null;
    if (this.resumeToken) {
      try {
        result = await this._joinAny({...this._joinParams, resume: this.resumeToken, subscriptions: this._subscriptionsToResend()});
      } catch (err) {
        if (err.code !== 404 && err.code !== 409) throw err;
        // The node forgot us (or never knew us): join afresh on the same socket.
      }
    }
    if (result && !result.newConnections) {
      if (!current()) throw new StarlingError(0, 'left while reconnecting');
      this._drained = false;
      this.resumeToken = result.resumeToken ?? this.resumeToken;
      this.localParticipant = result.participant ?? this.localParticipant;
      this._buffering = false;
      this._setState('joined');
      for (const m of this._early.splice(0)) this._onNotification(m.method, m.params ?? {});
      this._negotiate({iceRestart: true}).catch((err) => this._emitError(err));
      return {resumed: true, newConnections: false};
    }
    if (result) {
      // Resumed through another node of a cluster: the same participant,
      // but that node is a new DTLS peer, so both connections are new and
      // the local tracks are announced again (docs/PROTOCOL.md).
      if (!current()) throw new StarlingError(0, 'left while reconnecting');
      const others = new Map(this.participants);
      const keepPeers = this._drained;
      this._drained = false;
      this._dropSession('reconnect', {keepParticipants: true, keepPeers});
      this._setupAgain(result);
      for (const [id, participant] of others) {
        if (!this.participants.has(id)) this._emit('participantLeft', {participantId: id, reason: 'reconnect', participant});
      }
      for (const p of this.participants.values()) if (!others.has(p.id)) this._emit('participantJoined', {participant: p});
      return {resumed: true, newConnections: true};
    }
    if (!this._rpc?.isOpen) {
      this._buffering = true;
      this._early = [];
      await this._newRPC().open();
    }
    result = await this._rpc.request('join', this._joinParams);
    if (!current()) throw new StarlingError(0, 'left while reconnecting');
    this._subLog = {want: new Map(), settings: new Map()}; // a new participant: nothing asked yet
    this._drained = false; // a new participant: its tracks get new ids, nothing to overlap
    this._dropSession('reconnect');
    this._setupAgain(result);
    for (const p of this.participants.values()) this._emit('participantJoined', {participant: p});
    return {resumed: false, newConnections: true};
  }

  /** Sets up new connections from a join result and publishes the local tracks again. */
  _setupAgain(result) {
    const locals = [...this.localTracks.values()];
    this.localTracks.clear();
    this._onJoined(result);
    for (const l of locals) {
      this.localTracks.set(l.trackId, l);
      l.info = null;
      this._addTransceiver(l);
    }
    if (locals.length) {
      // Publish again, then restore the mute states on the new server tracks.
      this._negotiate().then(() => Promise.all(locals.filter((l) => l.muted && l.info)
        .map((l) => this.request('mute', {trackId: l.info.id, muted: true}).then(() => { l.info.muted = true; }))))
        .catch((err) => this._emitError(err));
    }
  }

  /** Forgets the old session's connections (and, unless keepParticipants, its peers) before new ones. */
  _dropSession(reason, {keepParticipants = false, keepPeers = false} = {}) {
    for (const rt of this.remoteTracks.values()) this._emit('trackUnsubscribed', rt);
    this.remoteTracks.clear();
    this.mixTrack = null;
    if (!keepParticipants) {
      for (const [id, participant] of this.participants) this._emit('participantLeft', {participantId: id, reason, participant});
      this.participants.clear();
    }
    const peers = [this.publisher, this.subscriber];
    for (const x of [this._dataOut, this._dataIn, ...(keepPeers ? [] : peers)]) {
      try { x?.close(); } catch { /* already closed */ }
    }
    if (keepPeers) this._keepOld(peers);
    this._dataIn = null;
    this._videoPrefs.clear();
    this._qualityPrev.clear();
    this._resetNegotiation();
  }

  /**
   * Keeps a drained node's connections open while the new ones take over:
   * the node goes on relaying what the old publisher sends until the other
   * nodes take our tracks (same ids) from the new node, then closes them;
   * we close them then, or after 15 s. Their handlers ignore them already
   * (they check this.publisher / this.subscriber).
   */
  _keepOld(pcs) {
    for (const pc of pcs) {
      if (!pc) continue;
      const drop = () => {
        if (!this._oldPeers.delete(pc)) return;
        clearTimeout(timer);
        try { pc.close(); } catch { /* already closed */ }
      };
      const timer = setTimeout(drop, 15000);
      this._oldPeers.set(pc, timer);
      const prev = pc.onconnectionstatechange;
      pc.onconnectionstatechange = (ev) => {
        prev?.(ev);
        if (['disconnected', 'failed', 'closed'].includes(pc.connectionState)) drop();
      };
    }
  }

  _dropOldPeers() {
    for (const [pc, timer] of this._oldPeers) {
      clearTimeout(timer); // no timer left running after a leave
      try { pc.close(); } catch { /* already closed */ }
    }
    this._oldPeers.clear();
  }

  _resetNegotiation() {
    this._subChain = Promise.resolve(); // subscriber offers and candidates, in order
    this._layersChain = Promise.resolve(); // publishLayers, in order
    this._offerInFlight = null; // the publisher offer being exchanged
    this._offerQueued = null; // the publisher offer that will follow it
    this._iceRestart = false;
    this._holdLocal = {publisher: false, subscriber: false};
    this._localCandidates = {publisher: [], subscriber: []};
    this._remoteCandidates = {publisher: [], subscriber: []};
  }

  _close(reason, emit = true) {
    if (this.state === 'closed') return;
    const wasIn = ['joined', 'leaving', 'reconnecting'].includes(this.state);
    this._setState('closed');
    this._rpc?.close();
    for (const x of [this._dataOut, this._dataIn, this.publisher, this.subscriber]) {
      try { x?.close(); } catch { /* already closed */ }
    }
    this._dropOldPeers();
    for (const pref of this._videoPrefs.values()) clearTimeout(pref.timer);
    this._videoPrefs.clear();
    this.remoteTracks.clear();
    this.mixTrack = null;
    if (emit && wasIn) this._emit('leave', {reason});
  }

  // ---- internals: publisher ----

  _addTransceiver(local) {
    const init = {direction: 'sendonly', streams: this._localStream ? [this._localStream] : []};
    if (local.sendEncodings) init.sendEncodings = local.sendEncodings.map((e) => ({...e}));
    local.transceiver = this.publisher.addTransceiver(local.track, init);
    local.sender = local.transceiver.sender;
    if (local.muted) local.track.enabled = false;
  }

  /** Asks for a publisher offer; resolves when an offer made after this call has its answer.
   * One offer is in flight at a time; changes made meanwhile share the next one. */
  _negotiate({iceRestart = false} = {}) {
    if (iceRestart) this._iceRestart = true;
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
    const iceRestart = this._iceRestart;
    this._iceRestart = false;
    this._holdLocal.publisher = true; // until the offer is on the wire before them
    let reply;
    try {
      await pc.setLocalDescription(await pc.createOffer(iceRestart ? {iceRestart: true} : undefined));
      // The track id the SDP carries in a=msid is not always the
      // MediaStreamTrack's id (Firefox makes its own), and the server
      // matches the announcement to the SDP by it.
      const msid = new Map(parseMediaSections(pc.localDescription.sdp ?? '').map((m) => [m.mid, m.trackId]));
      const announced = [...this.localTracks.values()].filter((t) => !t.info && t.transceiver.mid != null);
      for (const t of announced) t.sdpTrackId = msid.get(t.transceiver.mid) ?? t.trackId;
      const tracks = announced.map(({sdpTrackId: trackId, source, name, layers}) => {
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
      if (iceRestart) this._iceRestart = true;
      if (pc.signalingState === 'have-local-offer') await pc.setLocalDescription({type: 'rollback'}).catch(() => {});
      throw err;
    }
    if (this.publisher !== pc) throw new StarlingError(0, 'the connection was replaced', 'offer');
    await pc.setRemoteDescription({type: 'answer', sdp: result.sdp});
    for (const info of result.tracks ?? []) {
      const local = [...this.localTracks.values()].find((t) => (t.sdpTrackId ?? t.trackId) === info.cid);
      if (local) local.info = info;
    }
    this._flushRemoteCandidates('publisher');
    return result;
  }

  _findLocal(id) {
    return this.localTracks.get(id) ??
      [...this.localTracks.values()].find((t) => t.track.id === id || t.info?.id === id) ?? null;
  }

  _local(track, method) {
    const local = this._findLocal(typeof track === 'string' ? track : track?.id);
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
      this._videoPrefs.delete(rt.trackId);
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
      this._rpc?.notify('answer', {sdp: pc.localDescription.sdp});
    } finally {
      this._releaseLocalCandidates('subscriber');
    }
  }

  // ---- internals: ICE ----

  _onLocalCandidate(target, candidate) {
    if (candidate && !candidate.candidate) return; // end of one generation; null follows at the very end
    const init = candidate ? iceCandidateInit(candidate) : null;
    if (this._holdLocal[target]) this._localCandidates[target].push(init);
    else this._rpc?.notify('candidate', {target, candidate: init});
  }

  _releaseLocalCandidates(target) {
    this._holdLocal[target] = false;
    for (const c of this._localCandidates[target].splice(0)) this._rpc?.notify('candidate', {target, candidate: c});
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
    if (this.state !== 'joined') throw new StarlingError(409, this.state === 'reconnecting' ? 'reconnecting' : 'not joined', method);
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

/** The RTT of the selected ICE candidate pair, in ms, or null. */
function selectedRtt(stats) {
  let pairId = null;
  stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId; });
  let rtt = null;
  stats.forEach((s) => {
    if (s.type !== 'candidate-pair' || s.currentRoundTripTime === undefined) return;
    if (pairId ? s.id === pairId : (s.nominated && s.state === 'succeeded')) rtt = s.currentRoundTripTime * 1000;
  });
  return rtt;
}
