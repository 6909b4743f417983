import { describe, expect, it } from 'vitest';
import { escapeHtml, renderReportHtml, renderReportMarkdown, type RunReport, scale } from '../../core/report';
import { IterationSummary } from '../../core/stats';
import { expectedCounts, HOSTILE, iteration1, iteration2, iteration3, RUN, summaryFiles } from '../helpers/report-fixtures';

const parsed = Object.values(summaryFiles).map((s) => IterationSummary.parse(s));
// out of order on purpose: the renderers sort by iteration
const report = (over: Partial<RunReport> = {}): RunReport => ({
  run: RUN,
  generatedAt: '2026-11-27T14:00:00.000Z',
  summaries: [parsed[2]!, parsed[0]!, parsed[1]!],
  ...over,
});

/** Each <svg data-chart> with its markup. */
function charts(html: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of html.matchAll(/<svg data-chart="([^"]+)"[\s\S]*?<\/svg>/g)) {
    expect(out.has(m[1]!), `chart ${m[1]} drawn twice`).toBe(false);
    out.set(m[1]!, m[0]);
  }
  return out;
}

/** The plotted elements of a chart: tag, data-series, data-value. */
function marks(svg: string): { tag: string; series: string; value: number }[] {
  return [...svg.matchAll(/<(rect|circle)\b[^>]*\bdata-series="([^"]*)"[^>]*\bdata-value="([^"]*)"/g)].map((m) => ({
    tag: m[1]!,
    series: m[2]!,
    value: Number(m[3]),
  }));
}

/** Rows of the Markdown table that follows `heading`, as arrays of cells. */
function mdTable(mdText: string, heading: string): string[][] {
  const lines = mdText.split('\n');
  const start = lines.indexOf(heading);
  expect(start, `heading ${heading}`).toBeGreaterThanOrEqual(0);
  const rows: string[][] = [];
  let k = start + 1;
  while (k < lines.length && !lines[k]!.startsWith('|')) k++;
  for (; k < lines.length && lines[k]!.startsWith('|'); k++)
    rows.push(
      lines[k]!.slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((c) => c.trim()),
    );
  return rows.filter((r) => !r.every((c) => /^-+:?$/.test(c)));
}

