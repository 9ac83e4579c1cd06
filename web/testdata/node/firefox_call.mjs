// Two-page call in Firefox, driven over WebDriver BiDi with puppeteer-core.
// web/browsertest/firefox_test.go starts a Starling server and runs:
//
//   node firefox_call.mjs <base URL> <room> <screenshot.png>
//
// with $STARLING_FIREFOX naming the browser (default /usr/bin/firefox-esr).
// It never downloads a browser. It prints one JSON line with what it saw
// ({ok, error, steps, ...}); the Go test makes the assertions. Each page is
// its own window so neither counts as a hidden background tab.
// STARLING_DEBUG_OFFERS=1 also reports the publisher offers the pages sent
// (msid, rid and direction lines) when the call fails.

import puppeteer from 'puppeteer-core';

const [base, room, shot] = process.argv.slice(2);
if (!base || !room || !shot) {
  console.error('usage: node firefox_call.mjs <base URL> <room> <screenshot.png>');
  process.exit(2);
}

const result = {ok: false, error: null, steps: [], userAgent: null};
const t0 = Date.now();
const step = (name, extra = {}) => result.steps.push({name, ms: Date.now() - t0, ...extra});
const logs = [];

/** Polls fn(page) until it returns a truthy value; throws after timeout ms. */
async function waitFor(page, what, timeout, fn, ...args) {
  const start = Date.now();
  let last;
  for (;;) {
    try {
      last = await page.evaluate(fn, ...args);
      if (last) return last;
    } catch (err) {
      last = String(err);
    }
    if (Date.now() - start > timeout) throw new Error(`${what}: not after ${timeout} ms (last ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const inbound = async () => {
  const out = {framesDecoded: 0, frameWidth: 0, audioPackets: 0};
  const pc = window.starling?.client?.subscriber;
  if (!pc) return out;
  (await pc.getStats()).forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    if (s.kind === 'video') {
      out.framesDecoded += s.framesDecoded || 0;
      out.frameWidth = Math.max(out.frameWidth, s.frameWidth || 0);
    } else if (s.kind === 'audio') {
      out.audioPackets += s.packetsReceived || 0;
    }
  });
  return out;
};

const tiles = () => [...document.querySelectorAll('#grid .tile.remote')].map((el) => ({
  id: el.dataset.participantId, name: el.querySelector('.name')?.textContent ?? '', videoWidth: el.querySelector('video')?.videoWidth ?? 0,
}));

let browser;
const pages = {};
try {
  browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: process.env.STARLING_FIREFOX || '/usr/bin/firefox-esr',
    headless: true,
    protocolTimeout: 30000,
    extraPrefsFirefox: {
      'media.navigator.streams.fake': true, // fake camera and microphone
      'media.navigator.permission.disabled': true, // no permission prompt
      'media.autoplay.default': 0, // allow audible autoplay
      'media.autoplay.blocking_policy': 0,
      'media.peerconnection.ice.loopback': true, // gather 127.0.0.1 candidates (the server is on loopback)
      'media.peerconnection.ice.obfuscate_host_addresses': false, // no mDNS names
      'network.proxy.allow_hijacking_localhost': false,
      'datareporting.policy.dataSubmissionEnabled': false,
      'toolkit.telemetry.reportingpolicy.firstRun': false,
    },
  });
  step('launched', {version: await browser.version()});
  const open = async (name) => {
    const page = await browser.newPage({type: 'window', windowBounds: {width: 1280, height: 800}});
    await page.setViewport({width: 1280, height: 720});
    page.on('console', async (m) => {
      const args = await Promise.all(m.args().map((a) => a.evaluate((x) => (x instanceof Error ? `${x.name}: ${x.message}` : String(x))).catch(() => '?')));
      logs.push(`${name} console.${m.type()}: ${args.join(' ') || m.text()}`);
    });
    page.on('pageerror', (e) => logs.push(`${name} error: ${e.message}`));
    if (process.env.STARLING_DEBUG_OFFERS) {
      await page.evaluateOnNewDocument(() => {
        const send = WebSocket.prototype.send;
        window.__offers = [];
        WebSocket.prototype.send = function (data) {
          try {
            const m = JSON.parse(data);
            if (m.method === 'offer') window.__offers.push({tracks: m.params.tracks, sdp: m.params.sdp.split('\r\n').filter((l) => /^(m=|a=mid|a=msid|a=ssrc:\d+ msid|a=simulcast|a=rid|a=send|a=recv|a=inactive)/.test(l))});
          } catch { /* not ours */ }
          return send.call(this, data);
        };
      });
    }
    return page;
  };
  const [pa, pb] = [await open('A'), await open('B')];
  Object.assign(pages, {A: pa, B: pb});
  result.userAgent = await pa.evaluate(() => navigator.userAgent);

  const join = async (page, name) => {
    await page.goto(`${base}/r/${encodeURIComponent(room)}?name=${encodeURIComponent(name)}&autojoin=1`);
    await waitFor(page, `${name} joined`, 15000, () => document.body.dataset.status === 'joined');
    return page.evaluate(() => window.starling.state.participantId);
  };
  result.idA = await join(pa, 'Alice');
  result.idB = await join(pb, 'Bob');
  step('joined');

  const tileOf = (page, id, what) => waitFor(page, what, 15000, (tilesSrc, want) => {
    const t = (0, eval)(tilesSrc)().find((x) => x.id === want); // eslint-disable-line no-eval
    return t ?? null;
  }, `(${tiles})`, id);
  result.tileAOfB = await tileOf(pa, result.idB, "A shows B's tile");
  result.tileBOfA = await tileOf(pb, result.idA, "B shows A's tile");
  step('tiles');

  const media = (page, what) => waitFor(page, what, 20000, async (src) => {
    const s = await (0, eval)(src)(); // eslint-disable-line no-eval
    return s.framesDecoded > 0 && s.audioPackets > 0 ? s : null;
  }, `(${inbound})`);
  result.statsA = await media(pa, 'A decodes video and receives audio');
  result.statsB = await media(pb, 'B decodes video and receives audio');
  step('media');

  await waitFor(pb, "B's tile of A plays", 10000, (id) =>
    document.querySelector(`#grid .tile.remote[data-participant-id="${id}"] video`)?.videoWidth > 0, result.idA);
  await pb.bringToFront();
  await pb.screenshot({path: shot});
  result.screenshot = shot;
  step('screenshot');

  await pa.click('#leave');
  const left = Date.now();
  await waitFor(pb, "B drops A's tile", 5000, (id) => !document.querySelector(`#grid .tile.remote[data-participant-id="${id}"]`), result.idA);
  result.leaveMs = Date.now() - left;
  result.aStatus = await waitFor(pa, 'A shows it left', 5000, () => document.body.dataset.status === 'left' && 'left');
  step('left');
  result.ok = true;
} catch (err) {
  result.error = String(err?.stack ?? err);
  // What the connections looked like when it failed.
  for (const [name, page] of Object.entries(pages)) {
    result[`diag${name}`] = await page.evaluate(async () => {
      const c = window.starling?.client;
      if (!c) return null;
      const pcs = {};
      for (const target of ['publisher', 'subscriber']) {
        const pc = c[target];
        if (!pc) continue;
        const stats = [];
        (await pc.getStats()).forEach((s) => {
          if (['candidate-pair', 'inbound-rtp', 'outbound-rtp', 'local-candidate', 'remote-candidate', 'transport'].includes(s.type)) {
            const {type, kind, state, nominated, selected, address, port, candidateType, protocol, packetsReceived, packetsSent, bytesReceived, framesDecoded, rid} = s;
            stats.push({type, kind, state, nominated, selected, address, port, candidateType, protocol, packetsReceived, packetsSent, bytesReceived, framesDecoded, rid});
          }
        });
        pcs[target] = {sdpLines: (pc.localDescription?.sdp ?? '').split('\r\n').filter((l) => /^(m=|a=mid|a=msid|a=ssrc:\d+ msid|a=simulcast|a=rid|a=send|a=recv)/.test(l)), connectionState: pc.connectionState, iceConnectionState: pc.iceConnectionState, signalingState: pc.signalingState, stats};
      }
      const {media, error, published} = window.starling.state;
      return {offers: window.__offers, state: c.state, app: {media, error, published}, remoteTracks: [...c.remoteTracks.keys()], pcs};
    }).catch((e) => String(e));
  }
} finally {
  result.logs = logs.slice(-40);
  result.totalMs = Date.now() - t0;
  await browser?.close().catch(() => {});
  console.log(JSON.stringify(result));
}
