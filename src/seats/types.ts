/** A seat pool as the operator defined it (`rotor pool add`), kept in the store like users. */
export interface PoolRecord {
  /** 1–64 of A–Z a–z 0–9 _ . - */
  readonly name: string;
  readonly seats: number;
  /** The most seats one user may hold at once; 0: no cap. */
  readonly perUser: number;
  /** A holder or waiter silent this long loses its seat or place. */
  readonly heartbeatMs: number;
  /** The longest one session may hold a seat; null: no limit. */
  readonly maxHoldMs: number | null;
  /** The most waiters the pool takes, and the most of them from one user. */
  readonly queueLimit: number;
  readonly perUserQueueLimit: number;
  readonly createdAt: number;
}

/** A session holding a seat, or waiting for one. */
export interface SeatEntry {
  readonly session: string;
  readonly user: string;
  /** When it took the seat, or joined the line. */
  readonly since: number;
  /** Its last sign of life as this record knows it (the session's own exchanges may be newer). */
  readonly seenAt: number;
}

/** Who holds a pool's seats and who waits: one record, changed only by compare-and-set. */
export interface PoolSeats {
  readonly pool: string;
  /** Bumped by the store on every write; 0 for a pool nobody has asked yet. */
  readonly rev: number;
  readonly holders: readonly SeatEntry[];
  /** Oldest first. */
  readonly queue: readonly SeatEntry[];
  /** Holds that ended and how long they lasted in all: the Wait-for estimate. */
  readonly holdsEnded: number;
  readonly heldMsTotal: number;
}
