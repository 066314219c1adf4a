/**
 * A real one-node Slurm cluster for tests: a private munged (own key and socket), slurmctld and slurmd
 * in the foreground on loopback ports, all state in a temporary directory. Needs root (tests run as
 * root here and in CI) and the Debian packages slurmctld, slurmd, slurm-client, munge.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface SlurmCluster {
  dir: string;
  conf: string;
  partition: string;
  /** Environment for Slurm clients (sbatch, squeue, scancel): SLURM_CONF points at our slurm.conf. */
  env: NodeJS.ProcessEnv;
  /** Runs a Slurm client command and returns its stdout. */
  run(cmd: string, args: string[]): string;
  /** Daemon logs, for failure messages. */
  logs(): string;
  /** Cancels every job, waits for them to leave, stops the daemons by pid and removes the directory. */
  stop(): Promise<void>;
}

export async function startSlurm(): Promise<SlurmCluster> {
  for (const bin of ['munged', 'slurmctld', 'slurmd', 'sbatch', 'squeue', 'scancel', 'sinfo']) {
    if (!onPath(bin)) throw new Error(`${bin} not found: install the Debian packages slurmctld slurmd slurm-client munge`);
  }
  if (process.getuid?.() !== 0) throw new Error('the Slurm test cluster needs root (munged and slurmd run as system users)');

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-slurm-'));
  // munged checks that its socket directory is traversable by all and its key directory is private.
  fs.chmodSync(dir, 0o755);
  const munge = userIds('munge');
  const keyDir = path.join(dir, 'munge-key');
  const runDir = path.join(dir, 'munge-run');
  fs.mkdirSync(keyDir, { mode: 0o700 });
  fs.mkdirSync(runDir, { mode: 0o755 });
  const keyFile = path.join(keyDir, 'munge.key');
  fs.writeFileSync(keyFile, randomBytes(1024), { mode: 0o400 });
  for (const p of [keyDir, runDir, keyFile]) fs.chownSync(p, munge.uid, munge.gid);
  const socket = path.join(runDir, 'munge.socket');

  const children: ChildProcess[] = [];
  const logFile = (name: string) => fs.openSync(path.join(dir, `${name}.out`), 'a');
  const startDaemon = (name: string, cmd: string, args: string[], ids?: { uid: number; gid: number }) => {
    const out = logFile(name);
    const child = spawn(cmd, args, { stdio: ['ignore', out, out], ...ids });
    fs.closeSync(out);
    child.on('error', () => {});
    children.push(child);
    return child;
  };
  const cluster: SlurmCluster = {
    dir,
    conf: path.join(dir, 'slurm.conf'),
    partition: 'debug',
    env: { ...process.env, SLURM_CONF: path.join(dir, 'slurm.conf') },
    run(cmd, args) {
      return execFileSync(cmd, args, { env: this.env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    },
    logs() {
      return ['munged', 'slurmctld', 'slurmd']
        .map((n) => `--- ${n}\n${readTail(path.join(dir, `${n}.out`))}`)
        .join('\n');
    },
    async stop() {
      try {
        if (children.every((c) => c.exitCode === null)) {
          this.run('scancel', ['--full', '--user', os.userInfo().username]);
          await waitFor(() => this.run('squeue', ['-h', '-o', '%i']).trim() === '', { timeoutMs: 90_000, what: 'jobs to leave' }).catch(() => {});
        }
      } catch {
        // The daemons may already be gone; stopping them below is what matters.
      }
      for (const child of children.reverse()) await stopChild(child);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    startDaemon('munged', 'munged', [
      '-F',
      `--socket=${socket}`,
      `--key-file=${keyFile}`,
      `--pid-file=${path.join(runDir, 'munged.pid')}`,
      `--seed-file=${path.join(keyDir, 'munged.seed')}`,
      `--log-file=${path.join(keyDir, 'munged.log')}`,
    ], munge);
    await waitFor(() => fs.existsSync(socket), { timeoutMs: 20_000, what: 'munged socket' });

    const [ctldPort, slurmdPort] = [await freePort(), await freePort()];
    const host = os.hostname().split('.')[0]!;
    for (const d of ['state', 'spool']) fs.mkdirSync(path.join(dir, d));
    const memoryMb = Math.floor((os.totalmem() / 2 ** 20) * 0.8);
    const conf = [
      'ClusterName=tokenpooltest',
      `SlurmctldHost=${host}(127.0.0.1)`,
      `SlurmctldPort=${ctldPort}`,
      `SlurmdPort=${slurmdPort}`,
      'SlurmUser=root',
      'AuthType=auth/munge',
      'CredType=cred/munge',
      `AuthInfo=socket=${socket}`,
      'CommunicationParameters=NoCtldInAddrAny,NoInAddrAny',
      `StateSaveLocation=${dir}/state`,
      `SlurmdSpoolDir=${dir}/spool`,
      `SlurmctldPidFile=${dir}/slurmctld.pid`,
      `SlurmdPidFile=${dir}/slurmd.pid`,
      'ProctrackType=proctrack/linuxproc',
      'TaskPlugin=task/none',
      'SelectType=select/cons_tres',
      'SelectTypeParameters=CR_Core',
      'MpiDefault=none',
      'AccountingStorageType=accounting_storage/none',
      'JobCompType=jobcomp/none',
      'JobAcctGatherType=jobacct_gather/none',
      'MailProg=/bin/true',
      'ReturnToService=2',
      // Pilots get SIGTERM and this long to put their token back before SIGKILL.
      'KillWait=60',
      // Finished jobs stay visible to squeue for a while, which is all the tests need.
      'MinJobAge=3600',
      'SchedulerParameters=sched_interval=2',
      `NodeName=${host} NodeAddr=127.0.0.1 CPUs=${os.cpus().length} RealMemory=${memoryMb} State=UNKNOWN`,
      `PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP`,
    ].join('\n');
    fs.writeFileSync(cluster.conf, conf + '\n');
    startDaemon('slurmctld', 'slurmctld', ['-D', '-f', cluster.conf]);
    startDaemon('slurmd', 'slurmd', ['-D', '-f', cluster.conf]);
    await waitFor(
      () => {
        try {
          return /^idle|^mixed/.test(cluster.run('sinfo', ['-h', '-o', '%T']).trim());
        } catch {
          return false;
        }
      },
      { timeoutMs: 60_000, what: 'the Slurm node to become idle' },
    );
    return cluster;
  } catch (err) {
    const logs = cluster.logs();
    for (const child of children.reverse()) await stopChild(child);
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`${(err as Error).message}\n${logs}`);
  }
}

/** Polls until `check` holds (a condition, not a timing: the timeout only bounds a broken run). */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<void> {
  const until = Date.now() + (opts.timeoutMs ?? 60_000);
  for (;;) {
    if (await check()) return;
    if (Date.now() > until) throw new Error(`timed out waiting for ${opts.what ?? 'a condition'}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 250));
  }
}

function onPath(bin: string): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => d && fs.existsSync(path.join(d, bin)));
}

function userIds(name: string): { uid: number; gid: number } {
  const line = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${name}:`));
  if (!line) throw new Error(`no system user ${name}: install the munge package`);
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

function readTail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-30).join('\n');
  } catch {
    return '(no log)';
  }
}
