import { Wakeup } from './wakeup.js';

/** What a step answers: wait this many ms before the next one (0: at once), or stop for good. */
export type NextStep = number | 'done';

/**
 * Runs `step` over and over until stopped or until it answers `'done'`; `wake()` cuts a wait
 * short. The step must not throw: it records its own failures and answers how long to back off.
 */
export class RepeatingTask {
  private running = false;
  private loop: Promise<void> | undefined;
  private readonly wakeup = new Wakeup();

  constructor(private readonly step: () => Promise<NextStep>) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  wake(): void {
    this.wakeup.wake();
  }

  /** Stops after the step in progress (if any) and waits for it. */
  async stop(): Promise<void> {
    this.running = false;
    this.wakeup.wake();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (this.running) {
      const next = await this.step();
      if (next === 'done') break;
      if (next > 0 && this.running) await this.wakeup.sleep(next);
    }
    this.running = false;
  }
}
