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
    super(message, hint, 2);
  }
}

/** The database could not be reached or refused us. */
export class DatabaseError extends TokenpoolError {
  constructor(message: string, hint?: string) {
    super(message, hint, 3);
  }
}

/** The pool's contents contradict what was asked (no such token, wrong state). */
export class StateError extends TokenpoolError {}
