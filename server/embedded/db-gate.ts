/**
 * Creating or deleting a database apart from everything else on it. PouchDB leaves a request
 * unanswered for ever when the database under it is deleted or created at the same moment (its open
 * never settles), so a PUT or DELETE of a database waits for the requests on that database to end
 * and holds back new ones until it has its answer. A long request (a continuous changes feed) is
 * waited for at most DRAIN_MS: the feed's engine calls are short and rarely meet the change.
 */
const DRAIN_MS = 5_000;

interface DbState {
  active: number;
  /** Settles when the create or delete under way (and those queued with it) have their answers. */
  exclusive: Promise<void> | null;
  /** Wakes the create or delete waiting for `active` to reach 0. */
  drained: (() => void) | null;
}

export class DbGate {
  private readonly dbs = new Map<string, DbState>();

  /** Admits a request on `db`; call the returned function once its answer has been sent or abandoned. */
  async enter(db: string): Promise<() => void> {
    const state = await this.turn(db, (s) => s.active++);
    let left = false;
    return () => {
      if (left) return;
      left = true;
      state.active--;
      if (state.active === 0) state.drained?.();
      this.prune(db, state);
    };
  }

  /** Runs `work` (resolving once its answer has been sent or abandoned) alone on `db`. */
  async alone(db: string, work: () => Promise<void>): Promise<void> {
    let finish!: () => void;
    const state = await this.turn(db, (s) => (s.exclusive = new Promise<void>((resolve) => (finish = resolve))));
    try {
      if (state.active > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, DRAIN_MS);
          state.drained = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        state.drained = null;
      }
      await work();
    } finally {
      state.exclusive = null;
      finish();
      this.prune(db, state);
    }
  }

  /**
   * Waits until no create or delete is under way on `db`, then calls `take` on its state in the same
   * tick as that check: between two ticks another request may end and prune the state, or a create
   * or delete may begin.
   */
  private async turn(db: string, take: (state: DbState) => unknown): Promise<DbState> {
    let state = this.state(db);
    while (state.exclusive) {
      await state.exclusive;
      state = this.state(db);
    }
    take(state);
    return state;
  }

  private state(db: string): DbState {
    let state = this.dbs.get(db);
    if (!state) {
      state = { active: 0, exclusive: null, drained: null };
      this.dbs.set(db, state);
    }
    return state;
  }

  private prune(db: string, state: DbState): void {
    if (state.active === 0 && !state.exclusive && this.dbs.get(db) === state) this.dbs.delete(db);
  }
}
