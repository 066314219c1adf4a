/**
 * Answers shared by everyone watching: the pages and status watchers following one pool all ask
 * again after the same change event, so an answer computed for one of them serves the others that
 * ask while it is computed or within `freshMs` after. A change event for the pool (LiveChannels)
 * ends the sharing at once, so nobody told of a change is handed an answer from before it. However
 * many watch, one pool (and account) costs the database at most one answer per query per `freshMs`.
 */
export class SharedAnswers<T> {
  /** per pool (database and account), per query */
  private readonly answers = new Map<string, Map<string, { value: Promise<T>; until: number }>>();

  constructor(
    private readonly freshMs: number,
    private readonly max = 256,
  ) {}

  get(pool: string, query: string, compute: () => Promise<T>): Promise<T> {
    const now = Date.now();
    let answers = this.answers.get(pool);
    const known = answers?.get(query);
    if (known && known.until > now) return known.value;
    if (!answers) {
      if (this.answers.size >= this.max) this.answers.clear();
      answers = new Map();
      this.answers.set(pool, answers);
    }
    if (answers.size >= this.max) answers.clear();
    // Fresh from when it is answered, not from when it was asked; a failure is not shared later.
    const entry = { value: compute(), until: Number.POSITIVE_INFINITY };
    answers.set(query, entry);
    const mine = answers;
    entry.value.then(
      () => (entry.until = Date.now() + this.freshMs),
      () => mine.get(query) === entry && mine.delete(query),
    );
    return entry.value;
  }

  /** The pool changed: what was computed (or is being computed) before is not handed out again. */
  forget(pool: string): void {
    this.answers.delete(pool);
  }
}
