/**
 * One server's hand-over (spec §11), both sides of it:
 *
 * - as the **issuer**: a handler's `handOver: "<peer>"` becomes `Out-of-band` and `Hand-over`
 *   headers (`ask`), the parent is recorded as handed over (`issued`), and when it ends
 *   (`sessionEnded`, from the Rotor's hook) it goes into the revocation list (`document`) for
 *   15 minutes;
 * - as the **peer**: a hand-over token is checked offline (`admit`: signature, audience, expiry,
 *   the issuer's list as last pulled), the issuers' lists are pulled in the background and the
 *   sessions a listed parent's tokens opened are revoked (`take`).
 *
 * A Rotor holds at most one (`Rotor.useHandOver`); everything it keeps between requests is in the
 * store's catalog (records.ts), so every node of a server on one store answers alike, except the
 * lists last pulled, which each node pulls for itself.
 */
import type { KeyObject } from 'node:crypto';
import { statSync } from 'node:fs';
import { RotorError } from '../errors.ts';
import type { DispatchContext } from '../server/context.ts';
import { claimsExpireAt } from '../session/token.ts';
import type { SessionState } from '../session/types.ts';
import { eachAtOnce, endSession } from '../quotas/lots.ts';
import { changeRecord, RecordConflict } from '../store/records.ts';
import type { Header } from '../wire/index.ts';
import { readDocument, signedDocument } from './document.ts';
import { readHandOverKeys, type HandOverKeys } from './keys.ts';
import type { Peer, Peers } from './peers.ts';
import { RevocationPuller, type Fetched } from './puller.ts';
import { CHILD, childId, ENDED, ISSUED, LIST, LISTED_MS, NONCE, nonceId, type ChildRecord, type EndedRecord, type ListRecord, type NonceRecord } from './records.ts';
import { handOverAtRest, handOverFromRest } from './rest.ts';
import { MAX_LIFETIME_SECONDS, mintHandOver, parseHandOver, signedBy, type HandOverClaims } from './token.ts';

/** `peers.pullSeconds`' default: how often each issuer's revocation list is pulled. */
export const DEFAULT_PULL_SECONDS = 10;
/** How far a token's `issued` may run ahead of this server's clock. */
const CLOCK_SKEW_MS = 60_000;

export interface HandOverOptions {
  peers: Peers;
  keys: HandOverKeys;
  /** The file `keys` was read from: re-read on the sweep timer when it changes (`rotor keys add --hand-over`), so a new key signs without a restart. */
  keyFile?: string | undefined;
  /** Seconds between pulls of each issuer's revocation list (`peers.pullSeconds`, default 10). */
  pullSeconds?: number | undefined;
  /** How long one pull may take (default: the pull interval, at most 5 s). */
  fetchTimeoutMs?: number | undefined;
  /** Between sweeps of the catalog records that can no longer matter (default: the server's `session.purgeIntervalMs`). */
  sweepIntervalMs?: number | undefined;
}

interface PulledList {
  readonly issued: number;
  readonly revoked: ReadonlySet<string>;
}

const refuse = (code: 'ROTOR_E_HANDOVER_INVALID' | 'ROTOR_E_HANDOVER_EXPIRED' | 'ROTOR_E_HANDOVER_AUDIENCE' | 'ROTOR_E_HANDOVER_REVOKED', why?: string) => new RotorError(code, why);

/** What tells a changed key file: inode, size, mtime; undefined for one that is not there. */
function fileStamp(file: string): string | undefined {
  try {
    const { ino, size, mtimeMs } = statSync(file);
    return `${ino}:${size}:${mtimeMs}`;
  } catch {
    return undefined;
  }
}

