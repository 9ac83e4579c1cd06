// Starling's browser app: a landing page (room + name), a lobby at /r/{room}
// (name, camera/microphone/speaker with a preview), and the call (video grid
// or speaker view, mute, screen share, chat, connection quality). The
// signaling and WebRTC work lives in starling.js, pure helpers in ui.js; this
// file turns the client's events into DOM.
//
// URL: "/" or "/r/{room}"; query: name=Ann, autojoin=1 (join at once with the
// default devices, for kiosks and tests), token=<JWT> (when the server needs
// one), room=x (on "/").
//
// Test hooks: window.starling = {client, state, join(), leave()}; state is
// kept current, document.body.dataset.status mirrors state.status (idle,
// lobby, joining, joined, reconnecting, left, failed); each other participant
// has a "#grid .tile.remote[data-participant-id]" with its name in ".name";
// chat lines are "#chat-log li" with ".who" and ".text".

import {StarlingClient} from '/starling.js';
import {
  gridLayout, pickFeatured, SPEAKER_VIEW_FROM, chatEncode, chatDecode, initials,
  joinErrorMessage, leaveMessage, mediaErrorMessage, qualityLabel, clockTime, randomRoomName,
} from '/ui.js';

const $ = (id) => document.getElementById(id);
const ui = {
  landing: $('landing'), form: $('join-form'), room: $('room'), name: $('name'), join: $('join'), randomRoom: $('random-room'),
  lobby: $('lobby'), lobbyForm: $('lobby-form'), lobbyTitle: $('lobby-title'), lobbyName: $('lobby-name'), lobbyJoin: $('lobby-join'),
  lobbyMic: $('lobby-mic'), lobbyCam: $('lobby-cam'), lobbyDevices: $('lobby-devices'), lobbyMessage: $('lobby-media-message'),
  preview: $('preview'), previewOff: $('preview-off'), previewOffText: $('preview-off-text'), micMeter: $('mic-meter'),
  conference: $('conference'), grid: $('grid'), status: $('status'),
  roomInfo: $('room-info'), roomLabel: $('room-label'), copyLink: $('copy-link'), peopleCount: $('people-count'), connChip: $('conn-chip'),
  banner: $('banner'), bannerText: $('banner-text'), bannerAction: $('banner-action'), bannerClose: $('banner-close'), media: $('media-message'),
  localTile: $('local-tile'), localVideo: $('local-video'), localName: $('local-name'),
  toggleMic: $('toggle-mic'), toggleCam: $('toggle-cam'), toggleScreen: $('toggle-screen'), toggleChat: $('toggle-chat'),
  toggleLayout: $('toggle-layout'), openSettings: $('open-settings'), leave: $('leave'), enableAudio: $('enable-audio'),
  chatPanel: $('chat-panel'), chatLog: $('chat-log'), chatEmpty: $('chat-empty'), chatForm: $('chat-form'), chatInput: $('chat-input'),
  chatClose: $('chat-close'), chatBadge: $('chat-badge'),
  ended: $('ended'), endedTitle: $('ended-title'), endedDetail: $('ended-detail'), rejoin: $('rejoin'),
  settings: $('settings'), settingsDevices: $('settings-devices'), audioMix: $('audio-mix'), audioSink: $('audio-sink'), toasts: $('toasts'),
};

const CAMERA = {width: {ideal: 1280}, height: {ideal: 720}, frameRate: {ideal: 30}};
const QUALITY_EVERY = 2000; // ms between connection quality updates
const SPEAKING_EVERY = 400; // ms between local speaking estimates (until the server sends activeSpeakers)
const SPEAKING_LEVEL = 0.02; // audioLevel above which someone is speaking

/** The app's state, readable by tests as window.starling.state. */
const state = {
  status: 'idle',
  view: 'landing', // landing | lobby | call | ended
  room: '',
  name: '',
  participantId: null,
  media: {audio: false, video: false, error: null}, // what we capture; error: the getUserMedia error name
  micOn: true,
  camOn: true,
  sharing: false,
  published: [], // [{id, kind, source, muted}] of our tracks, as the server knows them
  participants: {}, // id → {id, name, tracks: {trackId: kind}} for everyone else
  speakers: [], // participant ids speaking now (ours included)
  spoke: {}, // participant id → when it was last among the speakers (ms since the epoch)
  serverSpeakers: false, // the server sends activeSpeakers; no local estimate then
  layout: 'grid', // grid | speaker, what is shown
  layoutChoice: null, // what the user picked; null = automatic
  featured: null, // tile key on the stage in speaker view
  pinned: null, // tile key the user pinned
  quality: {}, // participant id → {score, rttMs, lossRate, jitterMs, bitrate}
  subscriptions: {}, // remote video track id → the last tile size given to setVideoSize
  layers: {}, // remote video track id → {layer, reason} the server forwards (subscriptionUpdated)
  publishLayers: {}, // our video track id → the layers some subscriber needs (publishLayers)
  chat: [], // [{from, name, text, at, self}]
  unread: 0,
  audioBlocked: false, // the browser refused to play sound until a click
  leaveReason: null,
  error: null, // the message of the last failure
  reconnectAttempt: 0,
};

let client = null;
const local = {stream: null, mic: null, cam: null, screen: null, meter: null};
const devices = {videoinput: storage('starling.camera'), audioinput: storage('starling.mic'), audiooutput: storage('starling.speaker')};
const tiles = new Map(); // tile key → Tile; key = participant id (camera), or "<participant id>/screen/<track id>"
const audios = new Map(); // remote audio track id → <audio>
const lastSpoke = new Map(); // tile key → time it last spoke
let timers = [];

window.starling = {
  get client() { return client; },
  state,
  join: () => join(),
  leave: () => leave(),
};

// ---- small DOM helpers ----

function setStatus(status, text = '') {
  state.status = status;
  document.body.dataset.status = status;
  ui.status.textContent = text;
}

function showView(view) {
  state.view = view;
  document.body.dataset.view = view;
  ui.landing.hidden = view !== 'landing';
  ui.lobby.hidden = view !== 'lobby';
  ui.conference.hidden = view !== 'call';
  ui.ended.hidden = view !== 'ended';
  ui.roomInfo.hidden = !(view === 'call' || view === 'lobby');
  ui.peopleCount.hidden = view !== 'call';
}

