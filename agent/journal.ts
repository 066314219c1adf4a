/**
 * Outcomes the database could not take when the attempt ended, kept on local disk until it can:
 * one JSON file per outcome in <workdir>/journal, written atomically (temp file + rename). Several
 * agents may share a node's workdir: each entry is locked (proper-lockfile) while it is replayed,
 * so two agents never replay the same entry at once, and a half-written entry is never read.
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import lockfile from 'proper-lockfile';
import type { Outcome } from '../server/lease.js';

export interface JournalEntry {
  tokenId: string;
  claimId: string;
  attempt: number;
  outcome: Outcome;
  written: number;
}

export type ReplayResult = 'applied' | 'dropped';

export class Journal {
  readonly dir: string;

  constructor(workdir: string) {
    this.dir = path.join(workdir, 'journal');
  }

  write(entry: JournalEntry): string {
    fs.mkdirSync(this.dir, { recursive: true });
    const file = path.join(this.dir, `${encodeURIComponent(entry.tokenId)}.${entry.claimId}.json`);
    const tmp = path.join(this.dir, `.tmp-${randomBytes(6).toString('hex')}`);
    fs.writeFileSync(tmp, JSON.stringify(entry), { mode: 0o600 });
    fs.renameSync(tmp, file);
    return file;
  }

  files(): string[] {
    try {
      return fs
        .readdirSync(this.dir)
        .filter((f) => f.endsWith('.json') && !f.startsWith('.'))
        .map((f) => path.join(this.dir, f));
    } catch {
      return [];
    }
  }

  /**
   * Replays every entry nobody else is replaying. `replay` returns 'applied' or 'dropped' (the claim
   * is no longer ours); either way the entry is removed. A throw (database still unreachable) keeps it.
   */
  async flush(replay: (entry: JournalEntry) => Promise<ReplayResult>): Promise<{ applied: number; dropped: number; kept: number; errors: unknown[] }> {
    const counts = { applied: 0, dropped: 0, kept: 0, errors: [] as unknown[] };
    for (const file of this.files()) {
      let unlock: (() => Promise<void>) | null = null;
      try {
        unlock = await lockfile.lock(file, { retries: 0, stale: 30_000, realpath: false });
      } catch {
        counts.kept++; // another agent is replaying it, or it vanished
        continue;
      }
      try {
        if (!fs.existsSync(file)) continue;
        let entry: JournalEntry;
        try {
          entry = JSON.parse(fs.readFileSync(file, 'utf8')) as JournalEntry;
        } catch (err) {
          // Unreadable (disk trouble): set aside for a human rather than retried forever.
          fs.renameSync(file, `${file}.unreadable`);
          counts.errors.push(err);
          continue;
        }
        const result = await replay(entry);
        counts[result]++;
        fs.rmSync(file, { force: true });
      } catch (err) {
        counts.kept++;
        counts.errors.push(err);
      } finally {
        await unlock().catch(() => undefined);
      }
    }
    return counts;
  }
}
