// One self-contained HTML page about a finished run: kept fraction against eps, the histogram of
// M, cluster sizes, the largest clusters, and a sample of removed items beside what removed them.
// The page makes no request: inline SVG, a few lines of inline script, and the pictures of ids that
// name local image files embedded as data: URLs; its Content-Security-Policy allows nothing else.
// Ids that are http(s) URLs are shown as text unless the user asks for remote thumbnails.
import { extname, isAbsolute, resolve } from 'node:path';
import { closeSync, constants, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { writeOutputFile } from '../io/atomic.js';
import { outputs } from '../layout.js';
import { ConfigError } from '../errors.js';
import type { Ids } from '../io/ids.js';
import { checkRunIds, clusterOfPositions, readRun, recheckEps, type RunFolderOptions } from './common.js';
import { keptFractionCurve } from './fraction.js';
import { committedExactCopies } from './exact.js';
import { isRemovedAt, thresholdOf, validateOneEps } from '../decision.js';

export interface ReportOptions extends RunFolderOptions {
  /** The HTML file to write (default: `<outputDir>/report.html`). */
  output?: string;
  /** The eps of the removed sample and the cluster table (default: the first recorded eps, else 0.05). */
  eps?: number;
  ids?: Ids;
  /** Removed items shown (default 48). */
  sample?: number;
  /** Largest clusters listed (default 20). */
  topClusters?: number;
  /** Page title. */
  title?: string;
  /**
   * Show ids that are http(s) URLs of images as pictures loaded from the network when the page is
   * opened (default false: the page makes no request and shows such ids as text).
   */
  remoteThumbnails?: boolean;
}

export interface ReportResult {
  output: string;
  eps: number;
  bytes: number;
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function fmt(x: number, digits = 4): string {
  if (!Number.isFinite(x)) return String(x);
  return Number(x.toPrecision(digits)).toString();
}

interface Series {
  x: number[];
  y: number[];
}

/** A line chart with axes, ticks and an optional marker at x = mark. */
function lineChart(s: Series, opts: { w: number; h: number; xLabel: string; yLabel: string; xMin?: number; yMax?: number; marks?: number[]; id: string }): string {
  const { w, h } = opts;
  const L = 56, R = 16, T = 12, B = 40;
  const x0 = opts.xMin ?? Math.min(...s.x), x1 = Math.max(...s.x);
  const y0 = 0, y1 = opts.yMax ?? Math.max(1e-12, ...s.y);
  const X = (v: number) => L + ((v - x0) / (x1 - x0 || 1)) * (w - L - R);
  const Y = (v: number) => T + (1 - (v - y0) / (y1 - y0 || 1)) * (h - T - B);
  const pts = s.x.map((v, i) => `${X(v).toFixed(1)},${Y(s.y[i]!).toFixed(1)}`).join(' ');
  const ticks: string[] = [];
  for (let i = 0; i <= 5; i++) {
    const xv = x0 + ((x1 - x0) * i) / 5;
    const yv = y0 + ((y1 - y0) * i) / 5;
    ticks.push(`<line x1="${X(xv)}" y1="${h - B}" x2="${X(xv)}" y2="${h - B + 4}" stroke="#555"/><text x="${X(xv)}" y="${h - B + 16}" text-anchor="middle">${fmt(xv, 3)}</text>`);
    ticks.push(`<line x1="${L - 4}" y1="${Y(yv)}" x2="${w - R}" y2="${Y(yv)}" stroke="#e4e4e4"/><text x="${L - 6}" y="${Y(yv) + 4}" text-anchor="end">${fmt(yv, 3)}</text>`);
  }
  const marks = (opts.marks ?? []).filter((m) => m >= x0 && m <= x1).map((m) => `<line x1="${X(m)}" y1="${T}" x2="${X(m)}" y2="${h - B}" stroke="#c0392b" stroke-dasharray="4 3"/><text x="${X(m) + 3}" y="${T + 10}" fill="#c0392b">${fmt(m, 3)}</text>`);
  return `<svg id="${opts.id}" class="chart" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" data-x0="${x0}" data-x1="${x1}" data-l="${L}" data-r="${R}">
<g font-size="11" fill="#333">${ticks.join('')}</g>
<line x1="${L}" y1="${h - B}" x2="${w - R}" y2="${h - B}" stroke="#555"/><line x1="${L}" y1="${T}" x2="${L}" y2="${h - B}" stroke="#555"/>
<polyline fill="none" stroke="#2471a3" stroke-width="2" points="${pts}"/>${marks.join('')}
<text x="${(L + w - R) / 2}" y="${h - 6}" text-anchor="middle" font-size="12">${esc(opts.xLabel)}</text>
<text transform="translate(14 ${(T + h - B) / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(opts.yLabel)}</text>
</svg>`;
}

/** A histogram: bins [edges[i], edges[i+1]) with counts; log scale on y when asked. */
function barChart(edges: number[], counts: number[], opts: { w: number; h: number; xLabel: string; yLabel: string; log?: boolean; marks?: number[]; xTicks?: [number, string][] }): string {
  const { w, h } = opts;
  const L = 56, R = 16, T = 12, B = 40;
  const x0 = edges[0]!, x1 = edges[edges.length - 1]!;
  const tr = (c: number) => (opts.log ? Math.log10(1 + c) : c);
  const yMax = Math.max(1e-12, ...counts.map(tr));
  const X = (v: number) => L + ((v - x0) / (x1 - x0 || 1)) * (w - L - R);
  const Y = (v: number) => T + (1 - v / yMax) * (h - T - B);
  const bars = counts
    .map((c, i) => {
      if (c === 0) return '';
      const xa = X(edges[i]!), xb = X(edges[i + 1]!);
      return `<rect x="${xa.toFixed(1)}" y="${Y(tr(c)).toFixed(1)}" width="${Math.max(0.5, xb - xa - 0.5).toFixed(1)}" height="${(h - B - Y(tr(c))).toFixed(1)}" fill="#5d8aa8"><title>[${fmt(edges[i]!)}, ${fmt(edges[i + 1]!)}): ${c}</title></rect>`;
    })
    .join('');
  const ticks: string[] = [];
  const xTicks = opts.xTicks ?? Array.from({ length: 6 }, (_, i): [number, string] => [x0 + ((x1 - x0) * i) / 5, fmt(x0 + ((x1 - x0) * i) / 5, 3)]);
  for (const [xv, label] of xTicks) ticks.push(`<text x="${X(xv)}" y="${h - B + 16}" text-anchor="middle">${label}</text>`);
  // y ticks: 0 and powers of ten on the log scale, five steps otherwise
  const yTicks: [number, string][] = [];
  if (opts.log) for (let c = 0, p = 0; tr(c) <= yMax + 1e-9; c = 10 ** p++) yTicks.push([tr(c), c.toLocaleString('en')]);
  else for (let i = 0; i <= 5; i++) yTicks.push([(yMax * i) / 5, fmt((yMax * i) / 5, 3)]);
  for (const [yv, label] of yTicks)
    ticks.push(`<line x1="${L - 4}" y1="${Y(yv)}" x2="${w - R}" y2="${Y(yv)}" stroke="#e4e4e4"/><text x="${L - 6}" y="${Y(yv) + 4}" text-anchor="end">${label}</text>`);
  const marks = (opts.marks ?? []).filter((m) => m >= x0 && m <= x1).map((m) => `<line x1="${X(m)}" y1="${T}" x2="${X(m)}" y2="${h - B}" stroke="#c0392b" stroke-dasharray="4 3"/>`);
  return `<svg class="chart" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img">
<g font-size="11" fill="#333">${ticks.join('')}</g>${bars}${marks.join('')}
<line x1="${L}" y1="${h - B}" x2="${w - R}" y2="${h - B}" stroke="#555"/><line x1="${L}" y1="${T}" x2="${L}" y2="${h - B}" stroke="#555"/>
<text x="${(L + w - R) / 2}" y="${h - 6}" text-anchor="middle" font-size="12">${esc(opts.xLabel)}</text>
<text transform="translate(14 ${(T + h - B) / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(opts.yLabel)}</text>
</svg>`;
}

function histogram(values: Float64Array, lo: number, hi: number, bins: number): { edges: number[]; counts: number[] } {
  const counts = new Array<number>(bins).fill(0);
  const edges = Array.from({ length: bins + 1 }, (_, i) => lo + ((hi - lo) * i) / bins);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v < lo || v > hi) continue;
    counts[Math.min(bins - 1, Math.floor(((v - lo) / (hi - lo)) * bins))]!++;
  }
  return { edges, counts };
}

