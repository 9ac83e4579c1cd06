// Pure helpers of Starling's browser app (no DOM, no globals), kept apart
// from app.js so Node's test runner can test them (web/testdata/ui_test.mjs).

/**
 * The grid that shows `count` tiles of the given aspect ratio largest inside
 * width × height (gap pixels between tiles): {cols, rows, tileWidth, tileHeight}.
 */
export function gridLayout({width, height, count, aspect = 16 / 9, gap = 8}) {
  if (count <= 0 || width <= 0 || height <= 0) return {cols: 1, rows: 1, tileWidth: Math.max(0, width), tileHeight: Math.max(0, width) / aspect};
  let best = null;
  for (let cols = 1; cols <= count; cols++) {
    const rows = Math.ceil(count / cols);
    let w = (width - gap * (cols - 1)) / cols;
    let h = w / aspect;
    const maxH = (height - gap * (rows - 1)) / rows;
    if (h > maxH) {
      h = maxH;
      w = h * aspect;
    }
    if (w <= 0) continue;
    if (!best || w > best.tileWidth + 0.5) best = {cols, rows, tileWidth: Math.floor(w), tileHeight: Math.floor(h)};
  }
  return best ?? {cols: 1, rows: count, tileWidth: 0, tileHeight: 0};
}

/** Rooms with more than this many tiles open in speaker view. */
export const SPEAKER_VIEW_FROM = 7;

/**
 * Which tile speaker view puts on the stage: the pinned one, else the newest
 * screen share, else the current loudest remote speaker, else the last one who
 * spoke, else the first remote tile. Ids are tile keys.
 */
export function pickFeatured({pinned = null, screens = [], speaking = [], lastSpeaker = null, tiles = []} = {}) {
  const has = (id) => id && tiles.includes(id);
  if (has(pinned)) return pinned;
  for (let i = screens.length - 1; i >= 0; i--) if (has(screens[i])) return screens[i];
  for (const id of speaking) if (has(id)) return id;
  if (has(lastSpeaker)) return lastSpeaker;
  return tiles[0] ?? null;
}

// ---- chat over data messages ----

const CHAT_MAX = 4000; // characters of one chat message

/** The data message payload of a chat message. */
export function chatEncode(text) {
  return JSON.stringify({type: 'chat', text: String(text).slice(0, CHAT_MAX)});
}

/**
 * Reads a data message payload: {text} for a chat message (our JSON form, or
 * any plain text another client sent), null for other JSON messages.
 */
export function chatDecode(payload) {
  if (typeof payload !== 'string') return null;
  const t = payload.trimStart();
  if (t.startsWith('{')) {
    try {
      const m = JSON.parse(t);
      if (m && m.type === 'chat' && typeof m.text === 'string') return {text: m.text.slice(0, CHAT_MAX)};
      return null;
    } catch { /* not JSON: plain text */ }
  }
  return {text: payload.slice(0, CHAT_MAX)};
}

// ---- names and messages ----

/** One or two capital letters for an avatar. */
export function initials(name) {
  const words = String(name ?? '').trim().split(/\s+/).filter(Boolean);
  if (!words.length) return '?';
  const first = [...words[0]][0] ?? '';
  const last = words.length > 1 ? ([...words[words.length - 1]][0] ?? '') : '';
  return (first + last).toUpperCase();
}

/** What to tell the user when joining failed: {title, detail, retry}. */
export function joinErrorMessage(err, room) {
  const code = err?.code;
  switch (code) {
    case 401: return {title: 'Your link is not valid', detail: 'The access token in this link is missing, wrong or expired. Ask whoever invited you for a new link.', retry: false};
    case 403: return {title: 'Not allowed', detail: `Your access token does not let you join “${room}”.`, retry: false};
    case 413: return {title: 'This room is full', detail: `“${room}” has as many participants as it allows. Try again when someone leaves.`, retry: true};
    case 429: return {title: 'Too many attempts', detail: 'The server asks to slow down. Wait a moment and try again.', retry: true};
    case -32602: return {title: 'That room name does not work', detail: err.message, retry: false};
    case 503: return {title: 'The server is busy', detail: 'It is restarting or moving its calls to another server. Try again in a moment.', retry: true};
    case 0: case undefined: return {title: 'Cannot reach the server', detail: 'Check your connection and try again.', retry: true};
    default: return {title: 'Could not join', detail: err?.message ?? String(err), retry: true};
  }
}

/** Why the session ended, in words, from the `leave` reason. */
export function leaveMessage(reason) {
  if (reason === 'clientLeave') return 'You left the call.';
  if (reason === 'reconnectFailed') return 'The connection was lost and could not be restored.';
  if (reason === 'kicked') return 'You were removed from the call.';
  if (reason === 'roomClosed' || reason === 'room closed') return 'The call was ended for everyone.';
  if (reason === 'duplicate') return 'You joined this call from another tab or device.';
  if (reason === 'roomFull') return 'The call filled up while your server was cut off from the others, and you could not keep your place.';
  if (reason === 'disconnected') return 'The connection to the server was lost.';
  if (String(reason).startsWith('rejected: ')) return `The server did not let you back in: ${String(reason).slice(10)}.`;
  return `The call ended (${reason}).`;
}

/** A message for a getUserMedia failure, or null. hasAudio/hasVideo: what we did get. */
export function mediaErrorMessage(name, {hasAudio = false, hasVideo = false} = {}) {
  if (!name) return null;
  const why = {
    NotAllowedError: 'access to the camera and microphone is blocked',
    SecurityError: 'access to the camera and microphone is blocked',
    NotFoundError: 'no camera or microphone was found',
    NotReadableError: 'the camera or microphone is in use by another application',
    AbortError: 'the camera or microphone could not start',
    OverconstrainedError: 'the selected camera cannot deliver the requested size',
    Unsupported: 'this page cannot use a camera here (it needs HTTPS or localhost)',
  }[name] ?? `the camera or microphone failed (${name})`;
  const fix = name === 'NotAllowedError' || name === 'SecurityError'
    ? ' To fix it, allow the camera and microphone in the browser’s site settings (the icon left of the address), then turn them on again.'
    : '';
  if (!hasAudio && !hasVideo) return `You can see and hear the others, but they can’t see or hear you: ${why}.${fix}`;
  if (!hasVideo) return `Your camera is off: ${why}.${fix}`;
  if (!hasAudio) return `Your microphone is off: ${why}.${fix}`;
  return null;
}

/** Text for a connection quality score. */
export function qualityLabel(q) {
  if (!q) return 'Connection: measuring…';
  const parts = [`Connection: ${q.score}`];
  if (q.rttMs) parts.push(`${q.rttMs} ms round trip`);
  if (q.lossRate > 0.001) parts.push(`${(q.lossRate * 100).toFixed(1)}% loss`);
  return parts.join(', ');
}

/** HH:MM of a time, in the user's locale. */
export function clockTime(date) {
  return date.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'});
}

/** A random, readable room name such as "bright-otter-42". */
export function randomRoomName(rand = Math.random) {
  const adj = ['amber', 'bright', 'calm', 'clever', 'gentle', 'golden', 'lucky', 'quiet', 'rapid', 'silver', 'sunny', 'swift'];
  const noun = ['falcon', 'harbor', 'lantern', 'meadow', 'otter', 'pine', 'river', 'robin', 'starling', 'summit', 'tiger', 'willow'];
  const pick = (a) => a[Math.floor(rand() * a.length)];
  return `${pick(adj)}-${pick(noun)}-${10 + Math.floor(rand() * 90)}`;
}
