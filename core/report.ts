/**
 * A run's report: every iteration summary of one run drawn as one self-contained HTML page
 * (inline CSS, SVG charts drawn here, no scripts, nothing fetched) and the same figures as
 * Markdown tables. Pure: the CLI (`srlm report`) reads the summaries and writes the files.
 *
 * Every chart is an `<svg data-chart="NAME">` with a title, axis labels and a legend; each
 * plotted value is one element carrying `data-series` and `data-value` (bars are <rect>,
 * line points are <circle>), so a test can count what was drawn. A missing value (null) is
 * drawn as nothing, with an "n/a" mark where a bar would stand.
 *
 * Over 500 lines on purpose: one page's renderer (its CSS, its SVG chart helpers and the
 * Markdown twin of each table) is read and changed together.
 */
import type { IterationSummary } from './stats';

/** A model of the run's lineage, as the store's model manifests describe it. */
export interface ReportModel {
  modelId: string;
  lineage: string;
  parent: string | null;
  method: string;
  createdAt: string;
  metrics: Record<string, number>;
  promoted: boolean;
}

/** The lineage's promoted.json. */
export interface ReportPromotion {
  lineage: string;
  modelId: string;
  previous: string | null;
  run?: string;
  promotedAt?: string;
  /** why, where the promotion says (e.g. a rollback after a failed gate) */
  reason?: string;
}

export interface RunReport {
  run: string;
  /** ISO time the report was made */
  generatedAt: string;
  /** where the summaries were read, e.g. file:///var/srlm/artifacts */
  store?: string;
  /** sorted by iteration (renderers sort again) */
  summaries: IterationSummary[];
  /** the run's models with their lineage data, where the store has manifests for them */
  models?: ReportModel[];
  /** the promoted model of the run's lineage(s) */
  promoted?: ReportPromotion[];
}

// ---------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------

/** Text for HTML element content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}
const esc = escapeHtml;

function sorted(report: RunReport): IterationSummary[] {
  return [...report.summaries].sort((a, b) => a.iteration - b.iteration);
}

/** A number for people: integers as they are, others with 2 decimals (4 when small); null as "–". */
function num(value: number | null | undefined, digits = 2): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  if (Number.isInteger(value)) return String(value);
  return value.toFixed(value !== 0 && Math.abs(value) < 0.01 ? 4 : digits);
}

function pct(value: number | null | undefined): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '–' : `${(value * 100).toFixed(1)}%`;
}

/** Bins of a judge histogram in score order. */
function bins(hist: Record<string, number>): string[] {
  return Object.keys(hist).sort((a, b) => Number(a) - Number(b));
}

function union(lists: Iterable<Iterable<string>>): string[] {
  const seen = new Set<string>();
  for (const l of lists) for (const k of l) seen.add(k);
  return [...seen];
}

/** Head-to-head rows with a label unique within the report. */
function headToHeadRows(
  summaries: readonly IterationSummary[],
): { iteration: number; label: string; h: Evaluation['headToHead'][number] }[] {
  const rows = summaries.flatMap((s) => (s.evaluation?.headToHead ?? []).map((h) => ({ iteration: s.iteration, h })));
  const key = (r: (typeof rows)[number]): string => `${r.iteration}\u0000${r.h.model}\u0000${r.h.opponent}`;
  const count = new Map<string, number>();
  for (const r of rows) count.set(key(r), (count.get(key(r)) ?? 0) + 1);
  return rows.map((r) => ({ ...r, label: `it ${r.iteration}: vs ${r.h.opponent}${count.get(key(r))! > 1 ? ` (${r.h.judge})` : ''}` }));
}

type Evaluation = NonNullable<IterationSummary['evaluation']>;
type JudgeQualityEntry = Evaluation['judgeQuality'][number];

/** Per-model entries of the evaluations; a model evaluated in several iterations keeps its latest. */
function latestByModel<T extends { model: string }>(
  summaries: readonly IterationSummary[],
  pick: (e: Evaluation) => readonly T[],
): { iteration: number; item: T }[] {
  const byModel = new Map<string, { iteration: number; item: T }>();
  for (const s of summaries)
    for (const item of s.evaluation ? pick(s.evaluation) : []) {
      byModel.delete(item.model);
      byModel.set(item.model, { iteration: s.iteration, item });
    }
  return [...byModel.values()];
}

const QUALITY_METRICS = [
  ['pairwiseAccuracy', 'pairwise accuracy'],
  ['exactMatch', 'exact match'],
  ['spearman', 'Spearman ρ'],
  ['kendallTau', 'Kendall τ'],
] as const;

const WATCH_METRICS = [
  ['lengthScoreCorrelation', 'length–score correlation', num],
  ['chosenRejectedCharGap', 'chosen − rejected chars', num],
  ['topScoreShare', 'top-score (5) share', pct],
  ['scoreVariance', 'score variance', num],
  ['parseFailureRate', 'parse failures', pct],
] as const;

// ---------------------------------------------------------------------------------------
// SVG charts
// ---------------------------------------------------------------------------------------

const PALETTE = ['#3b6fb6', '#e08a2c', '#4a9d5b', '#c2474a', '#8367b5', '#8c6450', '#d07bb7', '#6f7f8f', '#b8a431', '#36a4b5'];
const OUTCOME_COLORS = { wins: '#3f9a55', ties: '#a7adb5', losses: '#c8463f' } as const;

interface Series {
  key: string;
  label: string;
  color: string;
}

function seriesOf(labels: readonly string[]): Series[] {
  return labels.map((l, k) => ({ key: l, label: l, color: PALETTE[k % PALETTE.length]! }));
}

