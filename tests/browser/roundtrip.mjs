// MQTT.js in headless Chromium: one browser, one page, MQTT round trips over
// wss:// for each protocol version asked for.
//
// The page is served from a tiny HTTP server on 127.0.0.1 (so its Origin is
// http://127.0.0.1:<page-port>, what a real web app sends; a file:// page
// would send "null") and loads MQTT.js's own browser bundle. Chromium
// verifies TLS as usual; the one exception is the server certificate whose
// SPKI SHA-256 (base64) is given, through
// --ignore-certificate-errors-spki-list (never --ignore-certificate-errors).
//
// For each protocol version (4 = MQTT 3.1.1, 5 = MQTT 5) the page connects,
// subscribes to its topic at QoS 2, publishes one message at QoS 0, 1 and 2,
// and collects what comes back for a bounded time. With --reject-url it
// also connects there and expects the browser to refuse the connection
// (a certificate that is not pinned), proving TLS is really verified.
//
// Prints one JSON line:
//   {"origin", "browser", "runs": [{"protocol", "clientId", "topic", "sent",
//    "received": [{"topic", "payload", "qos"}], "error", "console"}],
//    "rejected": {"url", "connected", "console"} | null, "error"}
// and exits 0 when every run got back exactly what it sent (and the
// rejection, if asked for, happened); 1 otherwise, with the reason on
// stderr. Everything is bounded; Chromium is killed on exit.
//
// Usage: node roundtrip.mjs --url wss://127.0.0.1:8884/mqtt --spki BASE64
//          [--topic T] [--client-id ID] [--protocols 4,5] [--page-port N]
//          [--reject-url wss://...] [--chromium /usr/bin/chromium]
//          [--timeout-ms 10000]

import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import puppeteer from 'puppeteer-core';

const here = dirname(fileURLToPath(import.meta.url));

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    spki: { type: 'string' },
    topic: { type: 'string', default: 'moat/browser' },
    'client-id': { type: 'string', default: 'moat-browser' },
    protocols: { type: 'string', default: '4,5' },
    'page-port': { type: 'string', default: '0' },
    'reject-url': { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    'timeout-ms': { type: 'string', default: '10000' },
  },
});

function fail(message) {
  process.stderr.write(`roundtrip.mjs: ${message}\n`);
  process.exit(2);
}

if (!opts.url) fail('--url wss://HOST:PORT/PATH is required');
if (!opts.spki) fail('--spki BASE64 (the server certificate\'s SPKI SHA-256) is required');
const protocols = opts.protocols.split(',').map(Number);
if (protocols.some((p) => p !== 4 && p !== 5)) fail('--protocols takes 4 and/or 5');
const timeoutMs = Number(opts['timeout-ms']);

// The whole run, launch included, is bounded: past this, Chromium is killed
// (puppeteer's exit handler) and the run fails.
const watchdog = setTimeout(() => {
  process.stderr.write('roundtrip.mjs: the whole run took too long; giving up\n');
  process.exit(3);
}, timeoutMs * (protocols.length + 2) + 15000);
watchdog.unref();

const bundle = readFileSync(join(here, 'node_modules/mqtt/dist/mqtt.min.js'));
const indexHtml = '<!doctype html><meta charset="utf-8"><title>moat browser peer</title>'
  + '<link rel="icon" href="data:,">'
  + '<script src="/mqtt.min.js"></script>';

