import type { Logger } from 'pino';

/** What always gets a warn line, whatever the access log's settings. */
export type SecurityEvent = 'login_failed' | 'totp_failed' | 'token_reused' | 'client_mismatch' | 'rate_limited' | 'connection_refused';

const MESSAGES: Record<SecurityEvent, string> = {
  login_failed: 'security: login failed (unknown user or wrong password)',
  totp_failed: 'security: login failed (wrong or already used TOTP code)',
  token_reused: 'security: a rotated-away token was presented again: session revoked',
  client_mismatch: 'security: a token bound to one client was presented by another (refused)',
  rate_limited: 'security: login refused, too many waiting for a password check',
  connection_refused: 'security: connection refused at a connection cap',
};

/**
 * Events that cost the sender next to nothing, so they come in floods: the first of a window is
 * logged at once, the rest only counted, and one summary line at the window's end says how many
 * and from where. (A failed login costs the sender a password hash on our side, bounded by
 * auth.maxConcurrentHashes: those are logged one by one.)
 */
const FLOODING: ReadonlySet<SecurityEvent> = new Set(['rate_limited', 'connection_refused', 'client_mismatch']);
/** Peers a summary line names at most. */
const SUMMARY_PEERS = 10;

export interface SecurityLogOptions {
  /** Length of a flood window. Default 1 s. */
  windowMs?: number | undefined;
}

interface Window {
  suppressed: number;
  peers: Set<string>;
  timer: NodeJS.Timeout;
}

/** Security events at warn, each with `event` set (see SecurityEvent) so they can be filtered and alerted on. */
export class SecurityLog {
  private readonly windowMs: number;
  private readonly windows = new Map<SecurityEvent, Window>();

  constructor(
    private readonly log: Logger,
    options: SecurityLogOptions = {},
  ) {
    this.windowMs = options.windowMs ?? 1_000;
  }

  /** `fields` name who and where (user, peer, carrier, session, reqId): never a token, password or code. */
  report(event: SecurityEvent, fields: Record<string, unknown>): void {
    if (!FLOODING.has(event)) {
      this.log.warn({ event, ...fields }, MESSAGES[event]);
      return;
    }
    const open = this.windows.get(event);
    if (open) {
      open.suppressed++;
      if (typeof fields.peer === 'string' && open.peers.size < SUMMARY_PEERS) open.peers.add(fields.peer);
      return;
    }
    this.log.warn({ event, ...fields }, MESSAGES[event]);
    const timer = setTimeout(() => this.summarize(event), this.windowMs);
    timer.unref();
    this.windows.set(event, { suppressed: 0, peers: new Set(), timer });
  }

  /** Write the summaries of open windows now (at shutdown: their timers would not fire). */
  flush(): void {
    for (const event of [...this.windows.keys()]) this.summarize(event);
  }

  private summarize(event: SecurityEvent): void {
    const window = this.windows.get(event);
    if (!window) return;
    clearTimeout(window.timer);
    this.windows.delete(event);
    if (window.suppressed === 0) return;
    this.log.warn(
      { event, suppressed: window.suppressed, peers: [...window.peers], windowMs: this.windowMs },
      `${MESSAGES[event]}: ${window.suppressed} more within ${this.windowMs} ms`,
    );
  }
}
