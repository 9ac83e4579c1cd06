// JSON-RPC 2.0 over one WebSocket, as Starling's signaling protocol uses it:
// requests with ids and a timeout, notifications both ways, server errors
// turned into StarlingError. Part of the client library (see starling.js).

/** An error from the server (a JSON-RPC error object) or from the client itself.
 * code is the JSON-RPC or application code (-32602, 401, 403, 404, 409, 413,
 * ...); transport failures (socket closed, no response in time) have code 0.
 * method, when set, is the request that failed. */
export class StarlingError extends Error {
  constructor(code, message, method) {
    super(message);
    this.name = 'StarlingError';
    this.code = code;
    if (method) this.method = method;
  }
}

const OPEN = 1; // WebSocket.OPEN

/** Turns undefined, "/path", "http(s)://..." or "ws(s)://..." into a WebSocket URL. */
export function signalingURL(url) {
  const u = new URL(url ?? '/v1/rtc', globalThis.location?.href);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol === 'https:') u.protocol = 'wss:';
  return u.href;
}

/** The list of nodes from url (a string, possibly several URLs
 * comma-separated, or an array) and more: WebSocket URLs, in order, without
 * blanks and duplicates; [signalingURL()] when none is given. */
export function serverURLs(url, more = []) {
  const out = [];
  for (const item of [url, more].flat(2)) {
    if (item === undefined || item === null) continue;
    for (const part of String(item).split(',')) {
      const u = part.trim();
      if (u && !out.includes(signalingURL(u))) out.push(signalingURL(u));
    }
  }
  return out.length ? out : [signalingURL()];
}

/** One signaling connection. handlers: onNotification(method, params),
 * onError(StarlingError) for messages that belong to no request, and
 * onClose({code, reason}) when the socket closes without close() being called. */
export class RPCConnection {
  constructor(url, {WebSocket = globalThis.WebSocket, requestTimeout = 15000, connectTimeout = 10000, heartbeat = 10000} = {}, handlers = {}) {
    this.url = url;
    this._WebSocket = WebSocket;
    this.requestTimeout = requestTimeout;
    this.connectTimeout = connectTimeout;
    this.heartbeat = heartbeat;
    this._heartbeatTimer = null;
    this._lastRx = 0;
    this.handlers = handlers;
    this._ws = null;
    this._nextId = 1;
    this._pending = new Map(); // request id → {resolve, reject, timer, method}
  }

  get isOpen() { return this._ws?.readyState === OPEN; }

  /** Opens the socket; resolves when it is open. A socket not open after
   * connectTimeout ms (a host that drops packets: the browser would wait
   * much longer) is given up, so the caller can try another node. */
  open() {
    return new Promise((resolve, reject) => {
      const ws = new this._WebSocket(this.url);
      this._ws = ws;
      const timer = setTimeout(() => {
        if (this._ws !== ws) return;
        reject(new StarlingError(0, `cannot connect to ${this.url}: no answer in ${this.connectTimeout} ms`));
        this.close();
      }, this.connectTimeout);
      ws.onopen = () => { clearTimeout(timer); this._startHeartbeat(ws); resolve(); };
      ws.onerror = () => { clearTimeout(timer); reject(new StarlingError(0, `cannot connect to ${this.url}`)); };
      ws.onclose = (ev) => {
        clearTimeout(timer);
        this._stopHeartbeat();
        const why = `connection closed (${ev.code}${ev.reason ? ': ' + ev.reason : ''})`;
        reject(new StarlingError(0, why));
        this._ws = null;
        this._rejectPending(why);
        this.handlers.onClose?.({code: ev.code, reason: ev.reason, message: why});
      };
      ws.onmessage = (ev) => this._onMessage(ev.data);
    });
  }

  /** Sends a request; resolves to its result or rejects with a StarlingError. */
  request(method, params = {}) {
    return new Promise((resolve, reject) => {
      if (!this.isOpen) {
        reject(new StarlingError(0, 'not connected', method));
        return;
      }
      const id = this._nextId++;
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new StarlingError(0, `no response in ${this.requestTimeout} ms`, method));
      }, this.requestTimeout);
      this._pending.set(id, {resolve, reject, timer, method});
      this._ws.send(JSON.stringify({jsonrpc: '2.0', id, method, params}));
    });
  }

  /** Sends a notification; dropped when the socket is not open. */
  notify(method, params) {
    if (this.isOpen) this._ws.send(JSON.stringify({jsonrpc: '2.0', method, params}));
  }

  /** Closes the socket and fails the requests still waiting. */
  close() {
    this._stopHeartbeat();
    const ws = this._ws;
    this._ws = null;
    this._rejectPending('connection closed');
    if (!ws) return;
    ws.onclose = ws.onmessage = ws.onerror = null;
    try { ws.close(1000); } catch { /* already closed */ }
  }

  _rejectPending(message) {
    for (const [id, p] of this._pending) {
      clearTimeout(p.timer);
      this._pending.delete(id);
      p.reject(new StarlingError(0, message, p.method));
    }
  }

  /** A socket on which nothing arrives for `heartbeat` ms gets a `ping`;
   * without an answer in as long, the node is taken for gone (a host that
   * lost power or its network closes nothing, and the browser would wait
   * minutes): the socket is dropped as if it had closed. */
  _startHeartbeat(ws) {
    if (!(this.heartbeat > 0)) return;
    this._lastRx = Date.now();
    let pinging = false;
    this._heartbeatTimer = setInterval(() => {
      if (this._ws !== ws || pinging || Date.now() - this._lastRx < this.heartbeat) return;
      pinging = true;
      const ping = new Promise((resolve, reject) => {
        const id = this._nextId++;
        const timer = setTimeout(() => { this._pending.delete(id); reject(new Error('timeout')); }, this.heartbeat);
        this._pending.set(id, {resolve, reject, timer, method: 'ping'});
        ws.send(JSON.stringify({jsonrpc: '2.0', id, method: 'ping', params: {}}));
      });
      ping.then(() => { pinging = false; }, () => {
        if (this._ws !== ws) return;
        const message = `the server did not answer a ping in ${this.heartbeat} ms`;
        this.close();
        this.handlers.onClose?.({code: 4000, reason: 'heartbeat', message});
      });
    }, Math.max(10, this.heartbeat / 2));
    this._heartbeatTimer.unref?.(); // Node.js: never keeps a process alive
  }

  _stopHeartbeat() {
    clearInterval(this._heartbeatTimer);
    this._heartbeatTimer = null;
  }

  _onMessage(data) {
    this._lastRx = Date.now();
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      this.handlers.onError?.(new StarlingError(-32700, 'unparsable message from the server'));
      return;
    }
    for (const m of Array.isArray(msg) ? msg : [msg]) {
      if (m?.method && m.id !== undefined && m.id !== null) {
        // The protocol has no server → client requests.
        this._ws?.send(JSON.stringify({jsonrpc: '2.0', id: m.id, error: {code: -32601, message: `unknown method ${m.method}`}}));
      } else if (m?.method) {
        this.handlers.onNotification?.(m.method, m.params ?? {});
      } else {
        this._onResponse(m);
      }
    }
  }

  _onResponse(m) {
    const p = this._pending.get(m?.id);
    if (!p) {
      if (m?.error) this.handlers.onError?.(new StarlingError(m.error.code, m.error.message));
      return;
    }
    this._pending.delete(m.id);
    clearTimeout(p.timer);
    if (m.error) p.reject(new StarlingError(m.error.code, m.error.message, p.method));
    else p.resolve(m.result ?? {});
  }
}
