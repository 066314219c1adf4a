/**
 * Facts about the worker node, recorded on each finished token. Only cheap calls (si.currentLoad
 * samples for half a second, so the load average comes from the kernel); systeminformation loads
 * lazily because it is big and the agent must start small.
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

export async function hostFacts(): Promise<HostFacts> {
  const si = (await import('systeminformation')).default;
  const mem = await si.mem();
  return {
    hostname: os.hostname(),
    cores: os.availableParallelism(),
    memory_mb: Math.round(mem.total / 2 ** 20),
    memory_available_mb: Math.round(mem.available / 2 ** 20),
    load: Math.round(os.loadavg()[0]! * 100) / 100,
  };
}

/** Cores this node offers (for --slots auto). */
export async function nodeCores(): Promise<number> {
  const si = (await import('systeminformation')).default;
  const cpu = await si.cpu();
  // Under a batch system the CPU affinity (cgroup cpuset) can be smaller than the machine.
  return Math.max(1, Math.min(cpu.cores || Infinity, os.availableParallelism()));
}
