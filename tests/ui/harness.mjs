// A real `muster agent -dev` on free loopback ports and a headless Debian chromium driven by
// playwright-core, for the UI tests. Every wait is bounded, every process started here is
// stopped on every path (also when the test runner exits early), nothing here asserts on time.
import {spawn} from 'node:child_process';
import {createServer} from 'node:net';
import {createSocket} from 'node:dgram';
import {mkdtempSync, mkdirSync, openSync, readFileSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join, resolve, dirname} from 'node:path';
import {fileURLToPath} from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(HERE, '..', '..');
export const MUSTER = process.env.MUSTER_BIN || join(ROOT, 'target', 'debug', 'muster');
export const CHROMIUM = process.env.MUSTER_CHROMIUM || '/usr/bin/chromium';
export const OUT = process.env.MUSTER_UI_OUT || join(ROOT, 'target', 'ui-test-output');

// Processes to kill if the runner exits without the test's own cleanup (a crash, a timeout).
const children = new Set();
process.on('exit', () => {
  for (const c of children) {
    try {
      process.kill(-c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function freeTcpPort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const {port} = s.address();
      s.close(() => res(port));
    });
  });
}

async function udpFree(port) {
  return new Promise((res) => {
    const s = createSocket('udp4');
    s.on('error', () => res(false));
    s.bind(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

// `n` distinct ports free for TCP and UDP on 127.0.0.1 right now.
export async function freePorts(n) {
  const ports = [];
  for (let i = 0; i < 200 && ports.length < n; i++) {
    const p = await freeTcpPort();
    if (!ports.includes(p) && (await udpFree(p))) ports.push(p);
  }
  if (ports.length < n) throw new Error(`could not find ${n} free ports`);
  return ports;
}

// Bounded HTTP against the agent (Node's fetch ignores proxy variables).
export async function http(base, method, path, body) {
  const resp = await fetch(base + path, {method, body, signal: AbortSignal.timeout(30000)});
  const text = await resp.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return {status: resp.status, text, json, headers: resp.headers};
}

export class Agent {
  // Starts `muster agent -dev ARGS` on free ports and waits for a leader (at most 30s).
  static async start(args = []) {
    mkdirSync(OUT, {recursive: true});
    for (let attempt = 1; ; attempt++) {
      const a = new Agent(await freePorts(5), args, attempt);
      try {
        await a.ready();
        return a;
      } catch (err) {
        await a.stop();
        if (attempt >= 3 || !a.log().includes('in use')) {
          throw new Error(`agent did not start: ${err.message}\n${a.log()}`);
        }
      }
    }
  }

  constructor([http, dns, server, lan, wan], args, attempt) {
    this.base = `http://127.0.0.1:${http}`;
    this.logPath = join(OUT, `agent-${attempt}.log`);
    const log = openSync(this.logPath, 'w');
    this.args = ['agent', '-dev', '-http-port', `${http}`, '-dns-port', `${dns}`,
      '-server-port', `${server}`, '-serf-lan-port', `${lan}`, '-serf-wan-port', `${wan}`, ...args];
    this.child = spawn(MUSTER, this.args, {stdio: ['ignore', log, log], detached: true});
    this.exited = new Promise((res) => this.child.on('exit', (code, sig) => res({code, sig})));
    this.child.on('error', () => {});
    children.add(this.child);
  }

  log() {
    try {
      return readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  async ready() {
    const deadline = Date.now() + 30000;
    let last = '';
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null) throw new Error(`agent exited with ${this.child.exitCode}`);
      try {
        const r = await http(this.base, 'GET', '/v1/status/leader');
        if (r.status === 200 && typeof r.json === 'string' && r.json !== '') return;
        last = `leader ${r.text}`;
      } catch (err) {
        last = err.message;
      }
      await sleep(100);
    }
    throw new Error(`no leader within 30s (${last})`);
  }

  async request(method, path, body) {
    return http(this.base, method, path, body);
  }

  // SIGTERM, then SIGKILL after 15s; resolves once the process is gone.
  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      try {
        process.kill(-this.child.pid, 'SIGTERM');
      } catch {
        // gone
      }
      const done = await Promise.race([this.exited, sleep(15000).then(() => null)]);
      if (done === null) {
        try {
          process.kill(-this.child.pid, 'SIGKILL');
        } catch {
          // gone
        }
        await this.exited;
      }
    }
    children.delete(this.child);
  }
}

// The flags the brief names: without the background-networking ones chromium tries the
// (closed) network on its own.
export const CHROMIUM_FLAGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--no-proxy-server', '--disable-dev-shm-usage',
];

// A headless chromium with a fresh profile directory; close() removes it.
export async function launchBrowser() {
  const {chromium} = await import('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), 'muster-ui-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_FLAGS,
      viewport: {width: 1280, height: 860},
      timeout: 60000,
    });
  } catch (err) {
    rmSync(profile, {recursive: true, force: true});
    throw err;
  }
  return {
    context,
    async close() {
      await Promise.race([context.close().catch(() => {}), sleep(20000)]);
      const browser = context.browser();
      if (browser) await Promise.race([browser.close().catch(() => {}), sleep(5000)]);
      rmSync(profile, {recursive: true, force: true});
    },
  };
}