interface Frame {
  name: string;
  title: string;
  xLabel: string;
  yLabel: string;
  categories: string[];
  series: Series[];
  yMin: number;
  yMax: number;
  /** distance between ticks */
  step: number;
  /** tick labels */
  yFormat: (v: number) => string;
}

const W = 920;
const PAD = { left: 64, right: 20, top: 42 };
const PLOT_H = 220;
const CHAR_W = 6.6; // approximate width of a 11px sans-serif character

/**
 * An axis from 0 to at least `max` in at most 5 steps of 1, 2, 2.5 or 5 times a power of ten
 * (whole steps for counts).
 */
export function scale(max: number, whole = false): { yMax: number; step: number } {
  const top = max > 0 && Number.isFinite(max) ? max : 1;
  const p = 10 ** Math.floor(Math.log10(top / 5));
  for (const m of [1, 2, 2.5, 5, 10, 20]) {
    const step = m * p;
    if (whole && (step < 1 || !Number.isInteger(step))) continue;
    if (Math.ceil(top / step - 1e-9) <= 5) return { yMax: Math.ceil(top / step - 1e-9) * step, step };
  }
  return { yMax: top, step: top / 4 };
}

function ticks(min: number, max: number, step: number): number[] {
  const out: number[] = [];
  for (let k = 0; min + k * step <= max + step * 1e-6; k++) out.push(min + k * step);
  return out;
}

function truncate(text: string, chars: number): string {
  return text.length <= chars ? text : `${text.slice(0, Math.max(1, chars - 1))}…`;
}

/** Legend rows under the plot: [svg, height]. */
function legend(series: readonly Series[], top: number): [string, number] {
  const items: string[] = [];
  let x = PAD.left;
  let y = top;
  for (const s of series) {
    const label = truncate(s.label, 60);
    const width = 18 + label.length * CHAR_W + 18;
    if (x + width > W - PAD.right && x > PAD.left) {
      x = PAD.left;
      y += 18;
    }
    items.push(
      `<g class="legend-item" data-legend="${esc(s.key)}"><rect x="${x}" y="${y - 9}" width="12" height="12" rx="2" fill="${s.color}"></rect>` +
        `<text x="${x + 17}" y="${y + 1}" class="legend">${esc(label)}<title>${esc(s.label)}</title></text></g>`,
    );
    x += width;
  }
  return [items.join(''), y - top + 18];
}

/** Axes, grid, category labels, titles and legend around a plot body drawn by `body`. */
function frame(f: Frame, body: (g: { x0: number; band: number; y: (v: number) => number }) => string): string {
  const plotW = W - PAD.left - PAD.right;
  const band = plotW / Math.max(1, f.categories.length);
  const top = PAD.top;
  const bottom = top + PLOT_H;
  const y = (v: number): number => bottom - ((Math.min(f.yMax, Math.max(f.yMin, v)) - f.yMin) / (f.yMax - f.yMin)) * PLOT_H;
  const maxChars = Math.max(4, Math.floor(band / CHAR_W) - 1);
  const parts: string[] = [];
  parts.push(`<text x="${W / 2}" y="20" class="chart-title" text-anchor="middle">${esc(f.title)}</text>`);
  for (const t of ticks(f.yMin, f.yMax, f.step)) {
    parts.push(`<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" class="grid"></line>`);
    parts.push(`<text x="${PAD.left - 6}" y="${(y(t) + 4).toFixed(1)}" class="tick" text-anchor="end">${esc(f.yFormat(t))}</text>`);
  }
  if (f.yMin < 0 && f.yMax > 0)
    parts.push(`<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(0).toFixed(1)}" y2="${y(0).toFixed(1)}" class="zero"></line>`);
  parts.push(`<line x1="${PAD.left}" x2="${PAD.left}" y1="${top}" y2="${bottom}" class="axis"></line>`);
  parts.push(`<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${bottom}" y2="${bottom}" class="axis"></line>`);
  f.categories.forEach((c, k) => {
    const cx = PAD.left + band * (k + 0.5);
    parts.push(
      `<text x="${cx.toFixed(1)}" y="${bottom + 16}" class="tick" text-anchor="middle">${esc(truncate(c, maxChars))}<title>${esc(c)}</title></text>`,
    );
  });
  parts.push(`<text x="${PAD.left + plotW / 2}" y="${bottom + 36}" class="axis-label" text-anchor="middle">${esc(f.xLabel)}</text>`);
  parts.push(
    `<text transform="translate(16 ${top + PLOT_H / 2}) rotate(-90)" class="axis-label" text-anchor="middle">${esc(f.yLabel)}</text>`,
  );
  parts.push(body({ x0: PAD.left, band, y }));
  const [legendSvg, legendH] = legend(f.series, bottom + 60);
  parts.push(legendSvg);
  const height = bottom + 60 + legendH;
  return (
    `<svg data-chart="${esc(f.name)}" class="chart" viewBox="0 0 ${W} ${height}" width="${W}" height="${height}" role="img" aria-label="${esc(f.title)}">` +
    `<title>${esc(f.title)}</title>${parts.join('')}</svg>`
  );
}

interface BarValue {
  /** the figure shown and put in data-value */
  value: number | null;
  /** the height drawn, in axis units (defaults to value) */
  plot?: number | null;
  tip: string;
}

