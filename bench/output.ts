/** What the bench prints: progress redrawn in place on a terminal, and result lines. */

const tty = process.stdout.isTTY === true;

let lastPlainProgress = 0;
/** A progress line redrawn in place on a terminal; an occasional plain line otherwise (CI logs). */
export function progress(line: string): void {
  if (tty) {
    process.stdout.write(`\r\x1b[K${line}`);
  } else if (Date.now() - lastPlainProgress > 5_000) {
    lastPlainProgress = Date.now();
    process.stdout.write(`  … ${line}\n`);
  }
}
export function say(line: string): void {
  if (tty) process.stdout.write('\r\x1b[K');
  process.stdout.write(`${line}\n`);
}
