/**
 * V8 settings that keep the agent small (docs/agent.md, Memory), applied by runAgent before its
 * first database request.
 */
import v8 from 'node:v8';

/**
 * nano speaks HTTP through fetch, whose parser (undici's llhttp) is WebAssembly. After a few dozen
 * requests V8 recompiles llhttp's parse loop with its optimizing compiler, which holds ~28 MB of
 * compiler memory for a moment: a third of what the agent adds to Node itself. The baseline
 * compiler (Liftoff) parses the agent's few requests a minute just as well. The setting is
 * process-wide: WebAssembly adler32 (agent/node/adler32-simd.ts) then runs at about half its
 * optimized speed (measured ~1.5 instead of ~2.5 GB/s), still faster than the JavaScript version.
 * V8 reads the flag when it compiles, so setting it at run time works; an unknown flag (another V8) only prints a warning.
 */
export function keepWebAssemblyOnBaselineCompiler(): void {
  v8.setFlagsFromString('--liftoff-only');
}