/** Bars side by side per category, one per series that has a datum there. */
function groupedBars(f: Frame, datum: (category: number, series: number) => BarValue | undefined): string {
  return frame(f, ({ x0, band, y }) => {
    const out: string[] = [];
    const inner = band * 0.8;
    const bw = inner / Math.max(1, f.series.length);
    f.categories.forEach((_, c) => {
      f.series.forEach((s, k) => {
        const d = datum(c, k);
        if (!d) return;
        const x = x0 + band * c + (band - inner) / 2 + bw * k;
        const v = d.plot === undefined ? d.value : d.plot;
        if (v === null || d.value === null) {
          out.push(
            `<text x="${(x + bw / 2).toFixed(1)}" y="${(y(Math.max(0, f.yMin)) - 4).toFixed(1)}" class="na" text-anchor="middle">n/a<title>${esc(d.tip)}</title></text>`,
          );
          return;
        }
        const base = y(Math.max(0, f.yMin));
        const top = y(v);
        out.push(
          `<rect class="bar" data-series="${esc(s.key)}" data-value="${d.value}" x="${(x + 1).toFixed(1)}" y="${Math.min(base, top).toFixed(1)}" width="${Math.max(1, bw - 2).toFixed(1)}" height="${Math.abs(base - top).toFixed(1)}" fill="${s.color}"><title>${esc(d.tip)}</title></rect>`,
        );
      });
    });
    return out.join('');
  });
}

/** One stacked bar per category; segments in series order; an optional label over each bar. */
function stackedBars(
  f: Frame,
  segments: (category: number) => { series: number; value: number; plot: number; tip: string }[],
  label?: (category: number) => string,
): string {
  return frame(f, ({ x0, band, y }) => {
    const out: string[] = [];
    const bw = Math.min(80, band * 0.6);
    f.categories.forEach((_, c) => {
      const x = x0 + band * c + (band - bw) / 2;
      let acc = 0;
      for (const seg of segments(c)) {
        const s = f.series[seg.series]!;
        const y1 = y(acc);
        const y2 = y(acc + seg.plot);
        acc += seg.plot;
        out.push(
          `<rect class="bar" data-series="${esc(s.key)}" data-value="${seg.value}" x="${x.toFixed(1)}" y="${y2.toFixed(1)}" width="${bw.toFixed(1)}" height="${Math.max(0, y1 - y2).toFixed(1)}" fill="${s.color}"><title>${esc(seg.tip)}</title></rect>`,
        );
      }
      if (label)
        out.push(
          `<text x="${(x + bw / 2).toFixed(1)}" y="${(y(acc) - 5).toFixed(1)}" class="bar-label" text-anchor="middle">${esc(label(c))}</text>`,
        );
    });
    return out.join('');
  });
}

/** A line per series through its non-null values; a gap where a value is null or absent. */
function lineChart(f: Frame, datum: (category: number, series: number) => { value: number | null; tip: string } | undefined): string {
  return frame(f, ({ x0, band, y }) => {
    const out: string[] = [];
    f.series.forEach((s, k) => {
      const points: string[] = [];
      let path: string[] = [];
      const paths: string[][] = [];
      f.categories.forEach((_, c) => {
        const d = datum(c, k);
        if (!d || d.value === null || !Number.isFinite(d.value)) {
          if (path.length) paths.push(path);
          path = [];
          return;
        }
        const cx = x0 + band * (c + 0.5);
        const cy = y(d.value);
        path.push(`${cx.toFixed(1)},${cy.toFixed(1)}`);
        points.push(
          `<circle class="point" data-series="${esc(s.key)}" data-value="${d.value}" cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" r="4" fill="${s.color}"><title>${esc(d.tip)}</title></circle>`,
        );
      });
      if (path.length) paths.push(path);
      for (const p of paths)
        if (p.length > 1) out.push(`<polyline points="${p.join(' ')}" fill="none" stroke="${s.color}" stroke-width="2"></polyline>`);
      out.push(...points);
    });
    return out.join('');
  });
}

function note(text: string, kind = 'empty'): string {
  return `<p class="note" data-note="${kind}">${esc(text)}</p>`;
}

const NO_EVALUATION = 'No evaluation configured: no iteration of this run has an evaluation summary.';

// ---------------------------------------------------------------------------------------
// The panels
// ---------------------------------------------------------------------------------------

function histogramChart(ss: readonly IterationSummary[]): string {
  const withData = ss.filter((s) => Object.keys(s.judge.histogram).length > 0);
  if (withData.length === 0) return note('No judge scores recorded.');
  const binList = union(withData.map((s) => bins(s.judge.histogram))).sort((a, b) => Number(a) - Number(b));
  const shares = withData.map((s) => {
    const total = Object.values(s.judge.histogram).reduce((a, b) => a + b, 0);
    return (bin: string): number => (total === 0 ? 0 : (s.judge.histogram[bin] ?? 0) / total);
  });
  const axis = scale(Math.max(0.01, ...withData.flatMap((s, k) => binList.map((b) => shares[k]!(b)))));
  return groupedBars(
    {
      name: 'judge-histogram',
      title: 'Judge scores per iteration',
      xLabel: 'score (bin of 1 point)',
      yLabel: 'share of parsed judgments',
      categories: binList,
      series: seriesOf(withData.map((s) => `iteration ${s.iteration}`)),
      yMin: 0,
      ...axis,
      yFormat: (v) => `${+(v * 100).toFixed(1)}%`,
    },
    (c, k) => {
      const s = withData[k]!;
      const bin = binList[c]!;
      if (!(bin in s.judge.histogram)) return undefined;
      const count = s.judge.histogram[bin]!;
      return {
        value: count,
        plot: shares[k]!(bin),
        tip: `iteration ${s.iteration}, score ${bin}: ${count} judgments (${pct(shares[k]!(bin))})`,
      };
    },
  );
}