function showBanner(text, action = null) {
  ui.banner.hidden = !text;
  ui.bannerText.textContent = text ?? '';
  ui.bannerAction.hidden = !action;
  if (action) {
    ui.bannerAction.textContent = action.label;
    ui.bannerAction.onclick = action.run;
  }
  ui.media.hidden = !text;
  ui.media.textContent = text ?? '';
}

function toast(text, ms = 3000) {
  const el = document.createElement('div');
  el.className = 'toast';
  el.textContent = text;
  ui.toasts.append(el);
  setTimeout(() => el.remove(), ms);
}

function setPressed(button, on, labels) {
  button.setAttribute('aria-pressed', String(on));
  if (labels) button.title = on ? labels[0] : labels[1];
}

/** Reads (or with a value, writes) localStorage, which may be disabled. */
function storage(key, value) {
  try {
    if (value === undefined) return localStorage.getItem(key);
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch { /* storage disabled: remember nothing */ }
  return null;
}

function safeDecode(s) {
  try { return decodeURIComponent(s); } catch { return s; }
}

function roomPath(room) { return `/r/${encodeURIComponent(room)}`; }

// ---- start-up and routing ----

const params = new URLSearchParams(location.search);
// Several nodes of one service: ?servers=wss://a.example/v1/rtc,wss://b.example/v1/rtc
// (the page's own node when absent). The client joins through the first
// that answers and, when its node dies, reconnects through another.
const servers = params.get('servers') || undefined;
const serversQuery = servers ? `servers=${encodeURIComponent(servers)}` : '';

function init() {
  placeDevices(ui.lobbyDevices);
  ui.form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const room = ui.room.value.trim();
    if (!room) { ui.room.focus(); return; }
    const name = ui.name.value.trim();
    if (name) storage('starling.name', name);
    const query = [name ? `name=${encodeURIComponent(name)}` : '', serversQuery].filter(Boolean).join('&');
    history.pushState(null, '', roomPath(room) + (query ? `?${query}` : ''));
    route();
  });
  ui.randomRoom.addEventListener('click', () => { ui.room.value = randomRoomName(); ui.name.focus(); });
  ui.lobbyForm.addEventListener('submit', (ev) => { ev.preventDefault(); join(); });
  ui.lobbyMic.addEventListener('click', () => setLobbyMic(!state.micOn));
  ui.lobbyCam.addEventListener('click', () => setLobbyCam(!state.camOn));
  ui.copyLink.addEventListener('click', copyLink);
  ui.leave.addEventListener('click', () => leave());
  ui.enableAudio.addEventListener('click', unblockAudio);
  ui.toggleMic.addEventListener('click', () => setMic(!state.micOn));
  ui.toggleCam.addEventListener('click', () => setCam(!state.camOn));
  ui.toggleScreen.addEventListener('click', () => (state.sharing ? stopScreen() : startScreen()));
  ui.toggleChat.addEventListener('click', () => toggleChat());
  ui.chatClose.addEventListener('click', () => toggleChat(false));
  ui.chatForm.addEventListener('submit', (ev) => { ev.preventDefault(); sendChat(); });
  ui.toggleLayout.addEventListener('click', () => {
    state.layoutChoice = state.layout === 'grid' ? 'speaker' : 'grid';
    relayout();
  });
  ui.openSettings.addEventListener('click', openSettings);
  ui.settings.addEventListener('close', () => placeDevices(ui.lobbyDevices));
  ui.audioMix.checked = params.get('mix') === '1' || storage('starling.audioMix') === '1';
  ui.audioMix.addEventListener('change', () => {
    storage('starling.audioMix', ui.audioMix.checked ? '1' : '0');
    if (client?.state === 'joined') client.setAudioMix(ui.audioMix.checked).catch((err) => toast(`Audio mix: ${err.message}`));
  });
  ui.bannerClose.addEventListener('click', () => showBanner(null));
  ui.rejoin.addEventListener('click', () => { showView('lobby'); join(); });
  for (const sel of deviceSelects()) sel.addEventListener('change', () => chooseDevice(sel.dataset.kind, sel.value));
  document.addEventListener('keydown', onKey);
  document.addEventListener('visibilitychange', () => { for (const t of tiles.values()) requestVideo(t); });
  window.addEventListener('popstate', route);
  window.addEventListener('pagehide', () => client?.leave());
  new ResizeObserver(() => relayout()).observe(ui.grid);
  navigator.mediaDevices?.addEventListener?.('devicechange', () => fillDevices());
  route();
}

/** Shows the page the URL asks for. */
function route() {
  if (client) return; // in a call the URL stays put
  const m = location.pathname.match(/^\/r\/([^/]+)$/);
  const room = m ? safeDecode(m[1]) : (params.get('room') ?? '');
  const name = params.get('name') ?? storage('starling.name') ?? '';
  state.room = room;
  ui.room.value = room;
  ui.name.value = name;
  ui.lobbyName.value = name;
  if (!m) {
    stopPreview();
    showView('landing');
    setStatus('idle');
    (room ? ui.name : ui.room).focus();
    return;
  }
  ui.roomLabel.textContent = room;
  document.title = `${room} · Starling`;
  if (params.get('autojoin') === '1') {
    join();
    return;
  }
  ui.lobbyTitle.textContent = `Join “${room}”`;
  showView('lobby');
  setStatus('lobby');
  startPreview();
  (ui.lobbyName.value ? ui.lobbyJoin : ui.lobbyName).focus();
}

function onKey(ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || state.view !== 'call') return;
  const tag = ev.target?.tagName;
  if (tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT' || ev.target?.isContentEditable) {
    if (ev.key === 'Escape' && ev.target === ui.chatInput) toggleChat(false);
    return;
  }
  const k = ev.key.toLowerCase();
  if (k === 'm') setMic(!state.micOn);
  else if (k === 'v') setCam(!state.camOn);
  else if (k === 'c') toggleChat();
  else if (k === 'l') ui.toggleLayout.click();
  else if (k === 'escape' && !ui.chatPanel.hidden) toggleChat(false);
  else return;
  ev.preventDefault();
}