describe('renderReportHtml', () => {
  const html = renderReportHtml(report());
  const byName = charts(html);

  it('draws every chart with the number of bars and points the summaries give', () => {
    expect([...byName.keys()].sort()).toEqual(Object.keys(expectedCounts).sort());
    for (const [name, count] of Object.entries(expectedCounts)) expect(marks(byName.get(name)!).length, name).toBe(count);
  });

  it('gives every chart a title, axis labels and a legend entry per series', () => {
    for (const [name, svg] of byName) {
      expect(svg, name).toMatch(/class="chart-title"[^>]*>[^<]+</);
      expect(svg.match(/class="axis-label"/g)?.length, name).toBe(2);
      const legend = new Set([...svg.matchAll(/data-legend="([^"]*)"/g)].map((m) => m[1]));
      for (const m of marks(svg)) expect(legend.has(m.series), `${name}: series ${m.series} in the legend`).toBe(true);
    }
  });

  it('puts the figures on the marks: histogram counts, head-to-head outcomes, judge quality', () => {
    const hist = marks(byName.get('judge-histogram')!);
    expect(hist.filter((m) => m.series === 'iteration 3').map((m) => m.value)).toEqual([2, 4, 10, 60, 124, 200]);
    const h2h = marks(byName.get('head-to-head')!);
    expect(h2h.slice(0, 3)).toEqual([
      { tag: 'rect', series: 'wins', value: 24 },
      { tag: 'rect', series: 'ties', value: 12 },
      { tag: 'rect', series: 'losses', value: 14 },
    ]);
    // win rates labelled over the bars; the empty comparison says n/a
    expect([...byName.get('head-to-head')!.matchAll(/class="bar-label"[^>]*>([^<]*)</g)].map((m) => m[1])).toEqual([
      '60.0%',
      '30.0%',
      '30.0%',
      'n/a',
    ]);
    const jq = marks(byName.get('judge-quality')!);
    expect(jq.filter((m) => m.series === 'kendallTau').map((m) => m.value)).toEqual([0.16, 0.2]);
    expect(jq.filter((m) => m.series === 'spearman').map((m) => m.value)).toEqual([0.21, 0.27, -0.12]);
    const drops = marks(byName.get('pairs-dropped')!);
    expect(drops.filter((m) => m.series === 'tie').map((m) => m.value)).toEqual([7, 6, 11]);
  });

  it('marks a null where a bar would stand and leaves it out of a line', () => {
    const heldOut = byName.get('held-out-lengths')!;
    expect(heldOut).toMatch(/class="na"[^>]*>n\/a/);
    expect(
      marks(heldOut)
        .filter((m) => m.series === 'medianChars')
        .map((m) => m.value),
    ).toEqual([410, 470]);
    // the lengths line of held-out responses has no point in iteration 1 (no evaluation)
    expect(
      marks(byName.get('lengths')!)
        .filter((m) => m.series === 'held-out')
        .map((m) => m.value),
    ).toEqual([497.25, 780]);
  });

  it('makes a held-back model obvious and says it is the safeguard, not an error: a banner, a held panel and its unmet checks', () => {
    expect(html).toMatch(/data-alert="gate-failed"[^>]*><strong>Promotion gate held back the model of iteration 3<\/strong>:/);
    const banner = html.slice(html.indexOf('data-alert="gate-failed"'), html.indexOf('</div>', html.indexOf('data-alert="gate-failed"')));
    expect(banner).toContain('the next iteration trained from the last accepted model instead');
    expect(banner).toContain('the safeguard working, not an error');
    expect(banner).not.toMatch(/FAILED|error:/);
    const gates = [...html.matchAll(/<div class="gate [a-z]+" data-gate="([a-z]+)" data-iteration="(\d+)"/g)].map((m) => [
      Number(m[2]),
      m[1],
    ]);
    expect(gates).toEqual([
      [1, 'none'],
      [2, 'passed'],
      [3, 'failed'],
    ]);
    const failed = html.slice(html.indexOf('data-gate="failed"'));
    expect(failed.match(/data-check="failed"/g)).toHaveLength(2);
    expect(failed).toContain('Gate held this model back: the next iteration trained from the last accepted model instead.');
    expect(html.match(/data-check="passed"/g)).toHaveLength(3);
  });

  it('shows the watch figures per iteration and says when there was no evaluation', () => {
    const watch = html.slice(html.indexOf('data-table="watch"'));
    expect(watch).toMatch(/<tr data-iteration="1"><td>1<\/td><td colspan="5" class="muted">no evaluation configured/);
    expect(watch).toContain('<td class="n" data-metric="lengthScoreCorrelation">0.71</td>');
    expect(watch).toContain('<td class="n" data-metric="topScoreShare">50.0%</td>');
    expect(watch).toContain('<td class="n" data-metric="scoreVariance">–</td>');
    expect(html).toMatch(/data-gate="none" data-iteration="1">.*No evaluation configured for this iteration/);
  });

  it('escapes text from the data: run name, model ids, messages', () => {
    const hostile = renderReportHtml(
      report({
        run: `x"><img src=x onerror=alert(2)>`,
        models: [{ modelId: HOSTILE, lineage: 'l<i>', parent: 'm3', method: 'dpo', createdAt: '2026-11-27', metrics: {}, promoted: true }],
        promoted: [{ lineage: 'l<i>', modelId: HOSTILE, previous: 'm3', reason: 'rollback: <b>gate</b>' }],
      }),
    );
    expect(hostile).not.toMatch(/<script/i);
    expect(hostile).not.toContain('<img');
    expect(hostile).not.toContain('<i>');
    expect(hostile).toContain('Reason: rollback: &lt;b&gt;gate&lt;/b&gt;');
    expect(hostile).toContain(escapeHtml(HOSTILE));
    expect(hostile).toContain('x&quot;&gt;&lt;img src=x onerror=alert(2)&gt;');
    // the only elements are the page's own
    const tags = new Set([...hostile.matchAll(/<([a-zA-Z][a-zA-Z0-9]*)/g)].map((m) => m[1]!.toLowerCase()));
    expect(
      [...tags].filter(
        (t) =>
          ![
            'html',
            'head',
            'meta',
            'title',
            'style',
            'body',
            'main',
            'h1',
            'h2',
            'h3',
            'p',
            'section',
            'table',
            'thead',
            'tbody',
            'tr',
            'th',
            'td',
            'code',
            'span',
            'strong',
            'a',
            'div',
            'svg',
            'g',
            'rect',
            'circle',
            'line',
            'polyline',
            'text',
          ].includes(t),
      ),
    ).toEqual([]);
  });

  it('references nothing outside the file', () => {
    expect(html).not.toMatch(/\b(?:src|href|xlink:href)\s*=\s*["']?\s*(?:https?:)?\/\//i);
    expect(html).not.toMatch(/<(?:script|link|img|iframe|object|embed)\b/i);
    expect(html).not.toMatch(/@import|url\(/i);
    // the judge's URL is there, as text
    expect(html).toContain('openai:gpt-4o@https://judge.example/v1');
  });

  it('says "no evaluation configured" instead of drawing empty axes when no iteration has one', () => {
    const old = renderReportHtml(report({ summaries: [parsed[0]!] }));
    const drawn = charts(old);
    expect([...drawn.keys()].sort()).toEqual(['judge-histogram', 'lengths', 'pairs-dropped', 'prompts-dropped']);
    for (const id of ['head-to-head', 'judge-quality', 'watch']) {
      const section = old.slice(old.indexOf(`<section class="panel" id="${id}">`)).split('</section>')[0]!;
      expect(section, id).toContain('data-note="no-evaluation"');
      expect(section, id).toContain('No evaluation configured');
    }
    expect(old).not.toContain('data-alert');
    expect(marks(drawn.get('lengths')!)).toHaveLength(3);
  });

  it('renders a run without summaries as a page that says so', () => {
    const empty = renderReportHtml(report({ summaries: [] }));
    expect(empty).toContain('This run has no iteration summaries.');
    expect(charts(empty).size).toBe(0);
  });
});

describe('scale', () => {
  it('covers the maximum in at most 5 round steps', () => {
    expect(scale(0.4)).toEqual({ yMax: 0.4, step: 0.1 });
    expect(scale(0.43)).toEqual({ yMax: 0.5, step: 0.1 });
    expect(scale(810.25)).toEqual({ yMax: 1000, step: 200 });
    expect(scale(21, true)).toEqual({ yMax: 25, step: 5 });
    expect(scale(3, true)).toEqual({ yMax: 3, step: 1 });
    expect(scale(1, true)).toEqual({ yMax: 1, step: 1 });
    expect(scale(0)).toEqual({ yMax: 1, step: 0.2 });
  });
});

describe('renderReportMarkdown', () => {
  const text = renderReportMarkdown(report());

  it('has the histogram, head-to-head and judge-quality figures as tables', () => {
    expect(mdTable(text, '## Judge scores')).toEqual([
      ['iteration', 'score 0', 'score 1', 'score 2', 'score 3', 'score 4', 'score 5', 'parsed'],
      ['1', '10', '25', '60', '140', '150', '65', '450'],
      ['2', '4', '12', '40', '150', '200', '104', '510'],
      ['3', '2', '4', '10', '60', '124', '200', '400'],
    ]);
    const h2h = mdTable(text, '## Head-to-head');
    expect(h2h).toHaveLength(5);
    expect(h2h[1]).toEqual(['2', 'm3', 'm2', 'model:m3', '50', '24', '12', '14', '60.0%', '10', '2']);
    expect(h2h[4]!.slice(2, 9)).toEqual(['reference', 'openai:gpt-4o@https://judge.example/v1', '0', '0', '0', '0', '–']);
    const jq = mdTable(text, '## Judge quality');
    expect(jq.map((r) => r[0])).toEqual(['model', 'm2', 'm3', escapeHtml(HOSTILE)]);
    expect(jq[3]!.slice(4, 8)).toEqual(['0.410', '0', '-0.120', '–']);
  });

  it('has lengths, drops, watch and gate tables', () => {
    expect(mdTable(text, '## Response length (characters)')[3]).toEqual(['3', '640.5', '810.3', '402.5', '140.8']);
    expect(mdTable(text, '## Prompts dropped')).toContainEqual(['rouge-l', '9', '12', '14']);
    expect(mdTable(text, '## Pairs dropped')).toContainEqual(['too-few-scores', '2', '–', '2']);
    const watch = mdTable(text, '## Reward-hacking watch');
    expect(watch[1]).toEqual(['1', 'no evaluation', 'no evaluation', 'no evaluation', 'no evaluation', 'no evaluation']);
    expect(watch[3]).toEqual(['3', '0.71', '407.75', '50.0%', '–', '12.3%']);
    expect(text).toContain('Iteration 1: no evaluation configured.');
    expect(text).toContain('Iteration 3: gate **held the model back** (on failure: rollback).');
    expect(text).toMatch(
      /^\*\*Promotion gate held back the model of iteration 3\*\* \(on failure: rollback\): .*the safeguard working, not an error/m,
    );
    expect(text).not.toContain('FAILED');
    const checks = mdTable(text, 'Iteration 3: gate **held the model back** (on failure: rollback).');
    expect(checks.slice(1).map((r) => r[1])).toEqual(['not met', 'not met', 'pass']);
  });

  it('keeps table cells whole and inert: pipes escaped, no raw HTML', () => {
    const odd = IterationSummary.parse({ ...iteration1, modelIn: 'a|b', prompts: { ...iteration1.prompts, dropped: { 'x|y': 1 } } });
    const out = renderReportMarkdown({ run: RUN, generatedAt: 'now', summaries: [odd, iteration2, iteration3] });
    expect(out).toContain('a\\|b');
    expect(mdTable(out, '## Prompts dropped')).toContainEqual(['x\\|y', '1', '–', '–']);
    expect(out).not.toContain('<script');
  });
});
