// The HTML report in a real headless Chromium (Debian's `chromium`), driven over the DevTools
// protocol on a pipe: the page must load without console errors or exceptions, draw its charts
// and tables, load the item images, and a screenshot of the whole page is saved
// (build-tests/report.png, or $SEMDEDUP_SCREENSHOT).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Readable, Writable } from 'node:stream';

import { SynthDataset } from '../tools/synth.js';
import { computeCentroids } from '../src/steps/cluster.js';
import { assignAndSortClusters } from '../src/steps/sort.js';
import { semdedup } from '../src/steps/dedup.js';
import { idsFromStrings } from '../src/io/ids.js';
import { writeReport } from '../src/index.js';
import { ROOT as REPO, runCli, withSpec } from './helpers.js';

function findChromium(): string {
  // Debian's /usr/bin/chromium is a wrapper script that does not exec: run the binary itself.
  for (const c of [process.env.CHROMIUM, '/usr/lib/chromium/chromium', 'chromium', 'chromium-browser', 'google-chrome']) {
    if (!c) continue;
    const r = spawnSync(c, ['--version'], { encoding: 'utf8' });
    if (r.status === 0) return c;
  }
  throw new Error('no Chromium found: install Debian\'s `chromium` (scripts/setup.sh does) or set CHROMIUM');
}

interface CdpMessage {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
  sessionId?: string;
}

/** A minimal DevTools protocol client over Chromium's --remote-debugging-pipe (fd 3 in, fd 4 out). */
class Cdp {
  private next = 1;
  private pending = new Map<number, { resolve: (r: Record<string, unknown>) => void; reject: (e: Error) => void }>();
  private listeners: ((m: CdpMessage) => void)[] = [];
  private buf = '';
  constructor(private readonly input: Writable, output: Readable) {
    output.setEncoding('utf8');
    output.on('data', (chunk: string) => {
      this.buf += chunk;
      let i: number;
      while ((i = this.buf.indexOf('\0')) >= 0) {
        const msg = JSON.parse(this.buf.slice(0, i)) as CdpMessage;
        this.buf = this.buf.slice(i + 1);
        if (msg.id !== undefined) {
          const p = this.pending.get(msg.id);
          this.pending.delete(msg.id);
          if (msg.error) p?.reject(new Error(msg.error.message));
          else p?.resolve(msg.result ?? {});
        } else for (const l of this.listeners) l(msg);
      }
    });
  }
  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no answer within 60 s`));
      }, 60_000);
      timer.unref();
      this.pending.set(id, {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.input.write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + '\0');
    });
  }
  on(fn: (m: CdpMessage) => void): void {
    this.listeners.push(fn);
  }
  waitFor(method: string, timeoutMs: number): Promise<CdpMessage> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ${method} within ${timeoutMs} ms`)), timeoutMs);
      this.on((m) => {
        if (m.method === method) {
          clearTimeout(t);
          resolve(m);
        }
      });
    });
  }
}

/** A tiny SVG picture per item, so that the report shows images for image ids. */
function writeSvg(path: string, hue: number): void {
  writeFileSync(path, `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48"><rect width="64" height="48" fill="hsl(${hue},60%,55%)"/><circle cx="32" cy="24" r="14" fill="white"/></svg>`);
}