// ---- devices and preview ----

function deviceSelects() { return [...document.querySelectorAll('select[data-kind]')]; }

/** Moves the camera/microphone/speaker fields into container (lobby or settings). */
function placeDevices(container) {
  if (!$('camera-select')) {
    container.append($('device-fields').content.cloneNode(true));
    return;
  }
  for (const n of document.querySelectorAll('.device-field')) container.append(n);
}

/** Fills the device pickers from enumerateDevices (labels appear once access is granted). */
async function fillDevices() {
  const md = navigator.mediaDevices;
  if (!md?.enumerateDevices) return;
  let list = [];
  try { list = await md.enumerateDevices(); } catch { return; }
  const canPickSpeaker = 'setSinkId' in HTMLMediaElement.prototype;
  for (const sel of deviceSelects()) {
    const kind = sel.dataset.kind;
    const options = list.filter((d) => d.kind === kind && d.deviceId);
    const current = currentDevice(kind);
    sel.replaceChildren(...options.map((d, i) => {
      const o = document.createElement('option');
      o.value = d.deviceId;
      o.textContent = d.label || `${{videoinput: 'Camera', audioinput: 'Microphone', audiooutput: 'Speaker'}[kind]} ${i + 1}`;
      o.selected = d.deviceId === current;
      return o;
    }));
    if (!options.length) {
      const o = document.createElement('option');
      o.textContent = kind === 'audiooutput' ? 'System default' : 'None found';
      o.value = '';
      sel.append(o);
    }
    const hide = kind === 'audiooutput' && !canPickSpeaker;
    sel.hidden = hide;
    document.querySelector(`label[for="${sel.id}"]`).hidden = hide;
    sel.disabled = !options.length;
  }
}

function currentDevice(kind) {
  const track = kind === 'videoinput' ? local.cam : kind === 'audioinput' ? local.mic : null;
  return track?.getSettings?.().deviceId ?? devices[kind] ?? 'default';
}

function constraints(kind) {
  const id = devices[kind];
  if (kind === 'videoinput') return id ? {...CAMERA, deviceId: {exact: id}} : CAMERA;
  return id ? {deviceId: {exact: id}} : true;
}

/** Opens camera and/or microphone: {stream, error}; falls back to one kind when both fail together. */
async function getMedia({audio = true, video = true} = {}) {
  const md = navigator.mediaDevices;
  if (!md?.getUserMedia) return {stream: null, error: {name: 'Unsupported'}};
  const ask = async (a, v) => md.getUserMedia({audio: a ? constraints('audioinput') : false, video: v ? constraints('videoinput') : false});
  try {
    return {stream: await ask(audio, video), error: null};
  } catch (err) {
    if (err.name === 'OverconstrainedError') {
      // A remembered device is gone: forget it and use the default.
      devices.videoinput = devices.audioinput = null;
      try { return {stream: await ask(audio, video), error: null}; } catch { /* report the first error */ }
    }
    if (err.name === 'NotAllowedError' || err.name === 'SecurityError' || !(audio && video)) return {stream: null, error: err};
    for (const [a, v] of [[true, false], [false, true]]) {
      try { return {stream: await ask(a, v), error: err}; } catch { /* try the other kind */ }
    }
    return {stream: null, error: err};
  }
}

function adoptStream(stream) {
  for (const t of stream?.getTracks() ?? []) {
    if (t.kind === 'audio') { local.mic?.stop(); local.mic = t; } else { local.cam?.stop(); local.cam = t; }
  }
  local.stream = new MediaStream([local.cam, local.mic].filter(Boolean));
  state.media.audio = Boolean(local.mic);
  state.media.video = Boolean(local.cam);
}

async function startPreview() {
  const {stream, error} = await getMedia({audio: state.micOn, video: state.camOn});
  if (state.view !== 'lobby') { stream?.getTracks().forEach((t) => t.stop()); return; }
  adoptStream(stream);
  state.media.error = error?.name ?? null;
  const msg = mediaErrorMessage(error?.name, {hasAudio: Boolean(local.mic) || !state.micOn, hasVideo: Boolean(local.cam) || !state.camOn});
  ui.lobbyMessage.hidden = !msg;
  ui.lobbyMessage.textContent = msg ?? '';
  showPreview();
  fillDevices();
  startMeter();
}

function showPreview() {
  ui.preview.srcObject = local.cam ? new MediaStream([local.cam]) : null;
  ui.previewOff.hidden = Boolean(local.cam && state.camOn);
  ui.previewOffText.textContent = state.camOn ? 'No camera' : 'Camera is off';
  setPressed(ui.lobbyMic, state.micOn, ['Turn microphone off', 'Turn microphone on']);
  setPressed(ui.lobbyCam, state.camOn, ['Turn camera off', 'Turn camera on']);
}

function stopPreview() {
  stopMeter();
  if (client) return; // the tracks are in the call
  for (const t of [local.cam, local.mic]) t?.stop();
  local.cam = local.mic = local.stream = null;
  ui.preview.srcObject = null;
}

async function setLobbyMic(on) {
  state.micOn = on;
  if (local.mic) local.mic.enabled = on;
  else if (on) {
    const {stream} = await getMedia({audio: true, video: false});
    adoptStream(stream);
    startMeter();
  }
  showPreview();
}

async function setLobbyCam(on) {
  state.camOn = on;
  if (!on) {
    local.cam?.stop();
    local.cam = null;
  } else if (!local.cam) {
    const {stream, error} = await getMedia({audio: false, video: true});
    adoptStream(stream);
    if (error) { ui.lobbyMessage.hidden = false; ui.lobbyMessage.textContent = mediaErrorMessage(error.name, {hasAudio: true}); }
  }
  showPreview();
}

