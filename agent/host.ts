/**
 * Facts about the worker node, recorded on each finished token, from the kernel through node:os.
 * systeminformation gave the same numbers here (its mem() reads MemAvailable from /proc/meminfo, as
 * libuv does for os.freemem() on Linux) at ~5 MB of resident memory for its modules, and its cpu()
 * runs lscpu; the agent must stay small (docs/agent.md, Memory).
 */
import os from 'node:os';

export interface HostFacts {
  hostname: string;
  cores: number;
  memory_mb: number;
  memory_available_mb: number;
  /** 1-minute load average */
  load: number;
}

/** Kept async: callers chain .catch() on it. */
export async function hostFacts(): Promise<HostFacts> {
  return {
    hostname: os.hostname(),
    cores: nodeCores(),
    memory_mb: Math.round(os.totalmem() / 2 ** 20),
    memory_available_mb: Math.round(os.freemem() / 2 ** 20),
    load: Math.round(os.loadavg()[0]! * 100) / 100,
  };
}

/**
 * Cores this process may use (for --slots auto): under a batch system the CPU affinity (cgroup
 * cpuset) can be smaller than the machine, and availableParallelism() follows it.
 */
export function nodeCores(): number {
  return Math.max(1, os.availableParallelism());
}