export class HandOver {
  readonly self: string;
  readonly peers: Peers;
  private currentKeys: HandOverKeys;
  private readonly keyFile: string | undefined;
  private keyFileStamp: string | undefined;
  private context: DispatchContext | undefined;
  private readonly lists = new Map<string, PulledList>();
  /** When each issuer's list was last taken (or this server started): past LISTED_MS, its children can no longer be vouched for. */
  private readonly takenAt = new Map<string, number>();
  /** The newest `issued` of each issuer's lists ever taken, also from before a restart: an older list is refused. */
  private readonly newestIssued = new Map<string, number>();
  private restored: Promise<void> | undefined;
  /** Child records already revoked here, by id, at the rev they were revoked at. */
  private readonly handled = new Map<string, number>();
  private puller: RevocationPuller | undefined;
  private readonly pullMs: number;
  private readonly fetchTimeoutMs: number;
  private readonly sweepIntervalMs: number | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(options: HandOverOptions) {
    this.self = options.peers.self;
    this.peers = options.peers;
    this.currentKeys = options.keys;
    this.keyFile = options.keyFile;
    this.keyFileStamp = this.keyFile === undefined ? undefined : fileStamp(this.keyFile);
    this.pullMs = (options.pullSeconds ?? DEFAULT_PULL_SECONDS) * 1000;
    this.fetchTimeoutMs = options.fetchTimeoutMs ?? Math.min(this.pullMs, 5_000);
    this.sweepIntervalMs = options.sweepIntervalMs;
  }

  /** This server's hand-over keys: the first signs. */
  get keys(): HandOverKeys {
    return this.currentKeys;
  }

  /**
   * Re-read the key file when its inode, size or mtime changed; true when the keys were replaced.
   * A file that does not read leaves the keys as they were (and throws, saying why).
   */
  reloadKeys(): boolean {
    if (this.keyFile === undefined) return false;
    const stamp = fileStamp(this.keyFile);
    if (stamp === this.keyFileStamp) return false;
    const keys = readHandOverKeys(this.keyFile);
    this.keyFileStamp = stamp;
    const changed = keys.signing.id !== this.currentKeys.signing.id || keys.all.map((key) => key.id).join() !== this.currentKeys.all.map((key) => key.id).join();
    this.currentKeys = keys;
    return changed;
  }

  /** The server this hand-over works for; by Rotor.useHandOver, once. */
  attach(context: DispatchContext): void {
    if (this.context && this.context !== context) throw new Error('a HandOver belongs to one Rotor');
    this.context = context;
  }

  private get ctx(): DispatchContext {
    if (!this.context) throw new Error('HandOver used before Rotor.useHandOver');
    return this.context;
  }

  /** Resolves once the lists taken before a restart are read back (start() begins it). */
  whenRestored(): Promise<void> {
    return this.restored ?? Promise.resolve();
  }

  /** Start pulling the issuers' lists and sweeping the catalog, in the background. */
  start(): void {
    this.restored ??= this.restoreLists().catch((err: unknown) => this.ctx.log.warn({ err }, 'the revocation lists taken before the restart were not read back'));
    this.puller ??= new RevocationPuller(() => this.peers.byName.values(), this.pullMs, this.fetchTimeoutMs, this.ctx.log, (peer, fetched) => this.take(peer, fetched));
    this.puller.start();
    if (!this.sweepTimer) {
      const every = this.sweepIntervalMs ?? this.ctx.config.session.purgeIntervalMs;
      this.sweepTimer = setInterval(() => {
        try {
          if (this.reloadKeys()) this.ctx.log.info({ signing: this.keys.signing.id, keys: this.keys.all.map((key) => key.id) }, 'hand-over keys re-read');
        } catch (err) {
          this.ctx.log.warn({ err }, 'hand-over keys file not re-read; the keys stay as they were');
        }
        this.sweep(this.ctx.now()).catch((err: unknown) => this.ctx.log.warn({ err }, 'sweeping hand-over records failed'));
      }, every).unref();
    }
  }

  async stop(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    const puller = this.puller;
    this.puller = undefined;
    await puller?.stop();
  }

  // --- the issuer ---

