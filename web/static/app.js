// Starling's browser app: join a room, publish camera and microphone, show
// every other participant in a grid. The signaling and WebRTC work lives in
// starling.js; this file only turns its events into DOM.
//
// URL: "/" or "/r/{room}"; query: name=Ann, autojoin=1 (join at once), room=x.
// Test hook: window.starling = {client, state, join(), leave()}; state is
// kept current (see `state` below) and document.body.dataset.status mirrors
// state.status.

import {StarlingClient} from '/starling.js';

const $ = (id) => document.getElementById(id);
const ui = {
  form: $('join-form'), room: $('room'), name: $('name'), join: $('join'),
  status: $('status'), media: $('media-message'), enableAudio: $('enable-audio'),
  conference: $('conference'), grid: $('grid'), roomLabel: $('room-label'), leave: $('leave'),
  localTile: $('local-tile'), localVideo: $('local-video'), localName: $('local-name'),
};

const VIDEO = {width: {ideal: 640}, height: {ideal: 360}, frameRate: {ideal: 30}};

/** The app's state, readable by tests as window.starling.state. */
const state = {
  status: 'idle', // idle | joining | joined | left | failed
  room: '',
  name: '',
  participantId: null,
  media: {audio: false, video: false, error: null}, // what we capture; error: the getUserMedia error name
  published: [], // [{id, kind, source}] of our tracks, as the server knows them
  participants: {}, // id → {id, name, tracks: {trackId: kind}} for everyone else
  audioBlocked: false, // the browser refused to autoplay sound until a click
  leaveReason: null,
  error: null, // the message of the last failure
};

let client = null;
let localStream = null;
const tiles = new Map(); // participantId → {el, video, nameEl, tracks: Map(trackId → MediaStreamTrack)}

window.starling = {
  get client() { return client; },
  state,
  join: () => join(),
  leave: () => leave(),
};

function setStatus(status, text = '') {
  state.status = status;
  document.body.dataset.status = status;
  ui.status.textContent = text;
}

function showMediaMessage(text) {
  ui.media.textContent = text ?? '';
  ui.media.hidden = !text;
}

function showForm(show) {
  ui.form.hidden = !show;
  ui.conference.hidden = show;
  ui.leave.hidden = show;
  ui.roomLabel.hidden = show;
  ui.join.disabled = false;
}

// ---- start-up ----

function init() {
  const params = new URLSearchParams(location.search);
  const m = location.pathname.match(/^\/r\/([^/]+)$/);
  ui.room.value = m ? safeDecode(m[1]) : (params.get('room') ?? '');
  ui.name.value = params.get('name') ?? storage('starling.name') ?? '';
  ui.form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    join();
  });
  ui.leave.addEventListener('click', () => leave());
  ui.enableAudio.addEventListener('click', unblockAudio);
  window.addEventListener('pagehide', () => client?.leave());
  setStatus('idle');
  if (params.get('autojoin') === '1' && ui.room.value) join();
  else (ui.room.value ? ui.name : ui.room).focus();
}

/** Reads (or with a value, writes) localStorage, which may be disabled. */
function storage(key, value) {
  try {
    if (value === undefined) return localStorage.getItem(key);
    localStorage.setItem(key, value);
  } catch { /* storage disabled: remember nothing */ }
  return null;
}

function safeDecode(s) {
  try { return decodeURIComponent(s); } catch { return s; }
}

// ---- joining and leaving ----

