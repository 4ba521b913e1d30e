/**
 * The results chart as a self-contained SVG, drawn by hand: the project's lock file has no charting
 * library, and adding one is out of the bench's scope for now. Left: cumulative distribution of push
 * lag per sync mode. Right: backlog throughput (customers/s) per size, platform vs baseline.
 */

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

const COLORS = ['#1f77b4', '#2ca02c', '#9467bd', '#d62728'];
const PLATFORM_COLOR = '#1f77b4';
const BASELINE_COLOR = '#ff7f0e';

const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;');
const text = (x: number, y: number, content: string, extra = '') =>
  `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${extra}>${escape(content)}</text>`;

/** Round axis maximum: 1, 2 or 5 times a power of ten, at least `value`. */
function niceMax(value: number): number {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((step) => step * power).find((candidate) => candidate >= value)!;
}

function lagPanel(series: LagSeries[], left: number, top: number, width: number, height: number) {
  const parts: string[] = [
    text(left, top - 12, 'Push lag: share of customers within x ms', 'font-weight="bold"'),
  ];
  // The x axis stops at the largest p99 (times 1.5) so the tail does not squash the body.
  const p99s = series.map((s) => s.sorted[Math.floor(0.99 * (s.sorted.length - 1))] ?? 0);
  const xMax = niceMax(Math.max(1, ...p99s) * 1.5);
  const x = (ms: number) => left + (Math.min(ms, xMax) / xMax) * width;
  const y = (share: number) => top + height - share * height;
  parts.push(
    `<rect x="${left}" y="${top}" width="${width}" height="${height}" fill="none" stroke="#999"/>`,
  );
  for (let i = 0; i <= 5; i++) {
    const ms = (xMax / 5) * i;
    parts.push(text(x(ms), top + height + 16, `${ms}`, 'text-anchor="middle"'));
    const share = i / 5;
    parts.push(text(left - 6, y(share) + 4, `${Math.round(share * 100)}%`, 'text-anchor="end"'));
  }
  parts.push(
    text(
      left + width / 2,
      top + height + 34,
      'lag (ms, CRM created_at → package request created_at)',
      'text-anchor="middle"',
    ),
  );
  series.forEach((s, index) => {
    const color = COLORS[index % COLORS.length]!;
    // At most ~200 points per curve keeps the file small.
    const step = Math.max(1, Math.floor(s.sorted.length / 200));
    const points: string[] = [];
    for (let i = 0; i < s.sorted.length; i += step)
      points.push(`${x(s.sorted[i]!).toFixed(1)},${y((i + 1) / s.sorted.length).toFixed(1)}`);
    if (s.sorted.length > 0)
      points.push(`${x(s.sorted[s.sorted.length - 1]!).toFixed(1)},${y(1).toFixed(1)}`);
    parts.push(
      `<polyline points="${points.join(' ')}" fill="none" stroke="${color}" stroke-width="2"/>`,
    );
    parts.push(
      `<rect x="${left + width - 150}" y="${top + height - 20 - index * 18 - 10}" width="12" height="12" fill="${color}"/>`,
    );
    parts.push(text(left + width - 132, top + height - 20 - index * 18, s.label));
  });
  if (series.length === 0) parts.push(text(left + 20, top + height / 2, 'push_lag did not run'));
  // The seed-style baseline has no push path: its lag is bounded by its 10 s poll interval instead.
  parts.push(text(left + 10, top + 18, 'baseline not measured (polls every 10 s)', 'fill="#666"'));
  return parts.join('\n');
}

function throughputPanel(
  bars: ThroughputBar[],
  left: number,
  top: number,
  width: number,
  height: number,
) {
  const parts: string[] = [
    text(left, top - 12, 'Backlog throughput (customers/s)', 'font-weight="bold"'),
  ];
  const yMax = niceMax(Math.max(1, ...bars.flatMap((b) => [b.platform ?? 0, b.baseline ?? 0])));
  const y = (value: number) => top + height - (value / yMax) * height;
  parts.push(
    `<rect x="${left}" y="${top}" width="${width}" height="${height}" fill="none" stroke="#999"/>`,
  );
  for (let i = 0; i <= 5; i++) {
    const value = (yMax / 5) * i;
    parts.push(text(left - 6, y(value) + 4, `${value}`, 'text-anchor="end"'));
  }
  const group = width / Math.max(1, bars.length);
  bars.forEach((bar, index) => {
    const groupLeft = left + index * group;
    const barWidth = group / 3;
    const draw = (value: number | null, offset: number, color: string) => {
      if (value === null) return;
      const barLeft = groupLeft + group / 6 + offset;
      parts.push(
        `<rect x="${barLeft.toFixed(1)}" y="${y(value).toFixed(1)}" width="${barWidth.toFixed(1)}" height="${(top + height - y(value)).toFixed(1)}" fill="${color}"/>`,
      );
      parts.push(
        text(
          barLeft + barWidth / 2,
          y(value) - 4,
          `${Math.round(value)}`,
          'text-anchor="middle" font-size="11"',
        ),
      );
    };
    draw(bar.platform, 0, PLATFORM_COLOR);
    draw(bar.baseline, barWidth, BASELINE_COLOR);
    parts.push(
      text(
        groupLeft + group / 2,
        top + height + 16,
        `${bar.size.toLocaleString('en')} customers`,
        'text-anchor="middle"',
      ),
    );
  });
  parts.push(
    `<rect x="${left + 10}" y="${top + 10}" width="12" height="12" fill="${PLATFORM_COLOR}"/>`,
  );
  parts.push(text(left + 28, top + 20, 'platform (SYNC_MODE=poll)'));
  parts.push(
    `<rect x="${left + 10}" y="${top + 28}" width="12" height="12" fill="${BASELINE_COLOR}"/>`,
  );
  parts.push(text(left + 28, top + 38, 'baseline (seed-style poller)'));
  return parts.join('\n');
}

export function renderChart(
  lag: LagSeries[],
  throughput: ThroughputBar[],
  subtitle: string,
): string {
  const width = 1000;
  const height = 420;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    text(20, 24, `Mini Integration Platform bench — ${subtitle}`, 'font-size="14"'),
    lagPanel(lag, 70, 70, 380, 280),
    throughputPanel(throughput, 580, 70, 380, 280),
    '</svg>',
    '',
  ].join('\n');
}
