/**
 * The report as a browser shows it: made by the CLI from summaries in a local store, opened
 * from disk in headless Chromium (Debian's /usr/bin/chromium, installed by bootstrap) driven
 * by playwright-core. Every chart must lay out visibly with the bars and points the
 * summaries give, the failed gate must stand out, the page must make no request beyond its
 * own file and log no error. A full-page screenshot is kept in test-output/report.png.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { runCli } from '../helpers/run-cli';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectedCounts, HOSTILE, RUN, seedReportStore } from '../helpers/report-fixtures';

// The page's globals that the functions run in the page use (the project compiles without the DOM lib).
declare const window: { scrollX: number; scrollY: number };
declare function getComputedStyle(e: unknown): { backgroundColor: string; borderLeftColor: string; borderLeftWidth: string };

const repo = path.resolve(__dirname, '../..');
const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT = path.join(repo, 'test-output', 'report.png');

let tmp: string;
let context: BrowserContext;
let page: Page;
let fileUrl: string;
const requests: string[] = [];
const failedRequests: string[] = [];
const consoleErrors: string[] = [];
const dialogs: string[] = [];

describe('the report in headless Chromium', () => {
  beforeAll(async () => {
    if (!fs.existsSync(CHROMIUM))
      throw new Error(`${CHROMIUM} is missing: run \`bash scripts/bootstrap.sh\` (it installs Debian's chromium package)`);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-report-browser-'));
    const store = path.join(tmp, 'store');
    await seedReportStore(store);
    const res = await runCli(['report', RUN, '--store', store, '--out', path.join(tmp, 'out'), '--json']);
    if (res.code !== 0) throw new Error(`srlm report failed (${res.code}): ${res.stderr}`);
    const { html } = JSON.parse(res.stdout) as { html: string };
    fileUrl = pathToFileURL(html).href;

    // A fresh profile, and none of Chromium's background connections: the network here is closed.
    context = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1100, height: 900 },
      timeout: 60_000,
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('request', (r) => requests.push(r.url()));
    page.on('requestfailed', (r) => failedRequests.push(`${r.url()}: ${r.failure()?.errorText}`));
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') consoleErrors.push(`${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    await page.goto(fileUrl, { waitUntil: 'load' });
  }, 180_000);

  afterAll(async () => {
    await context?.close();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('lays out every chart visibly, with the bars and points the summaries give', async () => {
    const charts = page.locator('svg[data-chart]');
    const names = await charts.evaluateAll((els) => els.map((e) => e.getAttribute('data-chart')!));
    expect(names.sort()).toEqual(Object.keys(expectedCounts).sort());
    for (const name of names) {
      const svg = page.locator(`svg[data-chart="${name}"]`);
      await expect.poll(() => svg.isVisible(), { message: `${name} visible` }).toBe(true);
      const box = (await svg.boundingBox())!;
      expect(box.width, name).toBeGreaterThan(300);
      expect(box.height, name).toBeGreaterThan(150);
      expect(await svg.locator('[data-value]').count(), name).toBe(expectedCounts[name]);
      // every bar and point lies inside its chart, and all but zero-height bars have an area
      const marks = await svg.locator('[data-value]').evaluateAll((els) =>
        els.map((e) => {
          const r = e.getBoundingClientRect();
          return { x: r.x + window.scrollX, y: r.y + window.scrollY, w: r.width, h: r.height, value: Number(e.getAttribute('data-value')) };
        }),
      );
      const top = box.y + (await page.evaluate(() => window.scrollY));
      for (const m of marks) {
        expect(m.x, name).toBeGreaterThanOrEqual(box.x - 1);
        expect(m.x + m.w, name).toBeLessThanOrEqual(box.x + box.width + 1);
        expect(m.y, name).toBeGreaterThanOrEqual(top - 1);
        expect(m.y + m.h, name).toBeLessThanOrEqual(top + box.height + 1);
        if (m.value !== 0) expect(m.w * m.h, `${name}: mark of ${m.value} has an area`).toBeGreaterThan(0);
      }
    }
  });

  it('shows a held-back model in amber, not as an error: banner, panel, its unmet checks', async () => {
    const alert = page.locator('[data-alert="gate-failed"]');
    await expect.poll(() => alert.isVisible()).toBe(true);
    expect(await alert.innerText()).toMatch(
      /^Promotion gate held back the model of iteration 3:[\s\S]*the safeguard working, not an error/,
    );
    const failed = page.locator('[data-gate="failed"]');
    expect(await failed.count()).toBe(1);
    expect(await failed.getAttribute('data-iteration')).toBe('3');
    expect(await failed.isVisible()).toBe(true);
    const colours = await failed.evaluate((e) => {
      const s = getComputedStyle(e);
      return { background: s.backgroundColor, border: s.borderLeftColor, width: s.borderLeftWidth };
    });
    const rgb = (c: string): number[] => c.match(/\d+/g)!.slice(0, 3).map(Number);
    const amber = (c: string): boolean => {
      const [r, g, b] = rgb(c);
      return r! > 200 && g! > 120 && g! < 200 && b! < 60;
    };
    expect(amber(colours.border), `border ${colours.border} is amber`).toBe(true);
    const bannerBorder = await alert.evaluate((e) => getComputedStyle(e).borderLeftColor);
    expect(amber(bannerBorder), `banner border ${bannerBorder} is amber`).toBe(true);
    expect(parseFloat(colours.width)).toBeGreaterThanOrEqual(6);
    expect(colours.background).not.toBe(await page.locator('[data-gate="passed"]').evaluate((e) => getComputedStyle(e).backgroundColor));
    expect(await failed.locator('tr[data-check="failed"]').count()).toBe(2);
    expect(await failed.locator('tr[data-check="failed"]').first().innerText()).toContain('not met');
  });

  it('shows hostile text as text: no script runs, none is in the page', async () => {
    expect(await page.locator('script').count()).toBe(0);
    expect(dialogs).toEqual([]);
    expect(await page.locator('body').innerText()).toContain(HOSTILE);
  });

  it('makes no request beyond its own file and logs no error', async () => {
    expect(requests).toEqual([fileUrl]);
    expect(failedRequests).toEqual([]);
    expect(consoleErrors).toEqual([]);
  });

  it('takes a full-page screenshot (test-output/report.png)', async () => {
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    fs.rmSync(SCREENSHOT, { force: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    const png = fs.readFileSync(SCREENSHOT);
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    expect(png.subarray(12, 16).toString('latin1')).toBe('IHDR');
    const width = png.readUInt32BE(16);
    const height = png.readUInt32BE(20);
    expect(width).toBe(1100);
    // a long page: seven charts, tables and the gate panels
    expect(height).toBeGreaterThan(2500);
    expect(png.length).toBeGreaterThan(100_000);
    expect(png.length).toBeLessThan(20_000_000);
  });
});
