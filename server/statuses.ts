/**
 * Token statuses in life order. Kept free of imports so that the dashboard's browser bundle can use
 * them without the token schema (zod); server/token.ts re-exports them.
 */
export const TOKEN_STATUSES = [
  'waiting', // created but held back (e.g. a later step whose inputs are not ready)
  'staging', // inputs on tape, being brought online; not claimable
  'todo', // claimable
  'locked', // claimed, not started yet
  'downloading',
  'running',
  'uploading',
  'done',
  'error',
] as const;
export type TokenStatus = (typeof TOKEN_STATUSES)[number];