function servePage(port) {
  const server = createServer((req, res) => {
    if (req.url === '/mqtt.min.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(bundle);
    } else if (req.url === '/' || req.url === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(indexHtml);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

// Runs inside the page: one MQTT session, three publishes, what came back.
async function roundTripInPage({ url, protocol, clientId, topic, timeoutMs }) {
  const sent = [0, 1, 2].map((qos) => ({
    topic,
    payload: `moat browser round trip: qos ${qos}, protocol ${protocol}, ${clientId}`,
    qos,
  }));
  const received = [];
  let error = null;
  const client = window.mqtt.connect(url, {
    protocolVersion: protocol,
    clientId,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: timeoutMs,
  });
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no round trip within ${timeoutMs} ms`)), timeoutMs);
      client.on('error', (e) => { clearTimeout(timer); reject(e); });
      client.on('close', () => { clearTimeout(timer); reject(new Error('connection closed')); });
      client.on('message', (t, payload, packet) => {
        received.push({ topic: t, payload: new TextDecoder().decode(payload), qos: packet.qos });
        if (received.length >= sent.length) {
          clearTimeout(timer);
          // A short grace to catch duplicates, then done.
          setTimeout(resolve, 300);
        }
      });
      client.on('connect', async () => {
        try {
          const granted = await client.subscribeAsync(topic, { qos: 2 });
          if (!granted.length || granted[0].qos !== 2) {
            throw new Error(`subscription not granted at QoS 2: ${JSON.stringify(granted)}`);
          }
          for (const m of sent) await client.publishAsync(m.topic, m.payload, { qos: m.qos });
        } catch (e) {
          clearTimeout(timer);
          reject(e);
        }
      });
    });
  } catch (e) {
    error = String(e && e.message ? e.message : e);
  }
  client.removeAllListeners('close');
  await new Promise((resolve) => client.end(true, {}, resolve));
  return { protocol, clientId, topic, sent, received, error };
}

// Runs inside the page: does the browser connect to `url` at all?
async function connectsInPage({ url, timeoutMs }) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, 'mqtt');
    const timer = setTimeout(() => { ws.close(); resolve(false); }, timeoutMs);
    ws.onopen = () => { clearTimeout(timer); ws.close(); resolve(true); };
    ws.onerror = () => { clearTimeout(timer); resolve(false); };
  });
}

function sameMessages(sent, received) {
  const key = (m) => `${m.qos}\u0000${m.topic}\u0000${m.payload}`;
  const a = sent.map(key).sort();
  const b = received.map(key).sort();
  return a.length === b.length && a.every((k, i) => k === b[i]);
}

async function main() {
  const report = { origin: null, browser: null, runs: [], rejected: null, error: null };
  const userDataDir = mkdtempSync(join(tmpdir(), 'moat-chromium-'));
  const server = await servePage(Number(opts['page-port']));
  const pageUrl = `http://127.0.0.1:${server.address().port}/`;
  let browser;
  try {
    browser = await puppeteer.launch({
      executablePath: opts.chromium,
      headless: true,
      userDataDir,
      timeout: timeoutMs,
      protocolTimeout: timeoutMs * 2,
      args: [
        '--headless=new',
        '--no-sandbox',
        // The only exception to certificate verification: this one key.
        `--ignore-certificate-errors-spki-list=${opts.spki}`,
        '--disable-gpu',
        '--disable-quic',
        // Containers often give /dev/shm only 64 MiB.
        '--disable-dev-shm-usage',
        '--no-first-run',
        // No calls home: this machine's network is closed.
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    report.browser = await browser.version();
    const page = await browser.newPage();
    const consoleLines = [];
    page.on('console', (m) => consoleLines.push(m.text()));
    await page.goto(pageUrl, { timeout: timeoutMs });
    report.origin = await page.evaluate(() => window.location.origin);
    for (const protocol of protocols) {
      consoleLines.length = 0;
      const run = await page.evaluate(roundTripInPage, {
        url: opts.url,
        protocol,
        clientId: `${opts['client-id']}-v${protocol}`,
        topic: `${opts.topic}/v${protocol}`,
        timeoutMs,
      });
      // What Chromium said (a TLS or WebSocket failure names its net:: error).
      run.console = consoleLines.join('\n');
      report.runs.push(run);
    }
    if (opts['reject-url']) {
      consoleLines.length = 0;
      const connected = await page.evaluate(connectsInPage, { url: opts['reject-url'], timeoutMs });
      report.rejected = { url: opts['reject-url'], connected, console: consoleLines.join('\n') };
    }
  } catch (e) {
    report.error = String(e && e.stack ? e.stack : e);
  } finally {
    if (browser) await browser.close().catch(() => browser.process()?.kill('SIGKILL'));
    server.close();
    rmSync(userDataDir, { recursive: true, force: true });
  }
  const problems = [];
  if (report.error) problems.push(report.error);
  for (const run of report.runs) {
    if (run.error) problems.push(`protocol ${run.protocol}: ${run.error} ${run.console}`);
    else if (!sameMessages(run.sent, run.received)) {
      problems.push(`protocol ${run.protocol}: received ${JSON.stringify(run.received)}, sent ${JSON.stringify(run.sent)}`);
    }
  }
  if (report.rejected && report.rejected.connected) {
    problems.push(`the browser connected to ${report.rejected.url}, whose certificate is not pinned`);
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
  if (problems.length) {
    process.stderr.write(`roundtrip.mjs: FAILED: ${problems.join('; ')}\n`);
    process.exitCode = 1;
  }
}

main().catch((e) => fail(String(e && e.stack ? e.stack : e)));