  /**
   * The headers of a reply that hands `parent` over to `peerName`: `Out-of-band` (the peer's
   * address) and `Hand-over` (a token for it, living 15 minutes at most and never past the
   * parent's next token, the one this reply carries). Throws a plain Error for a peer not in the
   * peers file: a handler bug.
   */
  ask(parent: SessionState, peerName: string, now: number): Header[] {
    const peer = this.peers.byName.get(peerName);
    if (!peer) throw new Error(`hand-over to ${JSON.stringify(peerName)}: no such peer in the peers file`);
    if (parent.user === '') throw new Error('hand-over of a session without a user (note 004’s token API)');
    const issued = Math.floor(now / 1000);
    const parentExpires = claimsExpireAt({ issued, ttlMinutes: this.ctx.config.session.tokenTtlMinutes });
    const expires = Math.min(issued + MAX_LIFETIME_SECONDS, parentExpires === null ? Infinity : parentExpires / 1000);
    const claims: HandOverClaims = { issuer: this.self, audience: peer.name, parent: parent.id, user: parent.user, issued, expires, nonce: this.ctx.random(16).toString('base64url') };
    const signing = this.keys.signing;
    return [
      ['Out-of-band', peer.address],
      ['Hand-over', mintHandOver(signing.id, signing.privateKey, claims)],
    ];
  }

  /** Record `parent` as handed over (before the reply that carries the token is stored): its end will be listed. */
  async issued(parent: string, now: number): Promise<void> {
    await this.ctx.store.createRecords(ISSUED, [{ id: parent, value: { at: now } }]);
  }

  /** A session ended: if it was ever handed over, it goes into the revocation list. Never throws (logged). */
  async sessionEnded(ended: SessionState, now: number): Promise<void> {
    try {
      const store = this.ctx.store;
      if (!(await store.loadRecord(ISSUED, ended.id))) return;
      await store.createRecords<EndedRecord>(ENDED, [{ id: ended.id, value: { endedAt: ended.revoked?.at ?? now } }]);
      await store.removeRecord(ISSUED, ended.id);
    } catch (err) {
      // The sweep finds it later (a revoked session with an issued record).
      this.ctx.log.warn({ err, session: ended.id }, 'listing an ended session that was handed over failed');
    }
  }

  /** The revocation list as `GET /rotor/revocations` answers it: the JSON body and its Signature. */
  async document(now: number): Promise<{ body: Buffer; signature: string }> {
    const ended = await this.ctx.store.listRecords<EndedRecord>(ENDED);
    const revoked = ended.filter((entry) => entry.value.endedAt > now - LISTED_MS).map((entry) => entry.id);
    return signedDocument({ issuer: this.self, issued: Math.floor(now / 1000), revoked, publicKeys: this.keys.publicKeys() }, this.keys);
  }

  /** The copy of a reply a store may keep: its Hand-over without the signature (spec §2: no usable token at rest). */
  atRest(kept: Buffer): Buffer {
    return handOverAtRest(kept);
  }

  /** A kept reply as first sent: its Hand-over signed again (Ed25519 is deterministic: the same bytes). */
  fromRest(kept: Buffer, session: SessionState): Buffer {
    return handOverFromRest(kept, session, this.self, this.keys);
  }

  // --- the peer ---

  /** A hand-over token's claims once it is genuine, for this server, alive and its parent not listed; throws the refusal. */
  admit(token: string, home: string | undefined, now: number): HandOverClaims {
    const parsed = parseHandOver(token);
    const { claims } = parsed;
    if (home !== claims.issuer) throw refuse('ROTOR_E_HANDOVER_INVALID', 'Home is not the token’s issuer');
    const key: KeyObject | undefined = this.peers.byName.get(claims.issuer)?.publicKeys.get(parsed.keyId);
    if (!key) throw refuse('ROTOR_E_HANDOVER_INVALID', 'an issuer or key this server does not know');
    if (!signedBy(parsed, key)) throw refuse('ROTOR_E_HANDOVER_INVALID', 'bad signature');
    if (claims.audience !== this.self) throw refuse('ROTOR_E_HANDOVER_AUDIENCE');
    if (claims.issued * 1000 > now + CLOCK_SKEW_MS) throw refuse('ROTOR_E_HANDOVER_INVALID', 'issued in the future');
    if (now >= claims.expires * 1000) throw refuse('ROTOR_E_HANDOVER_EXPIRED');
    if (this.lists.get(claims.issuer)?.revoked.has(claims.parent)) throw refuse('ROTOR_E_HANDOVER_REVOKED');
    return claims;
  }

