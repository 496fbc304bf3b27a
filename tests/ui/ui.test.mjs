// The web UI in a real browser (Debian's chromium driven by playwright-core) against a real
// `muster agent -dev` holding the walkthrough's services order, invoice and tax (registered over
// HTTP with TTL checks). Screenshots of every page go to target/ui-test-output/.
import {describe, it, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {join} from 'node:path';
import {Agent, launchBrowser, OUT} from './harness.mjs';

const XSS = '<img src=x onerror=alert(1)>';
const SERVICES = [
  {name: 'order', port: 15000},
  {name: 'invoice', port: 15001},
  {name: 'tax', port: 15002},
];

describe('muster web UI', {timeout: 240000}, () => {
  let agent;
  let browser;
  let page;
  const dialogs = [];
  const pageErrors = [];
  const consoleErrors = [];
  const failedRequests = [];

  const shot = async (name) => page.screenshot({path: join(OUT, `${name}.png`), fullPage: true});
  const ok = async (method, path, body) => {
    const r = await agent.request(method, path, body);
    assert.equal(r.status, 200, `${method} ${path}: ${r.status} ${r.text}`);
    return r;
  };
  const ui = (hash) => `${agent.base}/ui/${hash}`;

  before(async () => {
    agent = await Agent.start(['-datacenter', 'zone1', '-node', 'host1']);
    for (const s of SERVICES) {
      await ok('PUT', '/v1/agent/service/register', JSON.stringify({
        Name: s.name, Tags: [s.name, 'v1'], Port: s.port, Meta: {team: 'billing'},
        Check: {CheckID: `${s.name}-ttl`, Name: `${s.name} heartbeat`, TTL: '10m'},
      }));
      await ok('PUT', `/v1/agent/check/pass/${s.name}-ttl?note=${encodeURIComponent('all good')}`);
    }
    await ok('PUT', '/v1/agent/service/register', JSON.stringify({
      Name: XSS, ID: 'xss', Tags: ['<b>bold</b>'], Port: 1,
      Meta: {note: '<script>alert(2)</script>'},
    }));
    browser = await launchBrowser();
    page = await browser.context.newPage();
    page.setDefaultTimeout(30000); // generous: CI shares two cores
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      d.dismiss().catch(() => {});
    });
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    // Chromium logs every non-2xx fetch as a console error; the expected ones (a KV listing or
    // key that does not exist, sessions on an agent without them) are checked by URL instead.
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(m.text());
    });
    page.on('response', (r) => {
      const path = new URL(r.url()).pathname;
      const expected = (r.status() === 404 && (path.startsWith('/v1/kv/') || path.startsWith('/v1/catalog/node/') || path === '/v1/session/list'))
        || (r.status() === 500 && path === '/v1/health/state/any'); // the backoff test's refusals
      if (r.status() >= 400 && !expected) failedRequests.push(`${r.status()} ${r.url()}`);
    });
  });

  after(async () => {
    // Each step runs whatever happened before it.
    if (browser) await browser.close();
    if (agent) await agent.stop();
  });

  it('redirects / to the UI and lists the three services with passing badges', async () => {
    await page.goto(`${agent.base}/`);
    assert.match(page.url(), /\/ui\/$/);
    await page.locator('#dc').filter({hasText: 'zone1'}).waitFor();
    for (const s of SERVICES) {
      const row = page.locator(`tr[data-service="${s.name}"]`);
      await row.locator('.badge.passing').waitFor();
      assert.equal(await row.locator('td').nth(2).textContent(), '1', `${s.name} has one instance`);
    }
    await page.locator('#service-search').fill('inv');
    await page.locator('tr[data-service="order"]').waitFor({state: 'detached'});
    assert.equal(await page.locator('tr[data-service]').count(), 1);
    await page.locator('#service-search').fill('');
    await page.locator('tr[data-service="order"]').waitFor();
    await shot('services');
  });

  it('turns a badge critical when its check fails, without a reload', async () => {
    await page.goto(ui('#/services'));
    const row = page.locator('tr[data-service="order"]');
    await row.locator('.badge.passing').waitFor();
    await page.evaluate(() => {
      window.notReloaded = true;
    });
    await ok('PUT', `/v1/agent/check/fail/order-ttl?note=${encodeURIComponent('order is down')}`);
    await row.locator('.badge.critical').waitFor();
    assert.equal(await page.evaluate(() => window.notReloaded === true), true, 'the page was not reloaded');
    assert.equal(await page.locator('tr[data-service="invoice"] .badge.critical').count(), 0);
    await shot('services-order-critical');
    // A second instance of tax shows in its count, still without a reload.
    await ok('PUT', '/v1/agent/service/register', JSON.stringify({
      Name: 'tax', ID: 'tax-2', Tags: ['tax', 'v2'], Port: 15012,
      Check: {CheckID: 'tax-2-ttl', Name: 'tax-2 heartbeat', TTL: '10m'},
    }));
    await page.locator('tr[data-service="tax"] td.num').filter({hasText: '2'}).waitFor();
    await page.locator('tr[data-service="tax"] .badge.critical').waitFor();
    assert.equal(await page.evaluate(() => window.notReloaded === true), true, 'the page was not reloaded');
  });

  it('closes its held queries when leaving a page', async () => {
    await page.goto(ui('#/services'));
    await page.locator('tr[data-service="tax"] .badge').first().waitFor();
    await page.locator('#services-body[aria-busy="false"]').waitFor();
    const aborted = [];
    const onFailed = (r) => aborted.push(new URL(r.url()).pathname);
    page.on('requestfailed', onFailed);
    await page.getByRole('link', {name: 'Members'}).click();
    await page.locator('table.members').waitFor();
    // Both held queries of the services page end when it is left (the browser aborts them).
    for (let i = 0; i < 50 && aborted.length < 2; i++) await page.waitForTimeout(100);
    page.off('requestfailed', onFailed);
    assert.deepEqual(aborted.sort(), ['/v1/catalog/services', '/v1/health/state/any']);
  });

  it('says when the agent cannot be reached and backs off, then recovers', async () => {
    let refused = 0;
    await page.route('**/v1/health/state/any*', async (route) => {
      if (refused < 2) {
        refused += 1;
        await route.fulfill({status: 500, contentType: 'text/plain', body: 'agent unavailable'});
      } else {
        await route.continue();
      }
    });
    try {
      await page.goto(ui('#/members'));
      await page.goto(ui('#/services'));
      await page.locator('#conn').filter({hasText: 'Cannot read from the agent'}).waitFor();
      await shot('services-agent-unreachable');
      await page.locator('tr[data-service="tax"] .badge').first().waitFor();
      await page.locator('#conn').waitFor({state: 'hidden'});
      assert.equal(refused, 2);
    } finally {
      await page.unroute('**/v1/health/state/any*');
    }
  });

  it('costs nothing while idle but its held queries', async () => {
    await page.goto(ui('#/services'));
    await page.locator('tr[data-service="tax"] .badge').first().waitFor();
    // Let the first answers and the per-service instance reads finish.
    await page.locator('#services-body[aria-busy="false"]').waitFor();
    const seen = [];
    const onRequest = (r) => seen.push(r.url());
    page.on('request', onRequest);
    await page.waitForTimeout(3000);
    page.off('request', onRequest);
    assert.deepEqual(seen, [], 'an idle services page sends no requests');
  });

  it('shows a service with its instance, address, meta, and checks with output', async () => {
    await page.goto(ui('#/services'));
    await page.getByRole('link', {name: 'order', exact: true}).click();
    await page.locator('h1').filter({hasText: 'order'}).waitFor();
    const card = page.locator('section.card[data-instance="order"]');
    await card.getByText('order is down').waitFor();
    await card.locator('.badge.critical').first().waitFor();
    await card.getByText(':15000').waitFor();
    await card.getByText('billing').waitFor();
    // Live here too: passing again shows without a reload.
    await ok('PUT', '/v1/agent/check/pass/order-ttl?note=back');
    await card.getByText('back', {exact: true}).waitFor();
    await shot('service-order');
  });

  it('renders a hostile service name, tag and meta as text', async () => {
    await page.goto(ui('#/services'));
    const link = page.getByRole('link', {name: XSS, exact: true});
    await link.waitFor();
    await page.getByText('<b>bold</b>', {exact: true}).waitFor();
    assert.equal(await page.locator('main img, main b, main script').count(), 0);
    await link.click();
    await page.locator('h1').filter({hasText: XSS}).waitFor();
    assert.equal(await page.locator('h1').textContent(), XSS);
    await page.getByText('<script>alert(2)</script>', {exact: true}).waitFor();
    assert.equal(await page.locator('main img, main b, main script').count(), 0);
    await shot('service-xss');
    // A KV key and value of markup are text too.
    await ok('PUT', `/v1/kv/${encodeURIComponent(XSS)}`, '<script>alert(3)</script>');
    await page.goto(ui('#/kv/'));
    await page.getByRole('link', {name: `key ${XSS}`}).click();
    await page.waitForFunction(() => document.querySelector('#kv-value')?.value === '<script>alert(3)</script>');
    assert.equal(await page.locator('main img, main b, main script').count(), 0);
    await ok('DELETE', `/v1/kv/${encodeURIComponent(XSS)}`);
    assert.deepEqual(dialogs, [], 'no dialog fired');
  });

  it('lists nodes and shows a node', async () => {
    await page.goto(ui('#/nodes'));
    const row = page.locator('tr[data-node="host1"]');
    await row.waitFor();
    await row.getByRole('link', {name: 'invoice'}).waitFor();
    await shot('nodes');
    await row.getByRole('link', {name: 'host1'}).click();
    await page.locator('h1').filter({hasText: 'host1'}).waitFor();
    await page.locator('table.checks').getByText('tax heartbeat').waitFor();
    await shot('node-host1');
    await page.goto(ui('#/nodes/no-such-node'));
    await page.getByText('This node is not in the catalog.').waitFor();
    await page.goto(ui('#/services/no-such-service'));
    await page.getByText('This service has no instances').waitFor();
    await page.goto(ui('#/no-such-page'));
    await page.locator('h1').filter({hasText: 'Not found'}).waitFor();
  });

  it('creates, edits with a concurrent change detected, and deletes a KV key', async () => {
    await page.goto(ui('#/kv/'));
    await page.getByText('The KV store is empty.').waitFor();
    await shot('kv-empty');
    await page.locator('#kv-new-key').fill('app/color');
    await page.locator('#kv-new-value').fill('blue');
    await page.locator('#kv-new-flags').fill('42');
    await page.getByRole('button', {name: 'Create'}).click();
    await page.waitForURL(/#\/kv\/app\/color$/);
    const value = page.locator('#kv-value');
    await page.waitForFunction(() => document.querySelector('#kv-value')?.value === 'blue');
    assert.equal(await page.locator('#kv-flags').inputValue(), '42');
    let stored = await ok('GET', '/v1/kv/app/color');
    assert.equal(Buffer.from(stored.json[0].Value, 'base64').toString(), 'blue');
    assert.equal(stored.json[0].Flags, 42);
    await shot('kv-key');

    // Someone else writes while this page edits: saving must not overwrite them.
    await value.fill('green');
    await ok('PUT', '/v1/kv/app/color', 'red');
    await page.locator('.notice').filter({hasText: 'Someone else changed'}).waitFor();
    await page.getByRole('button', {name: 'Save'}).click();
    await page.locator('#kv-message').filter({hasText: 'someone else changed'}).waitFor();
    stored = await ok('GET', '/v1/kv/app/color?raw');
    assert.equal(stored.text, 'red', 'the concurrent value was not overwritten');
    assert.equal(await value.inputValue(), 'green', 'the edit is kept in the form');
    await shot('kv-conflict');

    await page.getByRole('button', {name: 'Load the current value'}).click();
    assert.equal(await value.inputValue(), 'red');
    await value.fill('green');
    await page.getByRole('button', {name: 'Save'}).click();
    await page.locator('#kv-message').filter({hasText: 'Saved.'}).waitFor();
    stored = await ok('GET', '/v1/kv/app/color?raw');
    assert.equal(stored.text, 'green');

    await page.goto(ui('#/kv/'));
    await page.getByRole('link', {name: 'folder app/'}).click();
    await page.getByRole('link', {name: 'key color'}).waitFor();
    await shot('kv-folder');

    await page.getByRole('link', {name: 'key color'}).click();
    await page.waitForFunction(() => document.querySelector('#kv-value')?.value === 'green');
    await page.getByRole('button', {name: 'Delete', exact: true}).click();
    await page.getByRole('button', {name: 'Yes, delete'}).click();
    await page.waitForURL(/#\/kv\/app\/$/);
    const gone = await agent.request('GET', '/v1/kv/app/color');
    assert.equal(gone.status, 404, 'the key is deleted');
    await page.getByText('No keys under this folder.').waitFor();
  });

  it('shows members and sessions (or says sessions are not available)', async () => {
    await page.goto(ui('#/members'));
    const members = page.locator('table.members');
    await members.getByText('host1').waitFor();
    await members.getByText('alive').waitFor();
    await shot('members');
    await page.goto(ui('#/sessions'));
    await page.locator('table.sessions, #sessions-unavailable, main p.muted:text("No sessions.")').first().waitFor();
    await shot('sessions');
  });

  it('lists sessions in Consul\'s documented shape', async () => {
    // Consul's documented /v1/session/list answer, served to the page whether or not this agent
    // has sessions yet, so the rendering is checked against the documented shape.
    const sample = [{
      ID: 'adf4238a-882b-9ddc-4a9d-5b6758e4159e', Name: 'test-session', Node: 'host1',
      LockDelay: 1.5e10, Behavior: 'release', TTL: '30s', NodeChecks: ['serfHealth'],
      ServiceChecks: [{ID: 'order-ttl', Namespace: ''}], CreateIndex: 1086449, ModifyIndex: 1086449,
    }];
    await page.route('**/v1/session/list*', (route) => route.fulfill({
      status: 200, contentType: 'application/json', headers: {'X-Consul-Index': '1086449'},
      body: JSON.stringify(sample),
    }));
    try {
      await page.goto(ui('#/members'));
      await page.goto(ui('#/sessions'));
      const row = page.locator('table.sessions tbody tr');
      await row.getByText('test-session').waitFor();
      for (const text of ['adf4238a-882b-9ddc-4a9d-5b6758e4159e', 'release', '30s', '15s', 'serfHealth, order-ttl']) {
        await row.getByText(text, {exact: true}).waitFor();
      }
      await row.getByRole('link', {name: 'host1'}).waitFor();
      await shot('sessions-sample');
    } finally {
      await page.unroute('**/v1/session/list*');
    }
  });

  it('fits a phone-sized window and follows a dark system theme', async () => {
    await page.setViewportSize({width: 390, height: 844});
    await page.emulateMedia({colorScheme: 'dark'});
    await page.goto(ui('#/services'));
    await page.locator('tr[data-service="tax"] .badge').first().waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal scrolling on a phone (${overflow}px too wide)`);
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.equal(bg, 'rgb(20, 23, 27)', 'dark background');
    await shot('services-phone-dark');
    // Keyboard: Tab reaches the navigation, Enter follows a link, focus moves to the page.
    await page.evaluate(() => document.activeElement?.blur());
    for (let i = 0; i < 15; i++) {
      await page.keyboard.press('Tab');
      if (await page.evaluate(() => document.activeElement?.dataset?.section === 'nodes')) break;
    }
    await page.keyboard.press('Enter');
    await page.waitForURL(/#\/nodes$/);
    await page.locator('h1').filter({hasText: 'Nodes'}).waitFor();
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'main', 'focus moved to the page');
    await page.setViewportSize({width: 1280, height: 860});
    await page.emulateMedia({colorScheme: 'light'});
  });

  it('raised no dialog, no script error and no console error', () => {
    assert.deepEqual(dialogs, []);
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(consoleErrors, []);
    assert.deepEqual(failedRequests, []);
  });
});
