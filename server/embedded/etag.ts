/**
 * Entity tags for the front's stored view answers. An answer is memoised until the next change of
 * its view (stored-views.ts), so its JSON text and tag are computed once per memoised answer and a
 * watcher that asks again with If-None-Match gets a 304: no JSON is encoded, nothing is sent.
 */
import { createHash } from 'node:crypto';
import type http from 'node:http';

export interface Tagged {
  text: string;
  etag: string;
}

const tagged = new WeakMap<object, Tagged>();

export function taggedAnswer(body: object): Tagged {
  let t = tagged.get(body);
  if (!t) {
    const text = JSON.stringify(body) + '\n';
    t = { text, etag: `"${createHash('sha1').update(text).digest('base64url')}"` };
    tagged.set(body, t);
  }
  return t;
}

/** Whether the request's If-None-Match names this tag (a list, or `*`). */
export function notModified(req: http.IncomingMessage, etag: string): boolean {
  const given = req.headers['if-none-match'];
  if (!given) return false;
  return given.split(',').some((t) => {
    const tag = t.trim().replace(/^W\//, '');
    return tag === '*' || tag === etag;
  });
}