function headToHeadChart(ss: readonly IterationSummary[]): string {
  if (ss.every((s) => s.evaluation === null)) return note(NO_EVALUATION, 'no-evaluation');
  const rows = headToHeadRows(ss);
  if (rows.length === 0) return note('No head-to-head comparisons in the evaluations.');
  const outcomes = ['wins', 'ties', 'losses'] as const;
  return stackedBars(
    {
      name: 'head-to-head',
      title: 'Head-to-head on held-out prompts (label: win rate)',
      xLabel: 'iteration and opponent',
      yLabel: 'share of prompts',
      categories: rows.map((r) => r.label),
      series: outcomes.map((o) => ({ key: o, label: o, color: OUTCOME_COLORS[o] })),
      yMin: 0,
      yMax: 1,
      step: 0.25,
      yFormat: (v) => `${+(v * 100).toFixed(1)}%`,
    },
    (c) => {
      const { h } = rows[c]!;
      return outcomes.map((o, k) => ({
        series: k,
        value: h[o],
        plot: h.prompts === 0 ? 0 : h[o] / h.prompts,
        tip: `${h.model} vs ${h.opponent} (judge ${h.judge}): ${h[o]} ${o} of ${h.prompts} prompts`,
      }));
    },
    (c) => (rows[c]!.h.winRate === null ? 'n/a' : pct(rows[c]!.h.winRate)),
  );
}

/** One category per evaluated model, one series per metric of the model's entry. */
function perModelChart<T extends { model: string }>(
  ss: readonly IterationSummary[],
  spec: {
    draw: 'lines' | 'bars';
    name: string;
    title: string;
    yLabel: string;
    empty: string;
    pick: (e: Evaluation) => readonly T[];
    metrics: readonly (readonly [string, string, (item: T) => number | null])[];
    axis: (values: number[]) => Pick<Frame, 'yMin' | 'yMax' | 'step' | 'yFormat'>;
    tip: (item: T, label: string, value: number | null) => string;
  },
): string {
  if (ss.every((s) => s.evaluation === null)) return note(NO_EVALUATION, 'no-evaluation');
  const rows = latestByModel(ss, spec.pick);
  if (rows.length === 0) return note(spec.empty);
  const values = rows.flatMap(({ item }) => spec.metrics.map(([, , get]) => get(item))).filter((v): v is number => v !== null);
  const frame: Frame = {
    name: spec.name,
    title: spec.title,
    xLabel: 'model (iteration evaluated)',
    yLabel: spec.yLabel,
    categories: rows.map(({ iteration, item }) => `${item.model} (it ${iteration})`),
    series: spec.metrics.map(([key, label], k) => ({ key, label, color: PALETTE[k]! })),
    ...spec.axis(values),
  };
  const datum = (c: number, k: number): BarValue => {
    const { item } = rows[c]!;
    const [, label, get] = spec.metrics[k]!;
    return { value: get(item), tip: spec.tip(item, label, get(item)) };
  };
  return spec.draw === 'lines' ? lineChart(frame, datum) : groupedBars(frame, datum);
}

function judgeQualityChart(ss: readonly IterationSummary[]): string {
  return perModelChart(ss, {
    draw: 'lines',
    name: 'judge-quality',
    title: 'Judge quality on human-ranked replies, per model',
    yLabel: 'agreement with humans',
    empty: 'No judge-quality measurements in the evaluations.',
    pick: (e) => e.judgeQuality,
    metrics: QUALITY_METRICS.map(([key, label]) => [key, label, (q: JudgeQualityEntry) => q[key]] as const),
    axis: (values) => ({
      ...(values.some((v) => v < 0) ? { yMin: -1, step: 0.5 } : { yMin: 0, step: 0.2 }),
      yMax: 1,
      yFormat: (v) => v.toFixed(1),
    }),
    tip: (q, label, v) => `${q.model}: ${label} ${num(v, 3)} (${q.sets} sets, ${q.pairs} pairs)`,
  });
}

function lengthTrendChart(ss: readonly IterationSummary[]): string {
  const series: { key: string; label: string; get: (s: IterationSummary) => number | null }[] = [
    { key: 'candidates', label: 'candidates (mean)', get: (s) => s.candidates.meanChars },
    { key: 'chosen', label: 'chosen responses (mean)', get: (s) => s.pairs.meanChosenChars },
    { key: 'rejected', label: 'rejected responses (mean)', get: (s) => s.pairs.meanRejectedChars },
  ];
  if (ss.some((s) => s.evaluation !== null)) {
    series.push({
      key: 'held-out',
      label: 'held-out responses of the evaluated model (mean)',
      get: (s) => s.evaluation?.responses.find((r) => r.model === s.evaluation!.model)?.meanChars ?? null,
    });
  }
  const values = ss.flatMap((s) => series.map((x) => x.get(s))).filter((v): v is number => v !== null);
  if (values.length === 0) return note('No response lengths recorded.');
  return lineChart(
    {
      name: 'lengths',
      title: 'Response length per iteration',
      xLabel: 'iteration',
      yLabel: 'characters',
      categories: ss.map((s) => String(s.iteration)),
      series: series.map((x, k) => ({ key: x.key, label: x.label, color: PALETTE[k]! })),
      yMin: 0,
      ...scale(Math.max(...values)),
      yFormat: (v) => num(v, 0),
    },
    (c, k) => {
      const s = ss[c]!;
      const v = series[k]!.get(s);
      return { value: v, tip: `iteration ${s.iteration}, ${series[k]!.label}: ${num(v, 1)} characters` };
    },
  );
}

function heldOutLengthChart(ss: readonly IterationSummary[]): string {
  return perModelChart(ss, {
    draw: 'bars',
    name: 'held-out-lengths',
    title: 'Held-out response length per model',
    yLabel: 'characters',
    empty: 'No held-out responses in the evaluations.',
    pick: (e) => e.responses,
    metrics: [
      ['meanChars', 'mean characters', (r) => r.meanChars],
      ['medianChars', 'median characters', (r) => r.medianChars],
    ],
    axis: (values) => ({ yMin: 0, ...scale(Math.max(1, ...values)), yFormat: (v) => num(v, 0) }),
    tip: (r, label, v) => `${r.model}: ${label} ${num(v, 1)} over ${r.count} responses`,
  });
}

