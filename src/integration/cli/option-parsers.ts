import { InvalidArgumentError, type Command } from 'commander';

/** An option parser for a whole number from `min` to `max`. */
export function wholeNumber(min: number, max: number): (value: string) => number {
  return (value) => {
    const number = /^\d+$/.test(value) ? Number(value) : Number.NaN;
    if (!(number >= min && number <= max)) {
      throw new InvalidArgumentError(`It must be a whole number from ${min} to ${max}.`);
    }
    return number;
  };
}

/** `--since`: an ISO 8601 time, or a span ago (`90s`, `30m`, `2h`, `1d`); answers ISO 8601. */
export function parseSince(value: string, now = Date.now()): string {
  const ago = /^(\d{1,6})([smhd])$/.exec(value);
  if (ago) {
    const unitMs = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[
      ago[2] as 's' | 'm' | 'h' | 'd'
    ];
    return new Date(now - Number(ago[1]) * unitMs).toISOString();
  }
  const at = Date.parse(value);
  if (!/^\d{4}-\d\d-\d\dT/.test(value) || Number.isNaN(at)) {
    throw new InvalidArgumentError(
      'It must be a time such as 2026-12-03T09:00:00Z, or a span ago such as 30m, 2h or 1d.',
    );
  }
  return new Date(at).toISOString();
}

/** `--prefix`: letters, digits, `-` and `_`, as emails and names take them. */
export function parsePrefix(value: string): string {
  if (!/^[A-Za-z0-9_-]{1,40}$/.test(value)) {
    throw new InvalidArgumentError('It must be 1 to 40 letters, digits, "-" or "_".');
  }
  return value;
}

/** `--since` of resync as a time, or a usage error that says what it takes. */
export function parseSinceOrUsage(value: string, command: Command, usageExitCode: number): string {
  try {
    return parseSince(value);
  } catch (error) {
    return command.error(
      `option '--since <position | time>' argument '${value}' is invalid. It must be a feed position, or ${(error as Error).message.replace(/^It must be /, '')}`,
      {
        exitCode: usageExitCode,
      },
    );
  }
}
