// WHIP and WHEP from a plain page in Firefox, driven over WebDriver BiDi
// with puppeteer-core. web/browsertest/whip_test.go serves the page (only
// fetch + RTCPeerConnection, window.whip) and runs:
//
//   node firefox_whip.mjs <page URL> <WHIP URL> <WHEP URL>
//
// One window publishes its fake camera and microphone over WHIP, another
// watches over WHEP. It prints one JSON line ({ok, error, publish, watch,
// inbound, ...}); the Go test makes the assertions. It never downloads a browser.

import puppeteer from 'puppeteer-core';

const [pageURL, whipURL, whepURL] = process.argv.slice(2);
if (!pageURL || !whipURL || !whepURL) {
  console.error('usage: node firefox_whip.mjs <page URL> <WHIP URL> <WHEP URL>');
  process.exit(2);
}
const result = {ok: false, error: null, userAgent: null};
const logs = [];
let browser;
try {
  browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: process.env.STARLING_FIREFOX || '/usr/bin/firefox-esr',
    headless: true,
    protocolTimeout: 30000,
    extraPrefsFirefox: {
      'media.navigator.streams.fake': true,
      'media.navigator.permission.disabled': true,
      'media.autoplay.default': 0,
      'media.autoplay.blocking_policy': 0,
      'media.peerconnection.ice.loopback': true,
      'media.peerconnection.ice.obfuscate_host_addresses': false,
      'network.proxy.allow_hijacking_localhost': false,
      'datareporting.policy.dataSubmissionEnabled': false,
      'toolkit.telemetry.reportingpolicy.firstRun': false,
    },
  });
  const open = async (name) => {
    const page = await browser.newPage({type: 'window', windowBounds: {width: 800, height: 600}});
    page.on('console', (m) => logs.push(`${name} console.${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`${name} error: ${e.message}`));
    await page.goto(pageURL);
    return page;
  };
  const pub = await open('whip');
  result.userAgent = await pub.evaluate(() => navigator.userAgent);
  result.publish = await pub.evaluate((u) => window.whip.publish(u), whipURL);
  const view = await open('whep');
  result.watch = await view.evaluate((u) => window.whip.watch(u), whepURL);
  const start = Date.now();
  for (;;) {
    result.inbound = await view.evaluate(() => window.whip.inbound());
    if (result.inbound.framesDecoded > 30 && result.inbound.audioPackets > 0) break;
    if (Date.now() - start > 20000) throw new Error(`WHEP page not decoding after 20 s: ${JSON.stringify(result.inbound)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  result.decodingMs = Date.now() - start;
  const base = new URL(whipURL).origin;
  result.deleteStatus = await pub.evaluate((b, loc) => window.whip.end(b, loc), base, result.publish.location);
  result.ok = true;
} catch (err) {
  result.error = String(err?.stack ?? err);
} finally {
  result.logs = logs.slice(-30);
  await browser?.close().catch(() => {});
  console.log(JSON.stringify(result));
}