  /** Spend a token: false when it was spent before (on any node of this store). */
  spend(claims: HandOverClaims): Promise<boolean> {
    return this.ctx.store.createRecords<NonceRecord>(NONCE, [{ id: nonceId(claims.issuer, claims.nonce), value: { expiresAt: claims.expires * 1000 } }]);
  }

  /** Give a spent token back (its login failed after spending it). */
  async unspend(claims: HandOverClaims): Promise<void> {
    await this.ctx.store.removeRecord(NONCE, nonceId(claims.issuer, claims.nonce));
  }

  /** Note `child` as opened by `claims`' parent, so that the parent's end reaches it. */
  async linkChild(claims: HandOverClaims, child: string, now: number): Promise<void> {
    const link = (record: ChildRecord | undefined): ChildRecord => ({ children: [...(record?.children ?? []), child], at: now });
    try {
      await changeRecord(this.ctx.store, CHILD, childId(claims.issuer, claims.parent), link);
    } catch (err) {
      if (err instanceof RecordConflict) throw new RotorError('ROTOR_E_CONFLICT');
      throw err;
    }
  }

  /** One issuer's list as pulled: checked, kept (in the store too, as signed), its keys trusted from now on, and the sessions its listed parents opened revoked. */
  async take(peer: Peer, fetched: Fetched): Promise<void> {
    await this.restored;
    const now = this.ctx.now();
    const { document, publicKeys } = readDocument(peer.name, peer.publicKeys, fetched.body, fetched.signature, now, Math.max(this.lists.get(peer.name)?.issued ?? 0, this.newestIssued.get(peer.name) ?? 0));
    const revoked = new Set(document.revoked);
    this.lists.set(peer.name, { issued: document.issued, revoked });
    this.takenAt.set(peer.name, now);
    this.newestIssued.set(peer.name, document.issued);
    peer.publicKeys = publicKeys;
    await this.keepList(peer.name, { body: fetched.body.toString('base64'), signature: fetched.signature ?? '', issued: document.issued, takenAt: now });
    // Every listed parent, every pull: a login that passed its check just before this list came
    // links its child just after, and the next pull finds it (the parent stays listed 15 minutes).
    await eachAtOnce(document.revoked, (parent) => this.endChildren(childId(peer.name, parent), now));
    for (const id of this.handled.keys()) if (id.startsWith(`${peer.name}:`) && !revoked.has(id.slice(peer.name.length + 1))) this.handled.delete(id);
  }

  private async keepList(issuer: string, value: ListRecord): Promise<void> {
    try {
      // A newer list kept meanwhile (by another node of this store) stays.
      await changeRecord<ListRecord>(this.ctx.store, LIST, issuer, (kept) => (kept && kept.issued > value.issued ? undefined : value), 4);
    } catch (err) {
      this.ctx.log.warn({ err, issuer }, 'the revocation list taken was not kept in the store; a restart before the next pull starts without it');
    }
  }