/** A level meter for the microphone in the lobby. */
function startMeter() {
  stopMeter();
  if (!local.mic || !globalThis.AudioContext) return;
  try {
    const ctx = new AudioContext();
    const src = ctx.createMediaStreamSource(new MediaStream([local.mic]));
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 512;
    src.connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    const tick = () => {
      analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const v of buf) sum += v * v;
      const level = Math.min(1, Math.sqrt(sum / buf.length) * 4);
      ui.micMeter.style.transform = `scaleX(${state.micOn ? level : 0})`;
      local.meter.raf = requestAnimationFrame(tick);
    };
    local.meter = {ctx, raf: requestAnimationFrame(tick)};
  } catch { /* no meter */ }
}

function stopMeter() {
  if (!local.meter) return;
  cancelAnimationFrame(local.meter.raf);
  local.meter.ctx.close().catch(() => {});
  local.meter = null;
}

/** The user picked another device: remember it and switch the live track. */
async function chooseDevice(kind, deviceId) {
  if (!deviceId) return;
  devices[kind] = deviceId;
  storage({videoinput: 'starling.camera', audioinput: 'starling.mic', audiooutput: 'starling.speaker'}[kind], deviceId);
  if (kind === 'audiooutput') {
    for (const a of audios.values()) a.setSinkId?.(deviceId).catch(() => {});
    return;
  }
  const isCam = kind === 'videoinput';
  if (isCam ? !state.camOn : false) return; // used the next time the camera goes on
  const {stream, error} = await getMedia({audio: !isCam, video: isCam});
  const track = stream?.getTracks()[0];
  if (!track) {
    toast(`Could not switch: ${error?.message ?? 'device unavailable'}`);
    return;
  }
  const old = isCam ? local.cam : local.mic;
  if (client && old && client.state === 'joined') {
    try {
      await client.replaceTrack(old, track);
    } catch (err) {
      track.stop();
      toast(`Could not switch: ${err.message}`);
      return;
    }
  }
  if (!isCam) track.enabled = state.micOn;
  old?.stop();
  if (isCam) local.cam = track; else local.mic = track;
  local.stream = new MediaStream([local.cam, local.mic].filter(Boolean));
  if (state.view === 'lobby') { showPreview(); if (!isCam) startMeter(); }
  if (client && !old) await publishLocal(client, [track]);
  showLocal();
}

function openSettings() {
  placeDevices(ui.settingsDevices);
  fillDevices();
  ui.settings.showModal();
}

// ---- joining and leaving ----

async function join() {
  if (client || !state.room) return;
  const room = state.room;
  const name = (state.view === 'lobby' ? ui.lobbyName.value : ui.name.value).trim() || params.get('name') || '';
  Object.assign(state, {
    room, name, participantId: null, published: [], participants: {}, leaveReason: null, error: null,
    chat: [], unread: 0, speakers: [], spoke: {}, serverSpeakers: false, quality: {}, subscriptions: {}, layers: {}, publishLayers: {},
    pinned: null, featured: null,
  });
  if (name) storage('starling.name', name);
  ui.lobbyJoin.disabled = true;
  stopMeter();
  setStatus('joining', `Joining ${room}…`);

  // Ask for the devices while we connect, unless the lobby already has them.
  const haveMedia = Boolean(local.cam || local.mic) || (!state.camOn && !state.micOn);
  const media = haveMedia ? Promise.resolve({stream: null, error: null}) : getMedia({audio: state.micOn, video: state.camOn});
  const c = new StarlingClient(servers);
  client = c;
  wireClient(c);
  try {
    await c.join(room, {name, token: params.get('token') ?? undefined, audioMix: ui.audioMix.checked});
  } catch (err) {
    if (client === c) client = null;
    const {stream} = await media;
    stream?.getTracks().forEach((t) => t.stop());
    stopPreview();
    ui.lobbyJoin.disabled = false;
    state.error = err.message;
    const msg = joinErrorMessage(err, room);
    showEnded(msg.title, msg.detail, msg.retry, 'Try again');
    setStatus('failed', `${msg.title}. ${msg.detail}`);
    return;
  }
  if (client !== c) return; // left while joining
  ui.lobbyJoin.disabled = false;
  state.participantId = c.participantId;
  ui.roomLabel.textContent = room;
  ui.localName.textContent = name ? `${name} (you)` : 'You';
  ui.localTile.querySelector('.avatar span').textContent = initials(name || 'You');
  ui.localTile.setAttribute('aria-label', `${name || 'You'} (you)`);
  resetChat();
  showView('call');
  showBanner(null);
  setStatus('joined', `In ${room}`);
  if (location.pathname !== roomPath(room)) history.replaceState(null, '', roomPath(room) + location.search);
  for (const p of c.participants.values()) ensureParticipant(p);
  updatePeople();
  timers = [setInterval(updateQuality, QUALITY_EVERY), setInterval(estimateSpeakers, SPEAKING_EVERY)];

  const {stream, error} = await media;
  if (client !== c) { stream?.getTracks().forEach((t) => t.stop()); return; }
  if (stream) adoptStream(stream);
  if (error) state.media.error = error.name;
  showMediaProblem(error);
  showLocal();
  await publishLocal(c, [local.mic, local.cam].filter(Boolean));
}

async function leave() {
  const c = client;
  if (!c) return;
  await c.leave(); // emits 'leave', which resets the page
}

/** Resets the page after the session ended, for whatever reason. */
function onLeft(reason) {
  client = null;
  for (const t of timers) clearInterval(t);
  timers = [];
  for (const t of [local.cam, local.mic, local.screen]) t?.stop();
  local.cam = local.mic = local.screen = local.stream = null;
  state.sharing = false;
  ui.localVideo.srcObject = null;
  for (const key of [...tiles.keys()]) removeTile(key);
  for (const id of [...audios.keys()]) removeAudio(id);
  state.participantId = null;
  state.published = [];
  state.participants = {};
  state.leaveReason = reason;
  if (ui.settings.open) ui.settings.close();
  showAudioBlocked(false);
  showBanner(null);
  ui.connChip.hidden = true;
  const text = leaveMessage(reason);
  showEnded(reason === 'clientLeave' ? 'You left the call' : 'The call ended', text, true);
  setStatus('left', text);
}

function showEnded(title, detail, canRetry, retryLabel = 'Rejoin') {
  ui.endedTitle.textContent = title;
  ui.endedDetail.textContent = detail;
  ui.rejoin.hidden = !canRetry;
  ui.rejoin.textContent = retryLabel;
  showView('ended');
  (canRetry ? ui.rejoin : ui.endedTitle).focus?.();
}

