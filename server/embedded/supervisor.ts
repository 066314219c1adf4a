/** Keeps one engine child process alive: starts it, waits for its port, restarts it when it dies. */
import { fork, type ChildProcess } from 'node:child_process';
import type { Logger } from '../log.js';
import { ownModule } from '../own-module.js';
import type { EngineMessage, EngineOptions } from './engine.js';

const ENGINE = ownModule('./engine', import.meta.url);

export class EngineSupervisor {
  private child: ChildProcess | null = null;
  private port: Promise<number> | null = null;
  private stopping = false;
  restarts = 0;
  /** Counts engine starts: what the front cached about the engine's data is void once it changes. */
  generation = 0;

  constructor(
    private readonly opts: EngineOptions,
    private readonly log: Logger,
  ) {}

  /** The engine's port, waiting for a (re)start in progress. */
  enginePort(): Promise<number> {
    if (!this.port) this.port = this.spawn();
    return this.port;
  }

  /** The engine child's process id (tests kill it to check recovery). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  private spawn(): Promise<number> {
    this.generation++;
    return new Promise((resolve, reject) => {
      const child = fork(ENGINE.file, [], {
        execArgv: ENGINE.execArgv,
        env: { ...process.env, TOKENPOOL_ENGINE_OPTIONS: JSON.stringify(this.opts) },
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      });
      this.child = child;
      let stderrTail = '';
      let ready = false;
      child.stderr?.on('data', (chunk: Buffer) => {
        stderrTail = (stderrTail + chunk.toString()).slice(-4000);
      });
      child.on('message', (msg: EngineMessage) => {
        if (msg.type === 'ready') {
          ready = true;
          resolve(msg.port);
        }
        else reject(new Error(`database engine failed to start: ${msg.message}`));
      });
      child.on('exit', (code, signal) => {
        if (this.child !== child) return;
        this.child = null;
        this.port = null;
        if (this.stopping) return;
        if (!ready) {
          // A start-up failure (bad data directory, port, module) would only repeat: report it instead.
          reject(new Error(`database engine exited during start-up (code ${code}, signal ${signal}): ${lastLines(stderrTail, 8)}`));
          return;
        }
        this.restarts++;
        this.log.error({ code, signal, restarts: this.restarts, stderr: lastLines(stderrTail, 8) }, 'database engine died; restarting it');
        // Restart eagerly so that the next request does not pay for the start-up.
        this.port = this.spawn();
        this.port.catch((err: unknown) => this.log.error({ err: String(err) }, 'database engine restart failed'));
      });
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }
}

function lastLines(text: string, n: number): string {
  return text.trim().split('\n').slice(-n).join('\n');
}
