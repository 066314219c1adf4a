/** Where a token's results go: a template with ${PLACEHOLDERS}, expanded per token. */
import type { Token } from '../../server/token.js';

export const PLACEHOLDERS = ['RESULTS', 'OBSID', 'STEP', 'TOKEN_ID', 'SUBBAND', 'ATTEMPT'] as const;

/** Problems with a template (unknown placeholders, ${RESULTS} without a base), as messages. */
export function templateProblems(template: string, resultsBase: string | undefined): string[] {
  const problems: string[] = [];
  for (const m of template.matchAll(/\$\{([^}]*)\}/g)) {
    if (!(PLACEHOLDERS as readonly string[]).includes(m[1]!)) problems.push(`unknown placeholder \${${m[1]}} (known: ${PLACEHOLDERS.map((p) => `\${${p}}`).join(' ')})`);
    else if (m[1] === 'RESULTS' && !resultsBase) problems.push('${RESULTS} is used but no --results-base is given');
  }
  return problems;
}

/** SUBBAND is "100" for one subband, "100-109" for a range: the SB part of the token id. */
export function expandTemplate(template: string, token: Token, resultsBase: string | undefined): string {
  const sorted = [...token.subbands].sort((a, b) => a - b);
  const pad = (n: number) => String(n).padStart(3, '0');
  const subband = sorted.length === 0 ? '' : sorted.length === 1 || sorted[0] === sorted.at(-1) ? pad(sorted[0]!) : `${pad(sorted[0]!)}-${pad(sorted.at(-1)!)}`;
  const values: Record<(typeof PLACEHOLDERS)[number], string> = {
    RESULTS: (resultsBase ?? '').replace(/\/+$/, ''),
    OBSID: token.obsid ?? '',
    STEP: token.step,
    TOKEN_ID: token._id,
    SUBBAND: subband,
    ATTEMPT: String(token.attempts),
  };
  return template.replace(/\$\{([A-Z_]+)\}/g, (_m, name: string) => values[name as keyof typeof values]);
}