function wireClient(c) {
  const mine = (fn) => (detail) => { if (client === c) fn(detail); };
  c.on('participantJoined', mine(({participant: p}) => { ensureParticipant(p); updatePeople(); }));
  c.on('participantUpdated', mine(({participant: p}) => ensureParticipant(p)));
  c.on('participantLeft', mine(({participantId}) => { removeParticipant(participantId); updatePeople(); }));
  c.on('trackPublished', mine(({track}) => refreshParticipant(track.participantId)));
  c.on('trackUpdated', mine(({track}) => {
    if (track.participantId === c.participantId) return;
    refreshParticipant(track.participantId);
  }));
  c.on('trackUnpublished', mine(({participantId, trackId}) => removeRemoteTrack(participantId, trackId)));
  c.on('track', mine(addRemoteTrack));
  c.on('trackUnsubscribed', mine(({participantId, trackId}) => removeRemoteTrack(participantId, trackId)));
  c.on('activeSpeakers', mine(({speakers}) => {
    state.serverSpeakers = true;
    setSpeakers((speakers ?? []).map((s) => s.participantId));
  }));
  c.on('data', mine(onData));
  c.on('subscriptionUpdated', mine(({trackId, layer, reason}) => { state.layers[trackId] = {layer, reason: reason ?? ''}; }));
  c.on('publishLayers', mine(({trackId, active}) => { state.publishLayers[trackId] = active; }));
  c.on('reconnecting', mine(({attempt}) => {
    state.reconnectAttempt = attempt;
    setStatus('reconnecting', 'Connection lost. Reconnecting…');
    ui.connChip.hidden = false;
    ui.connChip.textContent = attempt > 1 ? `Reconnecting… (attempt ${attempt})` : 'Reconnecting…';
    showBanner('Connection lost. Trying to reconnect — you will be back in the call automatically.');
  }));
  c.on('reconnected', mine(({resumed}) => {
    state.reconnectAttempt = 0;
    state.participantId = c.participantId;
    ui.connChip.hidden = true;
    showBanner(null);
    setStatus('joined', `In ${state.room}`);
    const where = c.urls.length > 1 ? ` through ${new URL(c.url).host}` : '';
    toast((resumed ? 'Reconnected' : 'Reconnected (rejoined the call)') + where);
    syncPublished();
  }));
  c.on('leave', mine(({reason}) => onLeft(reason)));
  c.on('error', ({error}) => console.warn(`starling: ${error?.name ?? 'Error'}: ${error?.message ?? error}`));
}

function copyLink() {
  const url = location.origin + roomPath(state.room) + (serversQuery ? `?${serversQuery}` : '');
  const done = () => toast('Link copied — send it to the people you want to talk to');
  if (navigator.clipboard?.writeText) navigator.clipboard.writeText(url).then(done, () => prompt('Copy this link', url));
  else prompt('Copy this link', url);
}

function updatePeople() {
  const n = 1 + Object.keys(state.participants).length;
  ui.peopleCount.textContent = n === 1 ? 'Only you' : `${n} people`;
}

// ---- local media in the call ----

function showMediaProblem(error) {
  const msg = mediaErrorMessage(error?.name, {hasAudio: Boolean(local.mic) || !state.micOn, hasVideo: Boolean(local.cam) || !state.camOn});
  showBanner(msg, msg ? {label: 'Try again', run: retryMedia} : null);
}

async function retryMedia() {
  const c = client;
  const want = {audio: state.micOn && !local.mic, video: state.camOn && !local.cam};
  if (!c || (!want.audio && !want.video)) return;
  const {stream, error} = await getMedia(want);
  if (client !== c) { stream?.getTracks().forEach((t) => t.stop()); return; }
  if (stream) adoptStream(stream);
  state.media.error = error?.name ?? null;
  showMediaProblem(error);
  showLocal();
  await publishLocal(c, stream?.getTracks() ?? []);
}

async function publishLocal(c, tracks) {
  const results = await Promise.allSettled(tracks.map((track) => c.publish(track, track.kind === 'audio'
    ? {source: 'microphone', name: 'microphone'}
    : {source: 'camera', name: 'camera', simulcast: true})));
  if (client !== c) return;
  const failed = [];
  results.forEach((r, i) => { if (r.status === 'rejected') failed.push(`${tracks[i].kind}: ${r.reason.message}`); });
  syncPublished();
  for (const t of tracks) {
    const on = t.kind === 'audio' ? state.micOn : state.camOn;
    if (!on && client === c) c.mute(t, true).catch(() => {});
  }
  if (failed.length) {
    state.error = failed.join('; ');
    showBanner(`Could not send your ${failed.join('; ')}`, {label: 'Try again', run: () => publishLocal(c, tracks)});
  }
}

function syncPublished() {
  if (!client) return;
  state.published = [...client.localTracks.values()].filter((l) => l.info)
    .map((l) => ({id: l.info.id, kind: l.track.kind, source: l.source, muted: Boolean(l.info.muted)}));
}

function showLocal() {
  ui.localVideo.srcObject = local.cam && state.camOn ? new MediaStream([local.cam]) : null;
  ui.localVideo.play?.().catch(() => {});
  ui.localTile.classList.toggle('no-video', !(local.cam && state.camOn));
  ui.localTile.querySelector('.mic-off').hidden = Boolean(local.mic && state.micOn);
  setPressed(ui.toggleMic, state.micOn && Boolean(local.mic), ['Turn microphone off (M)', 'Turn microphone on (M)']);
  setPressed(ui.toggleCam, state.camOn && Boolean(local.cam), ['Turn camera off (V)', 'Turn camera on (V)']);
  relayout();
}

async function setMic(on) {
  const c = client;
  state.micOn = on;
  if (!local.mic && on && c) {
    const {stream, error} = await getMedia({audio: true, video: false});
    if (!stream) { state.micOn = false; showMediaProblem(error); showLocal(); return; }
    adoptStream(stream);
    showLocal();
    await publishLocal(c, [local.mic]);
    return;
  }
  if (local.mic) local.mic.enabled = on;
  showLocal();
  if (c && local.mic && c._findLocal(local.mic.id)?.info) {
    await c.mute(local.mic, !on).catch((err) => toast(`Could not ${on ? 'unmute' : 'mute'}: ${err.message}`));
    syncPublished();
  }
}