function dropsChart(ss: readonly IterationSummary[], which: 'prompts' | 'pairs'): string {
  const records = ss.map((s) => s[which].dropped);
  const reasons = union(records.map((r) => Object.keys(r))).sort();
  const what = which === 'prompts' ? 'Prompts' : 'Preference pairs';
  if (reasons.length === 0) return note(`${what}: nothing dropped in any iteration.`);
  const totals = records.map((r) => Object.values(r).reduce((a, b) => a + b, 0));
  const series = seriesOf(reasons);
  return stackedBars(
    {
      name: `${which}-dropped`,
      title: `${what} dropped, by reason`,
      xLabel: 'iteration',
      yLabel: which === 'prompts' ? 'prompts' : 'prompts without a pair',
      categories: ss.map((s) => String(s.iteration)),
      series,
      yMin: 0,
      ...scale(Math.max(1, ...totals), true),
      yFormat: (v) => String(v),
    },
    (c) =>
      reasons.flatMap((reason, k) => {
        const v = records[c]![reason];
        return v === undefined ? [] : [{ series: k, value: v, plot: v, tip: `iteration ${ss[c]!.iteration}: ${v} dropped (${reason})` }];
      }),
    (c) => String(totals[c]),
  );
}

function overviewTable(ss: readonly IterationSummary[]): string {
  const head = [
    'iteration',
    'model in → out',
    'prompts kept',
    'candidates',
    'judge parse rate',
    'mean score',
    'pairs',
    'DPO loss',
    'reward accuracy',
    'gate',
  ];
  const rows = ss.map((s) => {
    const gate =
      s.evaluation === null
        ? '<span class="muted">no evaluation</span>'
        : s.evaluation.gate === null
          ? '<span class="muted">no gate</span>'
          : gateBadge(s.evaluation.gate.passed);
    return (
      `<tr data-iteration="${s.iteration}"><td>${s.iteration}</td><td><code>${esc(s.modelIn)}</code> → ${s.modelOut === null ? '<span class="muted">not trained</span>' : `<code>${esc(s.modelOut)}</code>`}</td>` +
      `<td class="n">${s.prompts.kept} / ${s.prompts.generated}</td><td class="n">${s.candidates.count}</td><td class="n">${pct(s.judge.parseRate)}</td><td class="n">${num(s.judge.meanScore)}</td><td class="n">${s.pairs.kept}</td>` +
      `<td class="n">${num(s.dpo?.loss ?? null, 4)}</td><td class="n">${pct(s.dpo?.rewardAccuracy ?? null)}</td><td>${gate}</td></tr>`
    );
  });
  return `<table class="data" data-table="overview"><thead><tr>${head.map((h, k) => `<th${k >= 2 && k < head.length - 1 ? ' class="n"' : ''}>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function gateBadge(passed: boolean): string {
  return passed ? '<span class="badge pass">passed</span>' : '<span class="badge held">held back</span>';
}

/** What a gate's `onFail` did with a model that failed its checks, in words. */
export function onFailMeaning(onFail: string): string {
  switch (onFail) {
    case 'stop':
      return 'the run stopped after this iteration and promoted its newest accepted model instead';
    case 'rollback':
      return 'the next iteration trained from the last accepted model instead';
    case 'continue':
      return 'the run went on from the new model anyway, but did not promote it';
    default:
      return `on failure the run does "${onFail}"`;
  }
}

/** The headline of a gate that held a model back: what happened, what it means, what it is not. */
export const GATE_HELD_EXPLANATION =
  'This is the safeguard working, not an error. The promotion gate compares each new model with the one it came from and keeps the better one. ' +
  'At demo scale (a 135M model, one iteration on a handful of pairs) the new model often loses judge accuracy; the paper’s gains came at 70B.';

function watchTable(ss: readonly IterationSummary[]): string {
  if (ss.every((s) => s.evaluation === null)) return note(NO_EVALUATION, 'no-evaluation');
  const head = ['iteration', ...WATCH_METRICS.map(([, label]) => label)];
  const rows = ss.map((s) => {
    if (s.evaluation === null)
      return `<tr data-iteration="${s.iteration}"><td>${s.iteration}</td><td colspan="${WATCH_METRICS.length}" class="muted">no evaluation configured</td></tr>`;
    const w = s.evaluation.watch;
    return `<tr data-iteration="${s.iteration}"><td>${s.iteration}</td>${WATCH_METRICS.map(([key, , fmt]) => `<td class="n" data-metric="${key}">${esc(fmt(w[key]))}</td>`).join('')}</tr>`;
  });
  return `<table class="data" data-table="watch"><thead><tr>${head.map((h, k) => `<th${k > 0 ? ' class="n"' : ''}>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function gatePanels(ss: readonly IterationSummary[]): string {
  return ss
    .map((s) => {
      const title = `<h3>Iteration ${s.iteration}: <code>${esc(s.evaluation?.model ?? s.modelOut ?? s.modelIn)}</code></h3>`;
      if (s.evaluation === null)
        return `<div class="gate none" data-gate="none" data-iteration="${s.iteration}">${title}${note('No evaluation configured for this iteration.', 'no-evaluation')}</div>`;
      const g = s.evaluation.gate;
      if (g === null)
        return `<div class="gate none" data-gate="none" data-iteration="${s.iteration}">${title}${note('No gate configured: the model is promoted without checks.', 'no-gate')}</div>`;
      const checks = g.checks
        .map(
          (c) =>
            `<tr class="${c.passed ? 'check-pass' : 'check-fail'}" data-check="${c.passed ? 'passed' : 'failed'}"><td>${c.passed ? '✓ pass' : '✗ not met'}</td><td><code>${esc(c.name)}</code></td>` +
            `<td class="n">${esc(num(c.value, 3))}</td><td class="n">${esc(num(c.threshold, 3))}</td><td>${esc(c.message)}</td></tr>`,
        )
        .join('');
      const table =
        g.checks.length === 0
          ? note('The gate has no checks.')
          : `<table class="data"><thead><tr><th>result</th><th>check</th><th class="n">value</th><th class="n">threshold</th><th>message</th></tr></thead><tbody>${checks}</tbody></table>`;
      const verdict = g.passed ? `Gate passed.` : `Gate held this model back: ${esc(onFailMeaning(g.onFail))}.`;
      return `<div class="gate ${g.passed ? 'passed' : 'failed'}" data-gate="${g.passed ? 'passed' : 'failed'}" data-iteration="${s.iteration}">${title}<p class="verdict">${gateBadge(g.passed)} ${verdict}</p>${table}</div>`;
    })
    .join('');
}

function modelsSection(report: RunReport): string {
  const parts: string[] = [];
  for (const p of report.promoted ?? []) {
    parts.push(
      `<p data-promoted="${esc(p.modelId)}">Promoted model of lineage <code>${esc(p.lineage)}</code>: <code>${esc(p.modelId)}</code>${p.run ? ` (by run <code>${esc(p.run)}</code>${p.promotedAt ? ` at ${esc(p.promotedAt)}` : ''})` : ''}` +
        `${p.previous ? `, replacing <code>${esc(p.previous)}</code>` : ', the first promoted in this lineage'}.${p.reason ? ` Reason: ${esc(p.reason)}` : ''}</p>`,
    );
  }
  const models = report.models ?? [];
  if (models.length > 0) {
    const rows = models.map(
      (m) =>
        `<tr><td><code>${esc(m.modelId)}</code>${m.promoted ? ' <span class="badge pass">promoted</span>' : ''}</td><td>${m.parent ? `<code>${esc(m.parent)}</code>` : '–'}</td><td>${esc(m.method)}</td><td>${esc(m.lineage)}</td><td>${esc(m.createdAt)}</td>` +
        `<td>${esc(
          Object.entries(m.metrics)
            .map(([k, v]) => `${k} ${num(v, 3)}`)
            .join(', ') || '–',
        )}</td></tr>`,
    );
    parts.push(
      `<table class="data" data-table="models"><thead><tr><th>model</th><th>parent</th><th>method</th><th>lineage</th><th>created</th><th>metrics</th></tr></thead><tbody>${rows.join('')}</tbody></table>`,
    );
  }
  return parts.length === 0 ? '' : `<section class="panel" id="models"><h2>Models</h2>${parts.join('')}</section>`;
}

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;background:#f4f5f7;margin:0;padding:24px}
main{max-width:1040px;margin:0 auto}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:0 0 12px}h3{font-size:15px;margin:0 0 8px}
.meta{color:#5b6472;margin:0 0 16px}
.panel{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:16px 20px;margin:0 0 18px;overflow-x:auto}
svg.chart{display:block;width:100%;max-width:920px;height:auto;margin:8px 0 16px}
svg .chart-title{font-size:14px;font-weight:600;fill:#1d2430}
svg .tick,svg .legend{font-size:11px;fill:#4b5563}
svg .axis-label{font-size:12px;fill:#1d2430}
svg .grid{stroke:#e5e7eb}svg .axis{stroke:#6b7280}svg .zero{stroke:#6b7280;stroke-dasharray:4 3}
svg .na{font-size:10px;fill:#9ca3af}svg .bar-label{font-size:11px;font-weight:600;fill:#1d2430}
table.data{border-collapse:collapse;margin:8px 0 12px;font-size:13px}
table.data th,table.data td{border:1px solid #dde1e6;padding:4px 8px;text-align:left;vertical-align:top}
table.data th{background:#f0f2f5}table.data .n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#8a93a0}.note{color:#5b6472;font-style:italic;margin:8px 0}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f0f2f5;padding:1px 4px;border-radius:3px;word-break:break-all}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:700}
.badge.pass{background:#dcf2e2;color:#1f6b35}.badge.held{background:#f3a712;color:#3d2600}
.gate{border:1px solid #dde1e6;border-left:6px solid #a7adb5;border-radius:6px;padding:10px 14px;margin:0 0 12px}
.gate.passed{border-left-color:#3f9a55}
.gate.failed{border:2px solid #e0a100;border-left:10px solid #e0a100;background:#fff6e0}
.gate.failed .verdict{color:#6b4400;font-weight:700;font-size:15px}
tr.check-fail td{background:#ffe9b8;color:#5c3a00;font-weight:600}
tr.check-pass td:first-child{color:#1f6b35}
.alert{background:#fff3d6;color:#4a2f00;border:2px solid #e0a100;border-left:10px solid #e0a100;border-radius:8px;padding:12px 18px;margin:0 0 18px}
.alert strong{font-size:15px}.alert p{margin:6px 0 0;font-weight:400}
.alert code{background:rgba(224,161,0,.15);color:#4a2f00}
`;

/** The report as one self-contained HTML page. */
export function renderReportHtml(report: RunReport): string {
  const ss = sorted(report);
  const failed = ss.filter((s) => s.evaluation?.gate && !s.evaluation.gate.passed);
  const alert =
    failed.length === 0
      ? ''
      : `<div class="alert" data-alert="gate-failed"><strong>Promotion gate held back the model of iteration${failed.length > 1 ? 's' : ''} ${failed.map((s) => s.iteration).join(', ')}</strong>: ` +
        failed
          .map(
            (s) =>
              `${s
                .evaluation!.gate!.checks.filter((c) => !c.passed)
                .map((c) => esc(c.message || c.name))
                .join('; ')}; ${esc(onFailMeaning(s.evaluation!.gate!.onFail))}`,
          )
          .join(' · ') +
        '.' +
        ((report.promoted ?? []).length > 0
          ? ` Promoted: ${(report.promoted ?? []).map((p) => `<code>${esc(p.modelId)}</code>`).join(', ')}.`
          : '') +
        `<p>${esc(GATE_HELD_EXPLANATION)} See <a href="#gates">Evaluation gate</a>.</p></div>`;
  const panel = (id: string, title: string, body: string, caption = ''): string =>
    `<section class="panel" id="${id}"><h2>${esc(title)}</h2>${caption ? `<p class="meta">${esc(caption)}</p>` : ''}${body}</section>`;
  const body =
    ss.length === 0
      ? note('This run has no iteration summaries.')
      : [
          panel('overview', 'Iterations', overviewTable(ss)),
          modelsSection(report),
          panel(
            'judge-scores',
            'Judge scores',
            histogramChart(ss),
            'The model judging its own candidates: parsed scores per whole-point bin, as a share of the iteration’s parsed judgments.',
          ),
          panel(
            'head-to-head',
            'Head-to-head',
            headToHeadChart(ss),
            'Each held-out prompt is judged in both orders: a win or loss needs both orders to agree, anything else is a tie. Win rate = (wins + ties / 2) / prompts.',
          ),
          panel(
            'judge-quality',
            'Judge quality',
            judgeQualityChart(ss),
            'How well each model ranks human-ranked replies as a judge. A missing point is an undefined measurement.',
          ),
          panel(
            'lengths',
            'Response length',
            lengthTrendChart(ss) + heldOutLengthChart(ss),
            'Characters per response: the self-generated candidates, the chosen and rejected sides of the preference pairs, and the models’ answers to the held-out prompts.',
          ),
          panel(
            'drops',
            'Dropped prompts and pairs',
            dropsChart(ss, 'prompts') + dropsChart(ss, 'pairs'),
            'Label over a bar: the total dropped in that iteration.',
          ),
          panel(
            'watch',
            'Reward-hacking watch',
            watchTable(ss),
            'Signs that the judge rewards length or saturates: correlation of candidate length with its mean score, the chosen–rejected length gap, the share of perfect scores, score variance and unreadable judgments.',
          ),
          panel('gates', 'Evaluation gate', gatePanels(ss)),
        ].join('');
  return (
    `<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">` +
    `<title>srlm report: ${esc(report.run)}</title><style>${CSS}</style></head><body><main>` +
    `<h1>Run <code>${esc(report.run)}</code></h1>` +
    `<p class="meta">${ss.length} iteration${ss.length === 1 ? '' : 's'}${report.store ? ` · store ${esc(report.store)}` : ''} · generated ${esc(report.generatedAt)} by <code>srlm report</code></p>` +
    alert +
    body +
    `</main></body></html>\n`
  );
}

// ---------------------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------------------

/** Text for a Markdown table cell: no line breaks, pipes escaped, no raw HTML. */
function md(text: string): string {
  return text.replace(/\r?\n/g, ' ').replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\|/g, '\\|');
}

function mdTable(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  return [
    `| ${header.map(md).join(' | ')} |`,
    `| ${header.map((_, k) => (k === 0 ? '---' : '---:')).join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(md).join(' | ')} |`),
    '',
  ];
}

/** The report's figures as Markdown tables. */
export function renderReportMarkdown(report: RunReport): string {
  const ss = sorted(report);
  const out: string[] = [`# Run ${md(report.run)}: report`, ''];
  out.push(
    `${ss.length} iteration${ss.length === 1 ? '' : 's'}${report.store ? `; store ${md(report.store)}` : ''}; generated ${md(report.generatedAt)} by srlm report.`,
    '',
  );
  if (ss.length === 0) return [...out, 'This run has no iteration summaries.', ''].join('\n');
  const noEval = ss.every((s) => s.evaluation === null);

  for (const s of ss) {
    const g = s.evaluation?.gate;
    if (g && !g.passed)
      out.push(
        `**Promotion gate held back the model of iteration ${s.iteration}** (on failure: ${md(g.onFail)}): ${md(
          g.checks
            .filter((c) => !c.passed)
            .map((c) => c.message || c.name)
            .join('; '),
        )}; ${md(onFailMeaning(g.onFail))}. ${md(GATE_HELD_EXPLANATION)}`,
        '',
      );
  }

  out.push('## Iterations', '');
  out.push(
    ...mdTable(
      [
        'iteration',
        'model in',
        'model out',
        'prompts kept',
        'prompts generated',
        'candidates',
        'judge parse rate',
        'mean score',
        'pairs',
        'DPO loss',
        'reward accuracy',
        'gate',
      ],
      ss.map((s) => [
        String(s.iteration),
        s.modelIn,
        s.modelOut ?? '(not trained)',
        String(s.prompts.kept),
        String(s.prompts.generated),
        String(s.candidates.count),
        pct(s.judge.parseRate),
        num(s.judge.meanScore),
        String(s.pairs.kept),
        num(s.dpo?.loss ?? null, 4),
        pct(s.dpo?.rewardAccuracy ?? null),
        s.evaluation === null
          ? 'no evaluation'
          : s.evaluation.gate === null
            ? 'no gate'
            : s.evaluation.gate.passed
              ? 'passed'
              : 'held back',
      ]),
    ),
  );

  if ((report.promoted ?? []).length > 0 || (report.models ?? []).length > 0) {
    out.push('## Models', '');
    for (const p of report.promoted ?? [])
      out.push(
        `Promoted model of lineage ${md(p.lineage)}: ${md(p.modelId)}${p.run ? ` (by run ${md(p.run)})` : ''}${p.previous ? `, replacing ${md(p.previous)}` : ''}.${p.reason ? ` Reason: ${md(p.reason)}` : ''}`,
        '',
      );
    if ((report.models ?? []).length > 0) {
      out.push(
        ...mdTable(
          ['model', 'parent', 'method', 'lineage', 'created', 'metrics'],
          (report.models ?? []).map((m) => [
            m.modelId + (m.promoted ? ' (promoted)' : ''),
            m.parent ?? '–',
            m.method,
            m.lineage,
            m.createdAt,
            Object.entries(m.metrics)
              .map(([k, v]) => `${k} ${num(v, 3)}`)
              .join(', ') || '–',
          ]),
        ),
      );
    }
  }

  out.push('## Judge scores', '');
  const binList = union(ss.map((s) => bins(s.judge.histogram))).sort((a, b) => Number(a) - Number(b));
  out.push(
    ...mdTable(
      ['iteration', ...binList.map((b) => `score ${b}`), 'parsed'],
      ss.map((s) => [
        String(s.iteration),
        ...binList.map((b) => (b in s.judge.histogram ? String(s.judge.histogram[b]) : '–')),
        String(s.judge.parsed),
      ]),
    ),
  );

  out.push('## Head-to-head', '');
  const h2h = headToHeadRows(ss);
  if (noEval) out.push('No evaluation configured.', '');
  else if (h2h.length === 0) out.push('No head-to-head comparisons.', '');
  else
    out.push(
      ...mdTable(
        ['iteration', 'model', 'opponent', 'judge', 'prompts', 'wins', 'ties', 'losses', 'win rate', 'order disagreements', 'unparsed'],
        h2h.map(({ iteration, h }) => [
          String(iteration),
          h.model,
          h.opponent,
          h.judge,
          String(h.prompts),
          String(h.wins),
          String(h.ties),
          String(h.losses),
          pct(h.winRate),
          String(h.orderDisagreements),
          String(h.unparsed),
        ]),
      ),
    );

  out.push('## Judge quality', '');
  const jq = latestByModel(ss, (e) => e.judgeQuality);
  if (noEval) out.push('No evaluation configured.', '');
  else if (jq.length === 0) out.push('No judge-quality measurements.', '');
  else
    out.push(
      ...mdTable(
        ['model', 'iteration', 'sets', 'pairs', ...QUALITY_METRICS.map(([, l]) => l), 'five best', 'parse rate'],
        jq.map(({ iteration, item: q }) => [
          q.model,
          String(iteration),
          String(q.sets),
          String(q.pairs),
          ...QUALITY_METRICS.map(([m]) => num(q[m], 3)),
          num(q.fiveBest, 3),
          pct(q.parseRate),
        ]),
      ),
    );

  out.push('## Response length (characters)', '');
  out.push(
    ...mdTable(
      ['iteration', 'candidates (mean)', 'chosen (mean)', 'rejected (mean)', 'candidates (mean tokens)'],
      ss.map((s) => [
        String(s.iteration),
        num(s.candidates.meanChars, 1),
        num(s.pairs.meanChosenChars, 1),
        num(s.pairs.meanRejectedChars, 1),
        num(s.candidates.meanTokens, 1),
      ]),
    ),
  );
  const rr = latestByModel(ss, (e) => e.responses);
  if (noEval) out.push('Held-out responses: no evaluation configured.', '');
  else if (rr.length > 0) {
    out.push('Held-out responses:', '');
    out.push(
      ...mdTable(
        ['model', 'iteration', 'responses', 'mean characters', 'median characters', 'mean tokens'],
        rr.map(({ iteration, item: r }) => [
          r.model,
          String(iteration),
          String(r.count),
          num(r.meanChars, 1),
          num(r.medianChars, 1),
          num(r.meanTokens, 1),
        ]),
      ),
    );
  }

  for (const which of ['prompts', 'pairs'] as const) {
    out.push(`## ${which === 'prompts' ? 'Prompts' : 'Pairs'} dropped`, '');
    const reasons = union(ss.map((s) => Object.keys(s[which].dropped))).sort();
    if (reasons.length === 0) out.push('Nothing dropped.', '');
    else
      out.push(
        ...mdTable(
          ['reason', ...ss.map((s) => `iteration ${s.iteration}`)],
          reasons.map((r) => [r, ...ss.map((s) => (r in s[which].dropped ? String(s[which].dropped[r]) : '–'))]),
        ),
      );
  }

  out.push('## Reward-hacking watch', '');
  if (noEval) out.push('No evaluation configured.', '');
  else
    out.push(
      ...mdTable(
        ['iteration', ...WATCH_METRICS.map(([, l]) => l)],
        ss.map((s) => [
          String(s.iteration),
          ...WATCH_METRICS.map(([key, , fmt]) => (s.evaluation === null ? 'no evaluation' : fmt(s.evaluation.watch[key]))),
        ]),
      ),
    );

  out.push('## Evaluation gate', '');
  for (const s of ss) {
    const g = s.evaluation?.gate ?? null;
    if (s.evaluation === null) out.push(`Iteration ${s.iteration}: no evaluation configured.`, '');
    else if (g === null) out.push(`Iteration ${s.iteration}: no gate configured.`, '');
    else {
      out.push(`Iteration ${s.iteration}: gate ${g.passed ? 'passed' : `**held the model back** (on failure: ${md(g.onFail)})`}.`, '');
      if (g.checks.length > 0)
        out.push(
          ...mdTable(
            ['check', 'result', 'value', 'threshold', 'message'],
            g.checks.map((c) => [c.name, c.passed ? 'pass' : 'not met', num(c.value, 3), num(c.threshold, 3), c.message]),
          ),
        );
    }
  }
  return out.join('\n');
}
