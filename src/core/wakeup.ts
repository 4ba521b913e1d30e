/** A sleep that another part of the process can cut short, e.g. when new work arrives. */
export class Wakeup {
  private finishSleep: (() => void) | undefined;
  private woken = false;

  /** Resolves after `ms`, or at once if woken since the last sleep (or while sleeping). */
  sleep(ms: number): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        this.finishSleep = undefined;
        this.woken = false;
        resolve();
      };
      const timer = setTimeout(finish, ms);
      this.finishSleep = finish;
    });
  }

  wake(): void {
    if (this.finishSleep) this.finishSleep();
    else this.woken = true;
  }
}
