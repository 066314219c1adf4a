/** The server's data directory: created if missing, checked writable, and held by one server at a time. */
import fs from 'node:fs';
import path from 'node:path';
import { InputError } from '../errors.js';

const PID_FILE = 'server.pid';

export function prepareDataDir(dataDir: string): void {
  try {
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    fs.accessSync(dataDir, fs.constants.W_OK | fs.constants.X_OK);
  } catch (err) {
    throw new InputError(
      `the data directory ${dataDir} cannot be created or written (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      'Pass --data DIR naming a directory you can write, or fix its permissions.',
    );
  }
}

/** Takes the directory for this process; a pid file left by a dead server is taken over. Returns the release function. */
export function lockDataDir(dataDir: string): () => void {
  const file = path.join(dataDir, PID_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      return () => {
        try {
          if (fs.readFileSync(file, 'utf8').trim() === String(process.pid)) fs.unlinkSync(file);
        } catch {
          // Already gone: nothing to release.
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = Number(fs.readFileSync(file, 'utf8').trim());
    if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && isAlive(holder)) {
      throw new InputError(
        `the data directory ${dataDir} is in use by another tokenpool server (pid ${holder})`,
        'Stop that server first, or pass --data with another directory.',
      );
    }
    fs.rmSync(file, { force: true });
  }
  throw new InputError(`could not take the data directory ${dataDir}: another server is starting on it`, 'Start one server per data directory.');
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
