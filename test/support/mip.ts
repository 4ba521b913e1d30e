import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The launcher; `npm test` builds dist/ first (pretest). */
const MIP = fileURLToPath(new URL('../../bin/mip.js', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node bin/mip.js …args` against `url` and collects what it printed. */
export function mip(
  url: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<CliResult> {
  // The caller's own MIP_URL, MIP_CRM_URL or API_TOKEN must not leak into what is tested.
  const inherited = { ...process.env };
  delete inherited.MIP_URL;
  delete inherited.MIP_CRM_URL;
  delete inherited.CRM_PORT;
  delete inherited.API_TOKEN;
  delete inherited.API_READ_TOKEN;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [MIP, ...args],
      { env: { ...inherited, MIP_URL: url, ...env }, timeout: 20_000 },
      (error, stdout, stderr) => {
        const code = error ? ((error as { code?: unknown }).code as number | null) : 0;
        resolve({ code: typeof code === 'number' ? code : null, stdout, stderr });
      },
    );
  });
}
