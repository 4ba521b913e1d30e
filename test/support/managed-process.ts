import { spawn, type ChildProcess } from 'node:child_process';
import { DIST, exitOf, sleep } from './processes.js';

/**
 * A service run as its own process on a fixed port, so it can be killed, paused (SIGSTOP) and
 * restarted where its clients expect it.
 */
export class ManagedProcess {
  private child: ChildProcess | undefined;
  private log = '';
  readonly url: string;

  private readonly env: Record<string, string>;

  constructor(
    readonly script: string,
    portVariable: string,
    readonly port: number,
    env: Record<string, string>,
  ) {
    this.url = `http://127.0.0.1:${port}`;
    this.env = { ...env, [portVariable]: String(port) };
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Everything the process (and its earlier runs) wrote. */
  output(): string {
    return this.log;
  }

  /** Starts the process and waits until `/health` answers (a busy machine can take 20 s). */
  async start(timeoutMs = 60_000): Promise<void> {
    const child = spawn(process.execPath, [DIST + this.script], {
      env: {
        ...process.env,
        LOG_FORMAT: 'json',
        LOG_LEVEL: process.env.CHAOS_LOG_LEVEL ?? 'warn',
        ...this.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const keep = (chunk: Buffer) => {
      this.log += chunk.toString();
      if (this.log.length > 2_000_000) this.log = this.log.slice(-1_000_000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null) {
        throw new Error(`${this.script} exited with ${child.exitCode}:\n${this.log.slice(-3000)}`);
      }
      try {
        const answer = await fetch(`${this.url}/health`);
        await answer.arrayBuffer();
        if (answer.ok) return;
      } catch {
        // Not listening yet.
      }
      if (Date.now() > deadline) {
        throw new Error(`${this.script} not up within ${timeoutMs} ms:\n${this.log.slice(-3000)}`);
      }
      await sleep(25);
    }
  }

  /** Sends `signal` and waits for the exit; answers the exit code (null when killed by a signal). */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null)
      return child?.exitCode ?? null;
    const exited = exitOf(child);
    if (child.signalCode === null && signal !== 'SIGCONT') child.kill('SIGCONT');
    child.kill(signal);
    return exited;
  }

  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  resume(): void {
    this.child?.kill('SIGCONT');
  }

  async restart(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.stop(signal);
    await this.start();
  }
}
