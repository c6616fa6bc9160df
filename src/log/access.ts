import type { Logger } from 'pino';
import { pooledRandom } from '../session/random.ts';

/** config.observability's two access-log settings (spelled out here: the config may import the log, never the other way). */
export interface AccessLogSettings {
  accessLog: boolean;
  /** 0…1: the fraction of exchanges that get a line. */
  accessLogSample: number;
}

/**
 * One access-log line. Only these fields, each set by the dispatcher from what it decided —
 * never from the frame's headers, so no token, password or TOTP code can get in.
 */
export interface AccessEntry {
  /** A short random id of this frame, in the log only (the wire has none): it ties the access line to any security line about the same frame. */
  reqId: string;
  carrier: string | undefined;
  peer: string | undefined;
  /** login, token, resume, ack, logout, delete, meta, task, app, ping, unrouted. */
  op: string;
  status: number;
  /** The Error code of the reply, if it has one. */
  code: string | undefined;
  /** A lost reply sent again (not redone). */
  replay: boolean;
  /** From the frame's arrival at the dispatcher to its reply. */
  durationUs: number;
  /** Session ids are not secret (tokens are): it is logged whole. */
  session: string | undefined;
  user: string | undefined;
}

const requestRandom = pooledRandom();

/** 8 characters, 48 random bits: unique enough to find one frame's lines in a day of logs. */
export function newRequestId(): string {
  return requestRandom(6).toString('base64url');
}

/** The per-exchange line at info level: on by default, `accessLog: false` turns it off, `accessLogSample` keeps that fraction. */
export class AccessLog {
  private readonly on: boolean;
  private readonly sample: number;

  constructor(
    private readonly log: Logger,
    settings: AccessLogSettings,
    /** Where the sampling draws from (tests pass a fixed sequence). */
    private readonly chance: () => number = Math.random,
  ) {
    this.on = settings.accessLog;
    this.sample = settings.accessLogSample;
  }

  /** Whether lines may be written at all (checked per frame: the level can be changed at run time). */
  get enabled(): boolean {
    return this.on && this.sample > 0 && this.log.isLevelEnabled('info');
  }

  /** Whether this exchange gets a line. */
  picks(): boolean {
    return this.enabled && (this.sample >= 1 || this.chance() < this.sample);
  }

  write(entry: AccessEntry): void {
    this.log.info(entry, 'exchange');
  }
}
