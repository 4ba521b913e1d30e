import { chromium, type Browser } from 'playwright-core';

/**
 * Debian's headless Chromium (`CHROMIUM_PATH` overrides), with `extraArgs` after the flags every
 * browser test uses, e.g. `--host-resolver-rules` to give another site a name on this machine.
 */
export function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      ...extraArgs,
    ],
  });
}