  /**
   * After a restart: each issuer's list taken last, checked again against the keys of the peers
   * file (never trusted from the store alone). One signed by a key learned since cannot be
   * checked: the next pull brings it; its `issued` still refuses an older list.
   */
  private async restoreLists(): Promise<void> {
    const now = this.ctx.now();
    for (const peer of this.peers.byName.values()) this.takenAt.set(peer.name, now);
    for (const { id, value } of await this.ctx.store.listRecords<ListRecord>(LIST)) {
      const peer = this.peers.byName.get(id);
      if (!peer) continue;
      this.newestIssued.set(id, Math.max(this.newestIssued.get(id) ?? 0, value.issued));
      if (this.lists.has(id)) continue;
      try {
        const { document, publicKeys } = readDocument(id, peer.publicKeys, Buffer.from(value.body, 'base64'), value.signature, now, 0);
        this.lists.set(id, { issued: document.issued, revoked: new Set(document.revoked) });
        peer.publicKeys = publicKeys;
      } catch (err) {
        this.ctx.log.warn({ err, issuer: id }, "the revocation list taken before the restart does not check against the peers file's keys: waiting for the next pull");
      }
    }
  }

  /**
   * An issuer whose list has not been taken for LISTED_MS: a parent of its that ended before that
   * may have dropped off its list unseen, so the sessions its hand-overs opened here are ended.
   */
  private async endUnvouched(now: number): Promise<void> {
    const stale = [...this.peers.byName.values()].filter((peer) => peer.publicKeys.size > 0 && now - (this.takenAt.get(peer.name) ?? now) >= LISTED_MS).map((peer) => peer.name);
    if (stale.length === 0) return;
    const children = await this.ctx.store.listRecords<ChildRecord>(CHILD);
    for (const issuer of stale) {
      const mine = children.filter((entry) => entry.id.startsWith(`${issuer}:`));
      if (mine.length > 0) this.ctx.log.warn({ issuer, parents: mine.length }, "no revocation list from this issuer for 15 minutes: the sessions its hand-overs opened are ended (whether their parents live can no longer be told)");
      await eachAtOnce(mine, (entry) => this.endChildren(entry.id, now));
    }
  }

  private async endChildren(id: string, now: number): Promise<void> {
    const entry = await this.ctx.store.loadRecord<ChildRecord>(CHILD, id);
    if (!entry || this.handled.get(id) === entry.rev) return;
    const ctx = this.ctx;
    await eachAtOnce(entry.value.children, async (child) => {
      const { state, revoked } = await endSession(ctx.store, child, now, ctx.revokedRetentionMs);
      if (revoked && state) {
        ctx.log.info({ session: child, parent: id }, 'hand-over session revoked: its parent ended');
        await ctx.sessionEnded(state, now);
      }
    });
    this.handled.set(id, entry.rev);
  }

  /**
   * Forget what can no longer matter: ended parents past their 15 minutes, spent tokens past
   * their expiry, children records whose sessions have all ended (and none added for 15 minutes),
   * issued records of sessions that are gone — and list a revoked one whose end was never listed.
   */
  async sweep(now: number): Promise<void> {
    const { store } = this.ctx;
    await this.endUnvouched(now);
    const drop = (kind: typeof ENDED | typeof NONCE | typeof CHILD | typeof ISSUED) => (id: string) => store.removeRecord(kind, id);
    const ended = await store.listRecords<EndedRecord>(ENDED);
    await eachAtOnce(ended.filter((e) => e.value.endedAt <= now - LISTED_MS).map((e) => e.id), drop(ENDED));
    const nonces = await store.listRecords<NonceRecord>(NONCE);
    await eachAtOnce(nonces.filter((e) => e.value.expiresAt <= now).map((e) => e.id), drop(NONCE));
    const children = await store.listRecords<ChildRecord>(CHILD);
    await eachAtOnce(children.filter((e) => e.value.at <= now - LISTED_MS), async (entry) => {
      const states = await Promise.all(entry.value.children.map((child) => store.loadSession(child)));
      if (states.every((state) => !state || state.revoked)) await store.removeRecord(CHILD, entry.id);
    });
    const issued = await store.listRecords(ISSUED);
    await eachAtOnce(issued, async ({ id }) => {
      const state = await store.loadSession(id);
      if (state?.revoked) await this.sessionEnded(state, now);
      else if (!state || (state.expiresAt !== null && state.expiresAt <= now)) await store.removeRecord(ISSUED, id);
    });
  }
}