/** Camera off stops the camera (its light goes out); on opens it again and
 * sends it in place of the old track, so no renegotiation is needed. */
async function setCam(on) {
  const c = client;
  state.camOn = on;
  const pub = local.cam && c?._findLocal(local.cam.id);
  if (!on) {
    showLocal();
    if (pub?.info) await c.mute(local.cam, true).catch(() => {});
    local.cam?.stop();
    syncPublished();
    return;
  }
  const {stream, error} = await getMedia({audio: false, video: true});
  const track = stream?.getVideoTracks()[0];
  if (!track) { state.camOn = false; showMediaProblem(error); showLocal(); return; }
  if (pub && c.state === 'joined') {
    await c.replaceTrack(local.cam, track);
    local.cam = track;
    showLocal();
    await c.mute(track, false).catch(() => {});
  } else {
    local.cam = track;
    showLocal();
    if (c) await publishLocal(c, [track]);
  }
  local.stream = new MediaStream([local.cam, local.mic].filter(Boolean));
  showBanner(null);
  syncPublished();
}

async function startScreen() {
  const c = client;
  if (!c || !navigator.mediaDevices?.getDisplayMedia) {
    toast('Screen sharing is not available in this browser.');
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({video: {frameRate: {ideal: 15, max: 30}}, audio: false});
  } catch (err) {
    if (err.name !== 'NotAllowedError' && err.name !== 'AbortError') toast(`Could not share the screen: ${err.message}`);
    return;
  }
  const track = stream.getVideoTracks()[0];
  if (client !== c) { track.stop(); return; }
  track.contentHint = 'detail';
  local.screen = track;
  state.sharing = true;
  setPressed(ui.toggleScreen, true, ['Stop sharing', 'Share your screen']);
  track.addEventListener('ended', () => stopScreen());
  showLocalScreen(track);
  try {
    await c.publish(track, {source: 'screen', name: 'screen'});
    syncPublished();
  } catch (err) {
    toast(`Could not share the screen: ${err.message}`);
    stopScreen();
  }
}

async function stopScreen() {
  const track = local.screen;
  if (!track) return;
  local.screen = null;
  state.sharing = false;
  setPressed(ui.toggleScreen, false, ['Stop sharing', 'Share your screen']);
  removeTile('local/screen');
  track.stop();
  if (client?._findLocal(track.id)) await client.unpublish(track).catch(() => {});
  syncPublished();
}

function showLocalScreen(track) {
  const tile = makeTile('local/screen', null, 'screen');
  tile.el.classList.remove('remote');
  tile.el.classList.add('local');
  tile.nameEl.textContent = 'Your screen';
  tile.video.srcObject = new MediaStream([track]);
  tile.el.classList.remove('no-video');
  relayout();
}

// ---- remote participants and their tiles ----

/** Creates a tile element from the template. kind: camera | screen. */
function makeTile(key, participantId, kind) {
  let tile = tiles.get(key);
  if (tile) return tile;
  const el = $('remote-tile').content.firstElementChild.cloneNode(true);
  el.dataset.key = key;
  if (kind === 'camera') el.dataset.participantId = participantId;
  else {
    el.classList.remove('remote');
    el.classList.add('screen-share');
    if (participantId) el.dataset.screenOf = participantId;
  }
  el.classList.add('no-video');
  tile = {
    key, participantId, kind, el, video: el.querySelector('video'), nameEl: el.querySelector('.name'),
    avatar: el.querySelector('.avatar span'), micOff: el.querySelector('.mic-off'), quality: el.querySelector('.quality'),
    pin: el.querySelector('.pin'), videoTrackId: null, visible: true,
  };
  tile.pin.addEventListener('click', () => {
    state.pinned = state.pinned === key ? null : key;
    if (state.pinned) state.layoutChoice = 'speaker';
    relayout();
  });
  el.addEventListener('dblclick', () => tile.pin.click());
  el.addEventListener('keydown', (ev) => {
    if ((ev.key === 'Enter' || ev.key === 'p') && ev.target === el) { ev.preventDefault(); tile.pin.click(); }
  });
  tile.video.addEventListener('resize', () => requestVideo(tile));
  ui.grid.append(el);
  tiles.set(key, tile);
  resizeObserver.observe(tile.video);
  visibilityObserver.observe(el);
  return tile;
}

function removeTile(key) {
  const tile = tiles.get(key);
  if (!tile) return;
  resizeObserver.unobserve(tile.video);
  visibilityObserver.unobserve(tile.el);
  tile.video.srcObject = null;
  tile.el.remove();
  tiles.delete(key);
  lastSpoke.delete(key);
  if (state.pinned === key) state.pinned = null;
  relayout();
}

function ensureParticipant(p) {
  if (p.id === state.participantId) return;
  let sp = state.participants[p.id];
  if (!sp) sp = state.participants[p.id] = {id: p.id, name: '', tracks: {}};
  sp.name = p.name ?? '';
  const tile = makeTile(p.id, p.id, 'camera');
  const label = p.name || 'Guest';
  tile.nameEl.textContent = label;
  tile.avatar.textContent = initials(label);
  tile.el.setAttribute('aria-label', label);
  tile.pin.setAttribute('aria-label', `Pin ${label}`);
  refreshParticipant(p.id);
  relayout();
}

function removeParticipant(id) {
  for (const [key, t] of [...tiles]) if (t.participantId === id) removeTile(key);
  for (const [trackId, a] of [...audios]) if (a.dataset.participantId === id) removeAudio(trackId);
  delete state.participants[id];
  delete state.quality[id];
  state.speakers = state.speakers.filter((s) => s !== id);
}