async function join() {
  if (state.status === 'joining' || state.status === 'joined') return;
  const room = ui.room.value.trim();
  const name = ui.name.value.trim();
  if (!room) {
    setStatus('idle', 'Enter a room name.');
    ui.room.focus();
    return;
  }
  Object.assign(state, {room, name, participantId: null, published: [], participants: {}, leaveReason: null, error: null});
  state.media = {audio: false, video: false, error: null};
  if (name) storage('starling.name', name);
  ui.join.disabled = true;
  showMediaMessage('');
  setStatus('joining', `Joining ${room}…`);

  const media = getMedia(); // ask for the devices while we connect
  const c = new StarlingClient();
  client = c;
  wireClient(c);
  try {
    await c.join(room, {name});
  } catch (err) {
    if (client === c) client = null;
    media.then(({stream}) => stream?.getTracks().forEach((t) => t.stop()));
    state.error = err.message;
    setStatus('failed', `Could not join ${room}: ${err.message}`);
    ui.join.disabled = false;
    return;
  }
  if (client !== c) return; // left while joining
  state.participantId = c.participantId;
  ui.roomLabel.textContent = room;
  ui.localName.textContent = name ? `${name} (you)` : 'You';
  ui.localTile.querySelector('.placeholder').textContent = (name || 'You').slice(0, 1).toUpperCase();
  showForm(false);
  setStatus('joined', `In ${room}`);
  const path = `/r/${encodeURIComponent(room)}`;
  if (location.pathname !== path) history.replaceState(null, '', path + location.search);
  for (const p of c.participants.values()) ensureTile(p.id, p.name);
  await publishMedia(c, await media);
}

async function leave() {
  const c = client;
  if (!c) return;
  await c.leave(); // emits 'leave', which resets the page
}

/** Resets the page after the session ended, for whatever reason. */
function onLeft(reason) {
  client = null;
  localStream?.getTracks().forEach((t) => t.stop());
  localStream = null;
  ui.localVideo.srcObject = null;
  for (const id of [...tiles.keys()]) removeTile(id);
  state.participantId = null;
  state.published = [];
  state.leaveReason = reason;
  showForm(true);
  showAudioBlocked(false);
  setStatus('left', reason === 'clientLeave' ? 'You left the room.' : `Disconnected from the room (${reason}).`);
}

function wireClient(c) {
  const mine = (fn) => (detail) => { if (client === c) fn(detail); };
  c.on('participantJoined', mine(({participant: p}) => ensureTile(p.id, p.name)));
  c.on('participantUpdated', mine(({participant: p}) => ensureTile(p.id, p.name)));
  c.on('participantLeft', mine(({participantId}) => removeTile(participantId)));
  c.on('track', mine(addRemoteTrack));
  c.on('trackUnsubscribed', mine(({participantId, trackId}) => removeRemoteTrack(participantId, trackId)));
  c.on('trackUnpublished', mine(({participantId, trackId}) => removeRemoteTrack(participantId, trackId)));
  c.on('leave', mine(({reason}) => onLeft(reason)));
  c.on('error', ({error}) => console.warn('starling:', error));
}

// ---- local media ----

/** Resolves to {stream, error}: stream holds what we could open (maybe only one kind), error why not all. */
async function getMedia() {
  const md = navigator.mediaDevices;
  if (!md?.getUserMedia) return {stream: null, error: {name: 'Unsupported'}};
  try {
    return {stream: await md.getUserMedia({audio: true, video: VIDEO}), error: null};
  } catch (err) {
    if (err.name === 'NotAllowedError' || err.name === 'SecurityError') return {stream: null, error: err};
    for (const constraints of [{audio: true}, {video: VIDEO}]) {
      try {
        return {stream: await md.getUserMedia(constraints), error: err};
      } catch { /* try the other kind */ }
    }
    return {stream: null, error: err};
  }
}

function mediaMessage(error, hasAudio, hasVideo) {
  const why = {
    NotAllowedError: 'access to the camera and microphone was denied',
    SecurityError: 'access to the camera and microphone was denied',
    NotFoundError: 'no camera or microphone was found',
    NotReadableError: 'the camera or microphone is busy in another application',
    OverconstrainedError: 'the camera cannot deliver the requested size',
    Unsupported: 'this page cannot use a camera here (it needs HTTPS or localhost)',
  }[error.name] ?? `the camera or microphone failed (${error.name || error.message})`;
  if (!hasAudio && !hasVideo) {
    return `You joined to watch only: ${why}. Others can't see or hear you. ` +
      'Allow camera and microphone access for this site, then leave and join again.';
  }
  return hasAudio ? `Your camera is off: ${why}. Others can hear you.` : `Your microphone is off: ${why}. Others can see you.`;
}

