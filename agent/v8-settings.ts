/**
 * V8 settings that keep the agent small (docs/agent.md, Memory). The entries (scripts/cli.ts for
 * `tokenpool agent`, scripts/pilot.ts) apply them before loading the agent's modules, since the young
 * generation grows while modules load; runAgent applies them too, for callers that import it.
 * V8 reads both flags whenever it uses them, so setting them at run time works; an unknown flag
 * (another V8) only prints a warning.
 */
import v8 from 'node:v8';

export function applyAgentV8Settings(): void {
  keepWebAssemblyOnBaselineCompiler();
  keepYoungGenerationSmall();
}

/**
 * nano speaks HTTP through fetch, whose parser (undici's llhttp) is WebAssembly. After a few dozen
 * requests V8 recompiles llhttp's parse loop with its optimizing compiler, which holds ~28 MB of
 * compiler memory for a moment: a third of what the agent adds to Node itself. The baseline
 * compiler (Liftoff) parses the agent's few requests a minute just as well. The setting is
 * process-wide: WebAssembly adler32 (agent/node/adler32-simd.ts) then runs at about half its
 * optimized speed (measured ~1.5 instead of ~2.5 GB/s), still faster than the JavaScript version.
 */
export function keepWebAssemblyOnBaselineCompiler(): void {
  v8.setFlagsFromString('--liftoff-only');
}

/**
 * V8's young generation starts at 1 MB per semi-space and doubles, up to 16 MB, whenever much of it
 * survives a scavenge, as it does while modules load: ~12 MB resident that the agent, which
 * allocates little once started, never needs again. A growth factor of 1 keeps it at its start size,
 * what pilot.sh's --max-semi-space-size=1 does, for a process whose command line we do not choose
 * (the installed `tokenpool` binary). Scavenges of 1 MB take well under a millisecond.
 */
export function keepYoungGenerationSmall(): void {
  v8.setFlagsFromString('--semi-space-growth-factor=1');
}
