/** A sleep that another part of the process can cut short, e.g. when new work arrives. */
export class Wakeup {
  private pending: (() => void) | undefined;
  private woken = false;

  /** Resolves after `ms`, or at once if woken since the last sleep (or while sleeping). */
  sleep(ms: number): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        self.pending = undefined;
        self.woken = false;
        resolve();
      }
      this.pending = done;
    });
  }

  wake(): void {
    if (this.pending) this.pending();
    else this.woken = true;
  }
}