async function publishMedia(c, {stream, error}) {
  state.media.error = error?.name ?? null;
  localStream = stream;
  const tracks = stream?.getTracks() ?? [];
  state.media.audio = tracks.some((t) => t.kind === 'audio');
  state.media.video = tracks.some((t) => t.kind === 'video');
  if (error) showMediaMessage(mediaMessage(error, state.media.audio, state.media.video));
  ui.localTile.classList.toggle('no-video', !state.media.video);
  if (!stream) return;
  ui.localVideo.srcObject = stream;
  ui.localVideo.play().catch(() => {}); // muted: autoplay is allowed
  const results = await Promise.allSettled(tracks.map((track) =>
    c.publish(track, {source: track.kind === 'audio' ? 'microphone' : 'camera'})));
  if (client !== c) return;
  const failed = [];
  results.forEach((r, i) => {
    if (r.status === 'fulfilled') state.published.push({id: r.value.id, kind: tracks[i].kind, source: r.value.source});
    else failed.push(`${tracks[i].kind}: ${r.reason.message}`);
  });
  if (failed.length) {
    state.error = failed.join('; ');
    showMediaMessage(`Could not send your ${failed.join('; ')}`);
  }
}

// ---- remote participants ----

function ensureTile(id, name) {
  let tile = tiles.get(id);
  if (!tile) {
    const el = document.createElement('div');
    el.className = 'tile remote no-video';
    el.dataset.participantId = id;
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    const placeholder = document.createElement('div');
    placeholder.className = 'placeholder';
    placeholder.setAttribute('aria-hidden', 'true');
    const nameEl = document.createElement('div');
    nameEl.className = 'name';
    el.append(video, placeholder, nameEl);
    ui.grid.append(el);
    tile = {el, video, nameEl, placeholder, tracks: new Map()};
    tiles.set(id, tile);
    state.participants[id] = {id, name: '', tracks: {}};
  }
  const label = name || 'Guest';
  tile.nameEl.textContent = label;
  tile.placeholder.textContent = label.slice(0, 1).toUpperCase();
  state.participants[id].name = name ?? '';
  return tile;
}

function removeTile(id) {
  const tile = tiles.get(id);
  if (!tile) return;
  tile.video.srcObject = null;
  tile.el.remove();
  tiles.delete(id);
  delete state.participants[id];
}

function addRemoteTrack({participantId, trackId, track}) {
  const p = client.participants.get(participantId);
  const tile = tiles.get(participantId) ?? ensureTile(participantId, p?.name);
  tile.tracks.set(trackId, track);
  state.participants[participantId].tracks[trackId] = track.kind;
  refreshTile(tile);
}

function removeRemoteTrack(participantId, trackId) {
  const tile = tiles.get(participantId);
  if (!tile?.tracks.delete(trackId)) return;
  delete state.participants[participantId].tracks[trackId];
  refreshTile(tile);
}

/** Points the tile's video element at the participant's current tracks (audio plays through it too). */
function refreshTile(tile) {
  const tracks = [...tile.tracks.values()];
  tile.el.classList.toggle('no-video', !tracks.some((t) => t.kind === 'video'));
  tile.el.classList.toggle('has-audio', tracks.some((t) => t.kind === 'audio'));
  tile.video.srcObject = tracks.length ? new MediaStream(tracks) : null;
  if (!tracks.length) return;
  tile.video.muted = state.audioBlocked;
  tile.video.play().catch((err) => {
    if (err.name !== 'NotAllowedError') return;
    // Autoplay with sound refused: play muted and offer a button.
    tile.video.muted = true;
    tile.video.play().catch(() => {});
    showAudioBlocked(true);
  });
}

function showAudioBlocked(blocked) {
  state.audioBlocked = blocked;
  ui.enableAudio.hidden = !blocked;
}

function unblockAudio() {
  showAudioBlocked(false);
  for (const tile of tiles.values()) {
    tile.video.muted = false;
    tile.video.play().catch(() => {});
  }
}

init();
