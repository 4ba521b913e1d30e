/**
 * The results chart as a self-contained SVG, rendered from a library: a Vega-Lite spec compiled to
 * Vega and rendered headless by Vega in Node (`view.toSVG()`, no browser, no canvas). Without the
 * optional `canvas` package Vega estimates text widths, so label length limits are switched off.
 * Left: cumulative distribution of push lag per sync mode (log x axis). Right: backlog throughput
 * (customers/s) per size, platform vs baseline. `renderChart` is async because `toSVG()` is.
 */

import { parse, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

export interface LagSeries {
  label: string;
  /** Lags in ms, sorted ascending. */
  sorted: number[];
}

export interface ThroughputBar {
  size: number;
  platform: number | null;
  baseline: number | null;
}

const PANEL_WIDTH = 380;
const PANEL_HEIGHT = 280;
/** Points per cumulative-distribution curve: enough for a smooth line, small enough for the file. */
const CURVE_POINTS = 200;
/** A log axis cannot show 0 ms: lags below this floor are drawn at the floor. */
const LAG_FLOOR_MS = 0.1;

const LAG_COLORS = ['#1f77b4', '#2ca02c', '#9467bd', '#d62728', '#8c564b', '#e377c2'];
const PLATFORM = 'platform (SYNC_MODE=poll)';
const BASELINE = 'baseline (seed-style poller)';

/** One panel of the side-by-side (hconcat) chart. */
type Panel = Extract<TopLevelSpec, { hconcat: unknown }>['hconcat'][number];

/** A blank panel of the usual size that only says why it is empty. */
function placeholder(title: string, message: string): Panel {
  return {
    title,
    width: PANEL_WIDTH,
    height: PANEL_HEIGHT,
    data: { values: [{ message }] },
    mark: { type: 'text', fontSize: 14, color: '#666' },
    encoding: {
      text: { field: 'message', type: 'nominal' },
      x: { value: PANEL_WIDTH / 2 },
      y: { value: PANEL_HEIGHT / 2 },
    },
  };
}

/** About CURVE_POINTS evenly spaced quantiles of one sorted series, always with its min and max. */
function cdfPoints(series: LagSeries) {
  const sorted = series.sorted.filter((value) => Number.isFinite(value));
  const count = Math.min(CURVE_POINTS, sorted.length);
  const lag = (value: number) => Math.max(LAG_FLOOR_MS, value);
  // Each curve starts at 0 % at its smallest lag, so even a single-value series draws a step.
  const points = count === 0 ? [] : [{ series: series.label, lag: lag(sorted[0]!), share: 0 }];
  for (let k = 0; k < count; k++) {
    const index = count === 1 ? 0 : Math.round((k * (sorted.length - 1)) / (count - 1));
    points.push({
      series: series.label,
      lag: lag(sorted[index]!),
      share: (index + 1) / sorted.length,
    });
  }
  return points;
}

function lagPanel(lagSeries: LagSeries[]): Panel {
  const title = {
    text: 'Push lag: share of customers within x ms',
    // The seed-style baseline has no push path: its lag is bounded by its 10 s poll interval.
    subtitle: 'baseline not measured (polls every 10 s)',
  };
  const nonEmpty = lagSeries.filter((series) => series.sorted.some(Number.isFinite));
  if (nonEmpty.length === 0) return placeholder(title.text, 'push_lag did not run');
  const labels = [...new Set(nonEmpty.map((series) => series.label))];
  return {
    title,
    width: PANEL_WIDTH,
    height: PANEL_HEIGHT,
    data: { values: nonEmpty.flatMap(cdfPoints) },
    mark: { type: 'line', strokeWidth: 2, interpolate: 'step-after' },
    encoding: {
      x: {
        field: 'lag',
        type: 'quantitative',
        scale: { type: 'log' },
        axis: { title: 'lag (ms, CRM created_at → package request created_at)', format: ',~g' },
      },
      y: {
        field: 'share',
        type: 'quantitative',
        scale: { domain: [0, 1] },
        axis: { title: 'share of customers', format: '.0%' },
      },
      color: {
        field: 'series',
        type: 'nominal',
        scale: { domain: labels, range: LAG_COLORS },
        legend: { title: null, orient: 'top', direction: 'vertical' },
      },
      order: { field: 'share', type: 'quantitative' },
    },
  };
}

function throughputPanel(bars: ThroughputBar[]): Panel {
  const title = 'Backlog throughput (customers/s)';
  const sizeLabel = (size: number) => `${size.toLocaleString('en')} customers`;
  const values = bars.flatMap((bar) =>
    [
      { series: PLATFORM, throughput: bar.platform },
      { series: BASELINE, throughput: bar.baseline },
    ]
      .filter((v): v is { series: string; throughput: number } => Number.isFinite(v.throughput))
      .map((v) => ({ size: sizeLabel(bar.size), ...v })),
  );
  if (values.length === 0) return placeholder(title, 'backlog throughput did not run');
  const sizes = [...new Set([...bars].sort((a, b) => a.size - b.size).map((b) => b.size))];
  const series = { field: 'series', type: 'nominal' } as const;
  return {
    title,
    width: PANEL_WIDTH,
    height: PANEL_HEIGHT,
    data: { values },
    encoding: {
      x: {
        field: 'size',
        type: 'nominal',
        sort: sizes.map(sizeLabel),
        axis: { title: 'backlog size', labelAngle: 0 },
      },
      xOffset: { ...series, scale: { domain: [PLATFORM, BASELINE] } },
      y: {
        field: 'throughput',
        type: 'quantitative',
        // Headroom above the tallest bar for its label.
        scale: { domainMax: Math.max(...values.map((v) => v.throughput)) * 1.12 },
        axis: { title: 'customers/s', format: '~s' },
      },
    },
    layer: [
      {
        mark: { type: 'bar' },
        encoding: {
          color: {
            ...series,
            scale: { domain: [PLATFORM, BASELINE], range: ['#1f77b4', '#ff7f0e'] },
            legend: { title: null, orient: 'top', direction: 'vertical' },
          },
        },
      },
      {
        mark: { type: 'text', baseline: 'bottom', dy: -3, fontSize: 12 },
        encoding: { text: { field: 'throughput', type: 'quantitative', format: ',.0f' } },
      },
    ],
  };
}

export async function renderChart(
  lagSeries: LagSeries[],
  bars: ThroughputBar[],
  subtitle: string,
): Promise<string> {
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Mini Integration Platform benchmark',
      subtitle,
      anchor: 'start',
      fontSize: 18,
      subtitleFontSize: 13,
      offset: 16,
    },
    background: 'white',
    padding: 16,
    // Lay the panels out by their plot areas: Vega's estimated text widths would spread them apart.
    bounds: 'flush',
    spacing: 100,
    hconcat: [lagPanel(lagSeries), throughputPanel(bars)],
    // The two panels encode different things by colour: keep their scales and legends apart.
    resolve: { scale: { color: 'independent' }, legend: { color: 'independent' } },
    config: {
      font: 'sans-serif',
      title: { fontSize: 14, subtitleFontSize: 12, subtitleColor: '#666', anchor: 'start' },
      axis: { labelFontSize: 12, titleFontSize: 12, labelLimit: 0, titleLimit: 0 },
      legend: { labelFontSize: 12, titleFontSize: 12, labelLimit: 0, titleLimit: 0 },
      view: { stroke: '#999' },
    },
  } satisfies TopLevelSpec;
  const view = new View(parse(compile(spec).spec), { renderer: 'none' });
  try {
    return `${await view.toSVG()}\n`;
  } finally {
    view.finalize();
  }
}
