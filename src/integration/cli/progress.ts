/** Where progress is shown: `isTTY` picks a bar redrawn in place, or a plain line now and then. */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
}

/**
 * Shows how far a long run is on `stream`: on a terminal a bar redrawn in place ten times a second,
 * otherwise a plain line at most once a second. Answers the function that ends the display.
 */
export function showProgress(
  stream: ProgressStream,
  /** How many there are in all; a function when that is learnt on the way. */
  totalOf: number | (() => number),
  done: () => number,
  unit: string,
): () => void {
  const tty = stream.isTTY === true;
  const width = 30;
  // The rate is measured over the last second or so, not since the start.
  const samples = [{ at: performance.now(), done: 0 }];
  const render = () => {
    const now = performance.now();
    const count = done();
    const total = Math.max(1, typeof totalOf === 'number' ? totalOf : totalOf());
    samples.push({ at: now, done: count });
    while (samples.length > 2 && now - samples[1]!.at >= 1000) samples.shift();
    const first = samples[0]!;
    const rate = now > first.at ? Math.round(((count - first.done) * 1000) / (now - first.at)) : 0;
    const percent = Math.floor((count * 100) / total);
    if (tty) {
      const filled = Math.round((count * width) / total);
      const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
      // \x1b[K clears what a longer previous line left behind.
      stream.write(`\r[${bar}] ${count}/${total} ${percent}% ${rate} ${unit}/s\x1b[K`);
    } else {
      stream.write(`${count}/${total} ${unit} (${percent}%), ${rate} ${unit}/s\n`);
    }
  };
  if (tty) render();
  const timer = setInterval(render, tty ? 100 : 1000);
  return () => {
    clearInterval(timer);
    if (tty) {
      render();
      stream.write('\n');
    }
  };
}