const MIME: Record<string, string> = {
  '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.png': 'image/png', '.gif': 'image/gif', '.webp': 'image/webp',
  '.bmp': 'image/bmp', '.svg': 'image/svg+xml', '.avif': 'image/avif',
};
const IMAGE = /\.(jpe?g|png|gif|webp|bmp|svg|avif)$/i;
/** Largest local picture embedded, and the most embedded in one page (larger ones are shown as text). */
const EMBED_MAX = 1 << 20;
const EMBED_TOTAL = 32 << 20;

/** The pictures of one page: local image files read once each, within the size budget. */
class Pictures {
  private cache = new Map<string, string | undefined>();
  private total = 0;
  constructor(private readonly remote: boolean) {}

  /** A URL the page shows for `id` without a request (data:), a remote URL when asked for, else undefined. */
  url(id: string): string | undefined {
    if (/^https?:/i.test(id)) return this.remote && IMAGE.test(id.split(/[?#]/)[0]!) ? id : undefined;
    if (/^data:image\/(png|jpeg|gif|webp|bmp|avif|svg\+xml)[;,]/i.test(id)) return id;
    if (!IMAGE.test(id)) return undefined;
    if (this.cache.has(id)) return this.cache.get(id);
    const url = this.embed(isAbsolute(id) ? id : resolve(id));
    this.cache.set(id, url);
    return url;
  }

  private embed(file: string): string | undefined {
    if (!existsSync(file) || this.total >= EMBED_TOTAL) return undefined;
    let fd: number;
    try {
      fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch {
      return undefined;
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile() || st.size > EMBED_MAX || this.total + st.size > EMBED_TOTAL) return undefined;
      const buf = Buffer.alloc(st.size);
      let at = 0;
      while (at < buf.length) {
        const n = readSync(fd, buf, at, buf.length - at, at);
        if (n === 0) break;
        at += n;
      }
      this.total += at;
      return `data:${MIME[extname(file).toLowerCase()]};base64,${buf.subarray(0, at).toString('base64')}`;
    } catch {
      return undefined;
    } finally {
      closeSync(fd);
    }
  }

  item(id: string): string {
    const url = this.url(id);
    return url ? `<figure><img src="${esc(url)}" alt="${esc(id)}" loading="lazy"><figcaption>${esc(id)}</figcaption></figure>` : `<code>${esc(id)}</code>`;
  }
}

export async function writeReport(opts: ReportOptions): Promise<ReportResult> {
  const dir = opts.outputDir;
  const stored = readRun(dir, opts.want);
  checkRunIds(dir, opts.ids);
  for (const [key, v] of [['sample', opts.sample], ['topClusters', opts.topClusters]] as const)
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0)) throw new ConfigError(`${key} must be a non-negative integer, got ${v}`, { key });
  const eps = opts.eps ?? stored.recordedEps[0] ?? 0.05;
  validateOneEps(eps);
  let exactAtEps = stored.recordedEps.includes(eps);
  let run = stored;
  if (!exactAtEps && opts.embeddings) {
    run = await recheckEps({ ...opts, eps: [eps], run: stored });
    exactAtEps = true;
  }
  const { keepOrder, offsets, M, Mrow } = run;
  const n = M.length;
  const k = offsets.length - 1;
  const t = thresholdOf(eps);
  const idOf = (row: number) => (opts.ids ? opts.ids.get(row) : String(row));
  const pictures = new Pictures(opts.remoteThumbnails === true);
  const item = (id: string) => pictures.item(id);
  const curve = await keptFractionCurve({ outputDir: dir, run: stored, from: 0.001, to: 0.3, step: 0.001 });
  // The removed members, in keep order (one pass; the counts below follow from it).
  const removedPos: number[] = [];
  for (let p = 0; p < n; p++) if (isRemovedAt(M[p]!, t)) removedPos.push(p);
  const removed = removedPos.length;

  const zeros = M.reduce((a, v) => a + (v === 0 ? 1 : 0), 0);
  const hAll = histogram(M, 0, 1, 100);
  const hTop = histogram(M, 0.9, 1, 100);
  const sizes = Array.from({ length: k }, (_, c) => Number(offsets[c + 1]! - offsets[c]!));
  const maxSize = Math.max(1, ...sizes);
  const sizeBins = Math.max(1, Math.ceil(Math.log2(maxSize + 1)));
  const sizeCounts = new Array<number>(sizeBins + 1).fill(0);
  for (const s of sizes) sizeCounts[s === 0 ? 0 : Math.floor(Math.log2(s)) + 1]!++;
  const sizeEdges = Array.from({ length: sizeBins + 2 }, (_, i) => i);
  // Bin 0 holds empty clusters, bin i >= 1 the sizes [2^(i-1), 2^i): a tick at the middle of every other bin.
  const every = Math.max(1, Math.ceil((sizeBins + 1) / 8));
  const sizeTicks: [number, string][] = [];
  for (let i = 0; i <= sizeBins; i += every) sizeTicks.push([i + 0.5, i === 0 ? '0' : i === 1 ? '1' : `${2 ** (i - 1)}–${2 ** i - 1}`]);

  const cluster = clusterOfPositions(offsets);
  const removedIn = new Array<number>(k).fill(0);
  for (const p of removedPos) removedIn[cluster[p]!]!++;
  const top = sizes
    .map((s, c) => ({ c, s }))
    .sort((a, b) => b.s - a.s || a.c - b.c)
    .slice(0, opts.topClusters ?? 20);

  // An evenly spaced sample of the removed members, in keep order.
  const want = Math.min(removedPos.length, opts.sample ?? 48);
  const sample = Array.from({ length: want }, (_, i) => removedPos[Math.floor((i * removedPos.length) / want)]!);

  let exactNote = '';
  const copies = committedExactCopies(dir);
  if (copies !== undefined) exactNote = `<li>exact (byte-identical) copies: <b>${copies}</b></li>`;

  const title = opts.title ?? `semdedup report: ${dir}`;
  const html = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:${opts.remoteThumbnails ? ' https: http:' : ''}; style-src 'unsafe-inline'; script-src 'unsafe-inline'; form-action 'none'; base-uri 'none'">
<title>${esc(title)}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:16px}
.chart{max-width:100%;height:auto;background:#fafafa;border:1px solid #eee}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f6f8}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:12px;word-break:break-all}figure{margin:0}figure img{max-width:160px;max-height:120px;display:block}
figcaption{font-size:11px;color:#555;word-break:break-all}.muted{color:#666}#readout{font-variant-numeric:tabular-nums;min-height:1.4em}
</style></head>
<body>
<h1>${esc(title)}</h1>
<p class="muted">${n.toLocaleString('en')} rows in ${k.toLocaleString('en')} clusters; eps recorded by the dedup step: ${stored.recordedEps.join(', ') || 'none'}.</p>
<ul>
<li>at eps <b>${eps}</b> (a member is removed when its largest similarity to an earlier member of its cluster exceeds ${fmt(t, 6)}): kept <b>${(n - removed).toLocaleString('en')}</b> (${((100 * (n - removed)) / Math.max(1, n)).toFixed(2)}%), removed <b>${removed.toLocaleString('en')}</b>${exactAtEps ? '' : ' <span class="muted">(from the stored M, not re-checked in float64 at this eps)</span>'}</li>
<li>members with M = 0 (first of their cluster, or no earlier member with a positive similarity): ${zeros.toLocaleString('en')}</li>
${exactNote}
</ul>

<h2>Kept fraction against eps</h2>
<div>${lineChart({ x: curve.points.map((p) => p.eps), y: curve.points.map((p) => p.keptFraction) }, { w: 1000, h: 300, xLabel: 'eps', yLabel: 'kept fraction', xMin: 0, yMax: 1, marks: [eps], id: 'curve' })}</div>
<div id="readout" class="muted">Move the pointer over the curve to read eps and the kept fraction.</div>

<h2>Histogram of M (largest similarity to an earlier member)</h2>
<div class="grid">
<div>${barChart(hAll.edges, hAll.counts, { w: 520, h: 260, xLabel: 'M, 0 to 1', yLabel: 'members (log scale)', log: true, marks: [t] })}</div>
<div>${barChart(hTop.edges, hTop.counts, { w: 520, h: 260, xLabel: 'M, 0.9 to 1', yLabel: 'members (log scale)', log: true, marks: [t] })}</div>
</div>

<h2>Cluster sizes</h2>
<div class="grid">
<div>${barChart(sizeEdges, sizeCounts, { w: 520, h: 260, xLabel: 'members per cluster (bins of powers of two)', yLabel: 'clusters', xTicks: sizeTicks })}</div>
<div><table><thead><tr><th>largest clusters</th><th class="num">members</th><th class="num">removed at eps ${eps}</th><th class="num">kept</th></tr></thead><tbody>
${top.map(({ c, s }) => `<tr><td>cluster ${c}</td><td class="num">${s}</td><td class="num">${removedIn[c]}</td><td class="num">${s - removedIn[c]!}</td></tr>`).join('\n')}
</tbody></table></div>
</div>

<h2>Removed items and what removed them (eps ${eps}; ${want} of ${removedPos.length.toLocaleString('en')})</h2>
<table id="removed"><thead><tr><th>removed</th><th>removed by (the earlier member reaching M)</th><th class="num">similarity</th><th class="num">cluster</th></tr></thead><tbody>
${sample
  .map((p) => {
    const by = Number(Mrow[p]!);
    return `<tr><td>${item(idOf(Number(keepOrder[p]!)))}</td><td>${by >= 0 ? item(idOf(by)) : '<span class="muted">none</span>'}</td><td class="num">${M[p]!.toFixed(6)}</td><td class="num">${cluster[p]}</td></tr>`;
  })
  .join('\n')}
</tbody></table>
<p class="muted">Written by semdedup from ${esc(dir)}.</p>
<script>
(function () {
  var svg = document.getElementById('curve');
  var out = document.getElementById('readout');
  var pts = ${JSON.stringify(curve.points.map((p) => [p.eps, Number(p.keptFraction.toFixed(6))]))};
  if (!svg || !out) return;
  svg.addEventListener('mousemove', function (ev) {
    var r = svg.getBoundingClientRect();
    var w = Number(svg.getAttribute('width')), L = Number(svg.dataset.l), R = Number(svg.dataset.r);
    var x0 = Number(svg.dataset.x0), x1 = Number(svg.dataset.x1);
    var u = ((ev.clientX - r.left) * (w / r.width) - L) / (w - L - R);
    var e = x0 + Math.min(1, Math.max(0, u)) * (x1 - x0);
    var best = pts[0];
    for (var i = 1; i < pts.length; i++) if (Math.abs(pts[i][0] - e) < Math.abs(best[0] - e)) best = pts[i];
    out.textContent = 'eps ' + best[0] + ': kept fraction ' + best[1];
  });
  document.body.setAttribute('data-rendered', 'yes');
})();
</script>
</body></html>
`;
  const output = opts.output ?? resolve(outputs.report(dir));
  writeOutputFile(output, html);
  opts.log?.(`report: ${output}`);
  return { output, eps, bytes: Buffer.byteLength(html) };
}