test('report: self-contained HTML renders in headless Chromium without console errors; screenshot saved', { timeout: 180_000 }, async () => {
  const chromium = findChromium();
  const dir = mkdtempSync(join(tmpdir(), 'semdedup-report-'));
  try {
    const n = 3000;
    const d = 16;
    const ds = new SynthDataset({ n, dim: d, clusters: 12, seed: 5, dupFraction: 0.25, exactFraction: 0.3, sizeDistribution: 'heavy' });
    const X = ds.generate();
    const emb = join(dir, 'emb.f32');
    writeFileSync(emb, new Uint8Array(X.buffer, X.byteOffset, X.byteLength));
    const spec = { path: emb, format: 'memmap' as const, count: n, dim: d };
    const out = join(dir, 'out');
    await withSpec(computeCentroids, { embeddings: spec, outputDir: out, k: 12, niter: 10, spherical: true, device: 'cpu' });
    await withSpec(assignAndSortClusters, { outputDir: out, simMetric: 'cosine', keepHard: true, spherical: true, embeddings: spec });
    await withSpec(semdedup, { embeddings: spec, outputDir: out, epsList: [0.01, 0.05], device: 'cpu' });
    // Ids are image files (so the page shows them), one with characters that need escaping.
    const imgDir = join(dir, 'images');
    mkdirSync(imgDir);
    const idList = Array.from({ length: n }, (_, i) => join(imgDir, `item_${i}${i === 7 ? '<&"x>' : ''}.svg`));
    idList.forEach((p, i) => writeSvg(p, (i * 37) % 360));
    const html = join(dir, 'report.html');
    const r = await writeReport({ outputDir: out, ids: idsFromStrings(idList), output: html, sample: 24, eps: 0.05 });
    assert.equal(r.eps, 0.05);
    const text = readFileSync(html, 'utf8');
    assert.ok(!/<script[^>]+src=/i.test(text), 'no external scripts');
    assert.ok(!/<link[^>]+href=/i.test(text), 'no external stylesheets');
    assert.ok(!/https?:\/\//.test(text.replace(/http:\/\/www\.w3\.org\/2000\/svg/g, '')), 'no network addresses');

    const profile = join(dir, 'profile');
    const proc = spawn(
      chromium,
      ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check', `--user-data-dir=${profile}`, '--remote-debugging-pipe', 'about:blank'],
      { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'], detached: true },
    );
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    let stderr = '';
    proc.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const cdp = new Cdp(proc.stdio[3] as Writable, proc.stdio[4] as Readable);
    const problems: string[] = [];
    try {
      const { targetId } = (await cdp.send('Target.createTarget', { url: 'about:blank' })) as { targetId: string };
      const { sessionId } = (await cdp.send('Target.attachToTarget', { targetId, flatten: true })) as { sessionId: string };
      cdp.on((m) => {
        if (m.sessionId !== sessionId) return;
        const p = m.params ?? {};
        if (m.method === 'Runtime.consoleAPICalled' && (p.type === 'error' || p.type === 'assert'))
          problems.push(`console.${String(p.type)}: ${JSON.stringify(p.args)}`);
        if (m.method === 'Runtime.exceptionThrown') problems.push(`exception: ${JSON.stringify(p.exceptionDetails)}`);
        if (m.method === 'Log.entryAdded') {
          const e = p.entry as { level: string; text: string; url?: string };
          if (e.level === 'error') problems.push(`log: ${e.text} ${e.url ?? ''}`);
        }
      });
      for (const m of ['Runtime.enable', 'Log.enable', 'Page.enable']) await cdp.send(m, {}, sessionId);
      await cdp.send('Emulation.setDeviceMetricsOverride', { width: 1200, height: 900, deviceScaleFactor: 1, mobile: false }, sessionId);
      const loaded = cdp.waitFor('Page.loadEventFired', 60_000);
      await cdp.send('Page.navigate', { url: pathToFileURL(html).href }, sessionId);
      await loaded;
      const evaluate = async (expression: string) =>
        ((await cdp.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }, sessionId)) as { result: { value: unknown } }).result.value;
      const facts = (await evaluate(`(async () => {
        // The page loads images lazily: ask for all of them, and wait (at most 20 s).
        for (const im of document.images) im.loading = 'eager';
        const all = Promise.all([...document.images].map((im) => im.complete ? 0 : new Promise((r) => { im.addEventListener('load', r); im.addEventListener('error', r); })));
        await Promise.race([all, new Promise((r) => setTimeout(r, 20000))]);
        return {
          rendered: document.body.getAttribute('data-rendered'),
          svgs: document.querySelectorAll('svg.chart').length,
          polyline: document.querySelector('#curve polyline').getAttribute('points').split(' ').length,
          bars: document.querySelectorAll('svg.chart rect').length,
          removedRows: document.querySelectorAll('#removed tbody tr').length,
          images: document.images.length,
          brokenImages: [...document.images].filter((im) => !(im.naturalWidth > 0)).map((im) => im.src),
          height: document.documentElement.scrollHeight,
          title: document.title,
        };
      })()`)) as { rendered: string; svgs: number; polyline: number; bars: number; removedRows: number; images: number; brokenImages: string[]; height: number; title: string };
      assert.equal(facts.rendered, 'yes', 'the inline script ran');
      assert.equal(facts.svgs, 4, 'curve, two histograms of M, cluster sizes');
      assert.equal(facts.polyline, 300, 'the curve has its 300 points');
      assert.ok(facts.bars > 10);
      assert.equal(facts.removedRows, 24);
      assert.equal(facts.images, 48, 'each removed item and its remover shown as an image');
      assert.deepEqual(facts.brokenImages, []);
      // The pointer readout reacts to the curve.
      await cdp.send('Input.dispatchMouseEvent', { type: 'mouseMoved', x: 400, y: 260 }, sessionId);
      const readout = (await evaluate(`document.getElementById('readout').textContent`)) as string;
      assert.match(readout, /^eps [0-9.]+: kept fraction [0-9.]+$/);
      const shot = (await cdp.send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true, clip: { x: 0, y: 0, width: 1200, height: Math.min(facts.height, 6000), scale: 1 } }, sessionId)) as { data: string };
      const png = Buffer.from(shot.data, 'base64');
      assert.ok(png.subarray(1, 4).toString() === 'PNG' && png.length > 20_000, 'a real screenshot');
      const target = process.env.SEMDEDUP_SCREENSHOT ?? join(REPO, 'build-tests', 'report.png');
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, png);
      assert.deepEqual(problems, [], `console errors:\n${problems.join('\n')}`);
    } catch (e) {
      throw new Error(`${(e as Error).message}\nchromium stderr:\n${stderr.slice(-2000)}`, { cause: e });
    } finally {
      // Close the browser; if it does not exit, end its whole process group.
      void cdp.send('Browser.close').catch(() => undefined);
      const timer = new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), 10_000).unref());
      if ((await Promise.race([exited, timer])) === 'late') {
        try {
          process.kill(-proc.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
        await exited;
      }
      for (const fd of [2, 3, 4]) (proc.stdio[fd] as Readable | Writable | null)?.destroy();
    }
    // The command line writes the same kind of page.
    const cfg = join(dir, 'run.yaml');
    writeFileSync(cfg, `embeddings: ${emb}\nembeddings_format: memmap\ndim: ${d}\noutput_dir: ${out}\nk: 12\n`);
    const c = runCli(['report', '-c', cfg, '--eps', '0.03', '-o', join(dir, 'cli.html')], dir);
    assert.equal(c.code, 0, c.stderr);
    assert.match(readFileSync(join(dir, 'cli.html'), 'utf8'), /at eps <b>0\.03<\/b>/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Opens `html` in headless Chromium until its network is idle (15 s of virtual time); whether the page's script ran. */
async function openInChromium(html: string): Promise<{ rendered: boolean }> {
  const dom = await new Promise<string>((resolve, reject) => {
    const p = spawn(findChromium(), ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', `--user-data-dir=${join(dirname(html), 'profile')}`,
      '--window-size=1200,20000', '--virtual-time-budget=15000', '--dump-dom', pathToFileURL(html).href], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    p.on('error', reject);
    p.on('exit', () => resolve(out));
  });
  return { rendered: /data-rendered="yes"/.test(dom) };
}

test('report: no request when opened (ids that are http(s) image URLs shown as text, local pictures embedded); remote thumbnails only when asked', { timeout: 180_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'semdedup-report-net-'));
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'image/svg+xml' });
    res.end('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  try {
    const n = 2000;
    const d = 16;
    const ds = new SynthDataset({ n, dim: d, clusters: 6, seed: 9, dupFraction: 0.3 });
    const X = ds.generate();
    const emb = join(dir, 'emb.f32');
    writeFileSync(emb, new Uint8Array(X.buffer, X.byteOffset, X.byteLength));
    const spec = { path: emb, format: 'memmap' as const, count: n, dim: d };
    const out = join(dir, 'out');
    await withSpec(computeCentroids, { embeddings: spec, outputDir: out, k: 6, niter: 10, spherical: true, device: 'cpu' });
    await withSpec(assignAndSortClusters, { outputDir: out, simMetric: 'cosine', keepHard: true, spherical: true, embeddings: spec });
    await withSpec(semdedup, { embeddings: spec, outputDir: out, epsList: [0.05], device: 'cpu' });
    // Half the ids are remote image URLs, half local picture files.
    const local = join(dir, 'pics');
    mkdirSync(local);
    const ids = Array.from({ length: n }, (_, i) => (i % 2 ? `http://127.0.0.1:${port}/img_${i}.png` : join(local, `p${i}.svg`)));
    ids.forEach((p, i) => i % 2 === 0 && writeSvg(p, i % 360));
    const html = join(dir, 'report.html');
    await writeReport({ outputDir: out, ids: idsFromStrings(ids), output: html, sample: 40, eps: 0.05 });
    const text = readFileSync(html, 'utf8');
    const csp = /Content-Security-Policy" content="([^"]*)"/.exec(text)![1]!;
    assert.ok(!/https?:/.test(csp), `CSP without http(s): ${csp}`);
    assert.ok(!/<img[^>]+src="(https?|file):/.test(text), 'no image loaded from the network or the file system');
    assert.ok(/<img[^>]+src="data:image\/svg\+xml;base64,/.test(text), 'local pictures embedded');
    assert.ok(text.includes(`<code>http://127.0.0.1:${port}/img_`), 'remote ids shown as text');
    const opened = await openInChromium(html);
    assert.ok(opened.rendered, 'the page rendered');
    assert.deepEqual(hits, [], 'opening the report made no request');

    // Asked for: remote thumbnails are loaded (this also shows the check above can see requests).
    const remote = join(dir, 'remote.html');
    await writeReport({ outputDir: out, ids: idsFromStrings(ids), output: remote, sample: 40, eps: 0.05, remoteThumbnails: true });
    assert.match(readFileSync(remote, 'utf8'), /img-src data: https: http:/);
    await openInChromium(remote);
    assert.ok(hits.length > 0 && hits.every((h) => /^\/img_\d+\.png$/.test(h)), `remote thumbnails requested: ${hits.length}`);
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