function addRemoteTrack({participantId, trackId, track, kind}) {
  if (participantId === 'mix') { // the room's audio mix belongs to nobody: no tile
    addAudio(participantId, trackId, track);
    return;
  }
  const p = client.participants.get(participantId);
  if (!state.participants[participantId]) ensureParticipant(p ?? {id: participantId, name: ''});
  state.participants[participantId].tracks[trackId] = kind;
  if (kind === 'audio') {
    addAudio(participantId, trackId, track);
  } else if (client.trackInfo(trackId)?.source === 'screen') {
    const tile = makeTile(`${participantId}/screen/${trackId}`, participantId, 'screen');
    const label = `${p?.name || 'Guest'}’s screen`;
    tile.nameEl.textContent = label;
    tile.el.setAttribute('aria-label', label);
    tile.pin.setAttribute('aria-label', `Pin ${label}`);
    setTileVideo(tile, trackId, track);
  } else {
    setTileVideo(tiles.get(participantId), trackId, track);
  }
  refreshParticipant(participantId);
  relayout();
}

function removeRemoteTrack(participantId, trackId) {
  if (participantId === 'mix') {
    removeAudio(trackId);
    return;
  }
  const sp = state.participants[participantId];
  if (sp) delete sp.tracks[trackId];
  delete state.subscriptions[trackId];
  removeAudio(trackId);
  for (const [key, t] of [...tiles]) {
    if (t.videoTrackId !== trackId) continue;
    if (t.kind === 'screen') removeTile(key);
    else setTileVideo(t, null, null);
  }
  refreshParticipant(participantId);
}

function setTileVideo(tile, trackId, track) {
  if (!tile) return;
  tile.videoTrackId = trackId;
  tile.video.srcObject = track ? new MediaStream([track]) : null;
  if (track) tile.video.play().catch(() => {});
  if (tile.kind === 'screen') tile.el.classList.toggle('no-video', !track);
  requestVideo(tile);
}

function addAudio(participantId, trackId, track) {
  removeAudio(trackId);
  const a = document.createElement('audio');
  a.autoplay = true;
  a.dataset.participantId = participantId;
  a.srcObject = new MediaStream([track]);
  if (devices.audiooutput && a.setSinkId) a.setSinkId(devices.audiooutput).catch(() => {});
  ui.audioSink.append(a);
  audios.set(trackId, a);
  a.play().catch((err) => { if (err.name === 'NotAllowedError') showAudioBlocked(true); });
}

function removeAudio(trackId) {
  const a = audios.get(trackId);
  if (!a) return;
  a.srcObject = null;
  a.remove();
  audios.delete(trackId);
}

/** Updates a participant's tiles from what the server says about its tracks (mute states). */
function refreshParticipant(id) {
  const p = client?.participants.get(id);
  const tile = tiles.get(id);
  if (!p || !tile) return;
  const tracks = p.tracks ?? [];
  const mic = tracks.find((t) => t.kind === 'audio' && t.source !== 'screen_audio');
  const cam = tracks.find((t) => t.kind === 'video' && t.source !== 'screen');
  tile.micOff.hidden = Boolean(mic && !mic.muted);
  tile.camMuted = !cam || Boolean(cam.muted);
  tile.el.classList.toggle('no-video', tile.camMuted || !tile.videoTrackId);
  tile.el.classList.toggle('mic-muted', !tile.micOff.hidden);
  requestVideo(tile);
}

// ---- adaptive subscription ----

const resizeObserver = new ResizeObserver((entries) => {
  for (const e of entries) {
    const tile = [...tiles.values()].find((t) => t.video === e.target);
    if (tile) requestVideo(tile);
  }
});

const visibilityObserver = new IntersectionObserver((entries) => {
  for (const e of entries) {
    const tile = tiles.get(e.target.dataset.key);
    if (!tile) continue;
    tile.visible = e.isIntersecting;
    requestVideo(tile);
  }
}, {threshold: 0});

/** Asks the server for the layer that fits the tile's video on screen, or pauses it when not seen. */
function requestVideo(tile) {
  if (!client || !tile?.videoTrackId || tile.participantId === null) return;
  const visible = tile.visible && !tile.el.hidden && document.visibilityState === 'visible' && !(tile.kind === 'camera' && tile.camMuted);
  const size = {width: tile.video.clientWidth, height: tile.video.clientHeight, visible, pixelRatio: devicePixelRatio || 1};
  state.subscriptions[tile.videoTrackId] = {...size};
  client.setVideoSize(tile.videoTrackId, size);
}

// ---- layout: grid or speaker view ----

function relayout() {
  const all = [ui.localTile, ...[...tiles.values()].map((t) => t.el)];
  const keys = [...tiles.keys()];
  const screens = keys.filter((k) => k.includes('/screen/')); // remote screen shares
  const auto = all.length >= SPEAKER_VIEW_FROM || screens.length > 0 ? 'speaker' : 'grid';
  state.layout = all.length < 2 ? 'grid' : (state.layoutChoice ?? auto);
  ui.grid.dataset.layout = state.layout;
  const speakerView = state.layout === 'speaker';
  ui.toggleLayout.title = speakerView ? 'Switch to grid view (L)' : 'Switch to speaker view (L)';
  ui.toggleLayout.setAttribute('aria-pressed', String(speakerView));
  const width = ui.grid.clientWidth;
  const height = ui.grid.clientHeight;
  const narrow = width < 700;
  ui.grid.classList.toggle('narrow', narrow);
  for (const el of all) el.classList.remove('featured');
  if (!speakerView) {
    state.featured = null;
    for (const el of all) el.hidden = false;
    const g = gridLayout({width, height, count: all.length, gap: 10});
    ui.grid.style.setProperty('--cols', g.cols);
    ui.grid.style.setProperty('--tile-w', `${g.tileWidth}px`);
    ui.grid.style.setProperty('--tile-h', `${g.tileHeight}px`);
    return;
  }
  const remoteKeys = keys.filter((k) => !k.startsWith('local'));
  const speaking = state.speakers.filter((id) => id !== state.participantId);
  const lastSpeaker = [...lastSpoke.entries()].filter(([k]) => remoteKeys.includes(k)).sort((a, b) => b[1] - a[1])[0]?.[0] ?? null;
  const featuredKey = pickFeatured({pinned: state.pinned, screens, speaking, lastSpeaker, tiles: remoteKeys.length ? remoteKeys : keys}) ?? 'local';
  state.featured = featuredKey;
  const featuredEl = featuredKey === 'local' ? ui.localTile : tiles.get(featuredKey).el;
  featuredEl.classList.add('featured');
  featuredEl.hidden = false;
  // The strip shows you, then who spoke most recently, as many as fit; the
  // rest are hidden (and so paused).
  const stripSize = narrow ? Math.max(1, Math.floor(width / 120)) : Math.max(1, Math.floor((height + 10) / 130));
  const rank = (el) => (el === ui.localTile ? Infinity : lastSpoke.get(el.dataset.key) ?? 0);
  const others = all.filter((el) => el !== featuredEl).sort((a, b) => rank(b) - rank(a));
  others.forEach((el, i) => { el.hidden = i >= stripSize; });
  ui.grid.style.setProperty('--strip', Math.min(stripSize, others.length) || 1);
  for (const t of tiles.values()) requestVideo(t);
}

