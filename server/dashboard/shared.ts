/**
 * Summaries shared by everyone watching: the pages open on one pool all re-read the summary after the
 * same change event, so an answer computed for one of them serves the others that ask within
 * `freshMs` or while it is being computed. However many pages are open, one pool (and account) costs
 * the database at most one summary per `freshMs`.
 */
export class SharedAnswers<T> {
  private readonly answers = new Map<string, { value: Promise<T>; until: number }>();

  constructor(
    private readonly freshMs: number,
    private readonly max = 256,
  ) {}

  get(key: string, compute: () => Promise<T>): Promise<T> {
    const now = Date.now();
    const known = this.answers.get(key);
    if (known && known.until > now) return known.value;
    if (this.answers.size >= this.max) this.answers.clear();
    // Fresh from when it is answered, not from when it was asked; a failure is not shared later.
    const entry = { value: compute(), until: Number.POSITIVE_INFINITY };
    this.answers.set(key, entry);
    entry.value.then(
      () => (entry.until = Date.now() + this.freshMs),
      () => this.answers.get(key) === entry && this.answers.delete(key),
    );
    return entry.value;
  }
}
