/**
 * `tokenpool server` in a process of its own, as it runs in production: the claimers' CPU (parsing
 * view rows, building writes) must not queue behind the front's event loop, nor the other way round.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import readline from 'node:readline';

const CLI = fileURLToPath(new URL('../scripts/cli.js', import.meta.url));

export interface ServerProcess {
  url: string;
  credentialsFile: string;
  stop(): Promise<void>;
}

export async function startServerProcess(dataDir: string): Promise<ServerProcess> {
  const child = spawn(process.execPath, [CLI, 'server', '--port', '0', '--data', dataDir, '--json', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const first = await new Promise<string>((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout! });
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`tokenpool server exited with ${code} before it listened`)));
  });
  const { url, credentials_file } = JSON.parse(first) as { url: string; credentials_file: string };
  return { url, credentialsFile: credentials_file, stop: () => stop(child, exited) };
}

async function stop(child: ChildProcess, exited: Promise<void>): Promise<void> {
  child.kill('SIGTERM');
  await exited;
}
