/** Where every benchmark leaves its figures: bench-results/<name>.json, and the same JSON on stdout. */
import fs from 'node:fs';

export function writeResults(name: string, results: unknown): void {
  const text = JSON.stringify(results, null, 2) + '\n';
  fs.mkdirSync('bench-results', { recursive: true });
  fs.writeFileSync(`bench-results/${name}.json`, text);
  process.stdout.write(text);
}
