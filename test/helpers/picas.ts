/**
 * The stock picasclient (../shared/picas, or TOKENPOOL_PICAS_CLIENT) run by Debian's python3 with
 * PYTHONPATH, as PiCaS users run it: a worker written as picasclient's local_example.py is (a RunActor
 * whose process_task runs the token's input line and attaches logs_<id>.out/.err), and token
 * creation as its create_tokens.py/push_tokens.py do it.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './pilot.js';

export const PICAS_CLIENT = process.env.TOKENPOOL_PICAS_CLIENT ?? path.resolve(ROOT, '..', 'shared', 'picas');

export interface PicasAccount {
  /** server URL without database or credentials */
  url: string;
  db: string;
  name: string;
  password: string;
}

export function picasAccount(dbUrl: string, name: string, password: string): PicasAccount {
  const u = new URL(dbUrl);
  return { url: u.origin, db: decodeURIComponent(u.pathname.replace(/^\/+|\/+$/g, '')), name, password };
}

// local_example.py's ExampleActor, with one change a PiCaS user makes for tokenpool-made tokens: their
// `input` is a list of files, the line to run is their `command`.
const WORKER = `
import sys, time
from picas.actors import RunActor
from picas.clients import CouchDB
from picas.executers import execute
from picas.modifiers import BasicTokenModifier

class ExampleActor(RunActor):
    def __init__(self, db, modifier, view="todo", **viewargs):
        super(ExampleActor, self).__init__(db, view=view, **viewargs)
        self.modifier = modifier
        self.client = db

    def process_task(self, token):
        line = token['input'] if isinstance(token['input'], str) else token['command']
        out = execute(["/bin/sh", "-c", line])
        self.subprocess = out[0]
        token['exit_code'] = out[1]
        token = self.modifier.close(token)
        token.put_attachment(f"logs_{token['_id']}.out", out[2])
        token.put_attachment(f"logs_{token['_id']}.err", out[3])

url, db, user, password = sys.argv[1:5]
client = CouchDB(url=url, db=db, username=user, password=password)
actor = ExampleActor(client, BasicTokenModifier())
actor.run(max_token_time=120, max_total_time=600, max_tasks=int(sys.argv[5]) if len(sys.argv) > 5 else None, max_scrub=0)
print(f"processed {actor.tasks_processed}")
`;

// create_tokens.py + push_tokens.py: Task documents with one input line each, saved with save_documents.
const PUSH = `
import sys, json
from picas.clients import CouchDB
from picas.documents import Task
url, db, user, password, first = sys.argv[1:6]
lines = json.load(sys.stdin)
client = CouchDB(url=url, db=db, username=user, password=password)
tokens = [Task({'_id': 'token_' + str(int(first) + i), 'type': 'token', 'input': line}) for i, line in enumerate(lines)]
print(json.dumps(client.save_documents(tokens)))
`;

export interface PicasRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runPicas(dir: string, script: 'worker' | 'push', account: PicasAccount, args: string[] = [], input?: string): Promise<PicasRun> {
  const file = path.join(dir, `picas-${script}.py`);
  if (!fs.existsSync(file)) fs.writeFileSync(file, script === 'worker' ? WORKER : PUSH);
  return new Promise((resolve, reject) => {
    const child = spawn('python3', [file, account.url, account.db, account.name, account.password, ...args], {
      cwd: dir,
      env: { ...process.env, PYTHONPATH: path.join(PICAS_CLIENT, 'python'), PYTHONDONTWRITEBYTECODE: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}
