/**
 * WLCG bearer tokens found by the WLCG Bearer Token Discovery rules: the `BEARER_TOKEN`
 * variable, else the file named by `BEARER_TOKEN_FILE`, else `$XDG_RUNTIME_DIR/bt_u<uid>`, else
 * `/tmp/bt_u<uid>`. The token is read afresh on every call (refreshers rewrite the file). Its
 * expiry comes from the JWT's `exp` claim (read, not verified: the storage verifies).
 */
import fs from 'node:fs';
import os from 'node:os';

export interface FoundToken {
  token: string;
  /** `BEARER_TOKEN` or the file it came from: never the token itself */
  source: string;
  /** The file, when it came from one (for waiting on a rewrite) */
  file?: string;
  expiresAt?: Date;
  /** Space-separated scopes (`storage.read:/lofar storage.create:/lofar/user`) */
  scope?: string;
}

/** Where discovery looks, in order: the variable, then files. */
export function bearerTokenFiles(env: NodeJS.ProcessEnv, uid = os.userInfo().uid): string[] {
  if (env.BEARER_TOKEN_FILE) return [env.BEARER_TOKEN_FILE];
  return [...(env.XDG_RUNTIME_DIR ? [`${env.XDG_RUNTIME_DIR}/bt_u${uid}`] : []), `/tmp/bt_u${uid}`];
}

/** The token discovery finds now, or null. A file open to others is skipped, as a proxy would be. */
export function discoverBearerToken(env: NodeJS.ProcessEnv, uid?: number): FoundToken | null {
  const fromEnv = env.BEARER_TOKEN?.trim();
  if (fromEnv) return describe(fromEnv, 'BEARER_TOKEN');
  for (const file of bearerTokenFiles(env, uid)) {
    let text: string;
    try {
      if ((fs.statSync(file).mode & 0o077) !== 0) continue;
      text = fs.readFileSync(file, 'utf8').trim();
    } catch {
      continue;
    }
    if (text) return { ...describe(text, file), file };
  }
  return null;
}

function describe(token: string, source: string): FoundToken {
  const claims = jwtClaims(token);
  const exp = typeof claims?.exp === 'number' ? new Date(claims.exp * 1000) : undefined;
  return { token, source, ...(exp ? { expiresAt: exp } : {}), ...(typeof claims?.scope === 'string' ? { scope: claims.scope } : {}) };
}

/** The claims of a JWT, unverified; null for a token that is not a JWT. */
export function jwtClaims(token: string): Record<string, unknown> | null {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as unknown;
    return claims && typeof claims === 'object' ? (claims as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
