/** Typed errors with an actionable message; the CLI prints `message` (+ `hint`) and exits with `exitCode`. */

export class TokenpoolError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Bad user input: a flag, a file, a line. Nothing was written. */
export class InputError extends TokenpoolError {
  constructor(message: string, hint?: string) {
    super(message, hint, EXIT_CODE.input);
  }
}

/**
 * Exit codes of every verb, so that scripts and pilots can tell what went wrong (the table in
 * README.md, "Exit codes"; the agent adds 4, node problems).
 */
export const EXIT_CODE = { unexpected: 1, input: 2, unreachable: 3, notAuthorised: 5, noDatabase: 6 } as const;

/**
 * The database failed us: unreachable, no answer, a server error (exit 3), or one of the more
 * precise cases below.
 */
export class DatabaseError extends TokenpoolError {
  constructor(message: string, hint?: string, exitCode: number = EXIT_CODE.unreachable) {
    super(message, hint, exitCode);
  }
}

/** No HTTP answer at all: the server cannot be reached, or took the connection and sent nothing. */
export class UnreachableError extends DatabaseError {}

/** The credentials were wrong, missing, or lack the role the action needs. */
export class NotAuthorisedError extends DatabaseError {
  constructor(message: string, hint?: string) {
    super(message, hint, EXIT_CODE.notAuthorised);
  }
}

/** The database named by --db does not exist on a server that answered. */
export class NoDatabaseError extends DatabaseError {
  constructor(message: string, hint?: string) {
    super(message, hint, EXIT_CODE.noDatabase);
  }
}

/** The pool's contents contradict what was asked (no such token, wrong state). */
export class StateError extends TokenpoolError {}