// ---- active speakers ----

function setSpeakers(ids) {
  const now = Date.now();
  state.speakers = ids;
  const keys = new Set(ids.map((id) => (id === state.participantId ? 'local' : id)));
  for (const k of keys) lastSpoke.set(k, now);
  for (const id of ids) state.spoke[id] = now;
  ui.localTile.classList.toggle('speaking', keys.has('local'));
  for (const [key, t] of tiles) t.el.classList.toggle('speaking', keys.has(key));
  if (state.layout === 'speaker' && !state.pinned) {
    const top = ids.find((id) => id !== state.participantId && tiles.has(id));
    if (top && top !== state.featured) relayout();
  }
}

/** Until the server sends activeSpeakers, guesses who speaks from the audio levels in getStats. */
async function estimateSpeakers() {
  const c = client;
  if (!c || state.serverSpeakers || c.state !== 'joined') return;
  try {
    const levels = new Map();
    const byMid = new Map([...c.remoteTracks.values()].map((rt) => [rt.mid, rt]));
    (await c.subscriber.getStats()).forEach((s) => {
      if (s.type !== 'inbound-rtp' || s.kind !== 'audio') return;
      const rt = byMid.get(s.mid) ?? [...c.remoteTracks.values()].find((r) => r.track.id === s.trackIdentifier);
      if (rt) levels.set(rt.participantId, Math.max(levels.get(rt.participantId) ?? 0, s.audioLevel ?? 0));
    });
    if (state.micOn && local.mic) {
      (await c.publisher.getStats()).forEach((s) => {
        if (s.type === 'media-source' && s.kind === 'audio') levels.set(c.participantId, s.audioLevel ?? 0);
      });
    }
    if (client !== c || state.serverSpeakers) return;
    setSpeakers([...levels].filter(([, l]) => l > SPEAKING_LEVEL).sort((a, b) => b[1] - a[1]).map(([id]) => id));
  } catch { /* the connection closed */ }
}

// ---- connection quality ----

async function updateQuality() {
  const c = client;
  if (!c || c.state !== 'joined') return;
  let q;
  try { q = await c.connectionQuality(); } catch { return; }
  if (client !== c) return;
  for (const [id, v] of q) state.quality[id] = v;
  const show = (el, v) => {
    if (!el) return;
    el.dataset.score = v?.score ?? 'unknown';
    el.title = qualityLabel(v);
  };
  show(ui.localTile.querySelector('.quality'), q.get(c.participantId));
  for (const t of tiles.values()) if (t.kind === 'camera') show(t.quality, q.get(t.participantId));
}

// ---- chat ----

function resetChat() {
  ui.chatLog.replaceChildren();
  ui.chatEmpty.hidden = false;
  state.unread = 0;
  ui.chatBadge.hidden = true;
}

function toggleChat(open = ui.chatPanel.hidden) {
  ui.chatPanel.hidden = !open;
  setPressed(ui.toggleChat, open);
  document.body.classList.toggle('chat-open', open);
  if (open) {
    state.unread = 0;
    ui.chatBadge.hidden = true;
    // Next frame: the key that opened the panel must not type into it.
    requestAnimationFrame(() => ui.chatInput.focus());
  } else {
    ui.toggleChat.focus();
  }
  relayout();
}

async function sendChat() {
  const text = ui.chatInput.value.trim();
  const c = client;
  if (!text || !c) return;
  try {
    await c.sendData(chatEncode(text));
  } catch (err) {
    toast(`Message not sent: ${err.message}`);
    return;
  }
  ui.chatInput.value = '';
  addChat({from: c.participantId, name: state.name || 'You', text, self: true});
}

function onData({from, payload}) {
  const msg = chatDecode(payload);
  if (!msg) return;
  const name = client?.participants.get(from)?.name || state.participants[from]?.name || 'Guest';
  addChat({from, name, text: msg.text, self: false});
}

function addChat({from, name, text, self}) {
  const at = new Date();
  state.chat.push({from, name, text, at: at.toISOString(), self});
  const li = document.createElement('li');
  li.className = self ? 'self' : '';
  li.dataset.from = from ?? '';
  const head = document.createElement('div');
  head.className = 'chat-meta';
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = self ? 'You' : name;
  const time = document.createElement('time');
  time.dateTime = at.toISOString();
  time.textContent = clockTime(at);
  head.append(who, time);
  const body = document.createElement('p');
  body.className = 'text';
  body.textContent = text;
  li.append(head, body);
  ui.chatLog.append(li);
  ui.chatEmpty.hidden = true;
  li.scrollIntoView({block: 'end'});
  if (!self && ui.chatPanel.hidden) {
    state.unread++;
    ui.chatBadge.hidden = false;
    ui.chatBadge.textContent = state.unread > 9 ? '9+' : String(state.unread);
    toast(`${name}: ${text.length > 80 ? text.slice(0, 80) + '…' : text}`);
  }
}

// ---- sound that the browser would not autoplay ----

function showAudioBlocked(blocked) {
  state.audioBlocked = blocked;
  ui.enableAudio.hidden = !blocked;
}

function unblockAudio() {
  showAudioBlocked(false);
  for (const a of audios.values()) a.play().catch(() => {});
}

init();
