/** Keeps secrets out of anything we print: URLs with user info, passwords in free text. */

const USERINFO_IN_URL = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/@:]+)(:[^\s/@]*)?@/gi;

/** `http://agent:s3cret@host/db` → `http://agent:***@host/db`. */
export function redactUrl(url: string): string {
  return url
    .replace(USERINFO_IN_URL, (_m, scheme: string, user: string, pass?: string) => (pass ? `${scheme}${user}:***@` : `${scheme}${user}@`))
    .replace(AUTHZ_IN_QUERY, '$1***');
}

/** A macaroon in a URL (`…?authz=<macaroon>`, as dCache and StageIT's download lists use them). */
const AUTHZ_IN_QUERY = /([?&](?:authz|access_token)=)[^&#\s]+/gi;

/** Redacts URL user info and every known secret value in a string. */
export function redactText(text: string, secrets: Iterable<string> = knownSecrets): string {
  let out = redactUrl(text);
  for (const secret of secrets) {
    if (secret.length >= 4) out = out.split(secret).join('***');
  }
  return out;
}

/** Secrets registered at run time (passwords read from files or env) so that any output can scrub them. */
const knownSecrets = new Set<string>();

export function registerSecret(secret: string | undefined): void {
  if (secret) knownSecrets.add(secret);
  const enc = secret ? encodeURIComponent(secret) : undefined;
  if (enc && enc !== secret) knownSecrets.add(enc);
}

export function secrets(): Iterable<string> {
  return knownSecrets;
}
