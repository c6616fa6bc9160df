/**
 * The shared store: Redis through ioredis, for several rotor nodes behind one name.
 *
 * Keys (Redis-Cluster compatible: every script and transaction touches one hash slot):
 *   <p>:{<sid>}:s          hash  r = rev, d = the session as JSON (prev as its hash only),
 *                                b = the reply bytes kept for replay; PEXPIREAT = expiresAt
 *   <p>:{<sid>}:o          hash  the session's outbox: task id → task JSON, released by a commit
 *                                and not yet in the task stream
 *   <p>:{tasks}:q          stream of released task ids, consumer group `rotor`
 *   <p>:{tasks}:t:<tid>    hash  d = the task as released (JSON), st status, w worker,
 *                                a attempt (claims so far), l leaseUntil, f finishedAt, x expiresAt,
 *                                res result bytes, ct contentType, err error, e its stream entry;
 *                                PEXPIREAT once finished
 *   <p>:{tasks}:leases     zset  running task id by leaseUntil
 *   <p>:{tasks}:pending    zset  "<rev>:<sid>" of commits whose outbox may not be relayed yet
 *   <p>:{users}:u          hash  name → user JSON (without lastTotpStep)
 *   <p>:{users}:totp       hash  name → last accepted TOTP step
 *   <p>:{pools}:p          hash  name → seat pool JSON
 *   <p>:{pool:<name>}:seats hash r = rev, d = who holds the pool's seats and who waits (JSON),
 *                                changed only by the SEATS compare-and-set script
 *   <p>:{logins}:f:<key>   hash  c = login failures counted, t = the last one's time, x = expiresAt
 *                                (by the callers' clock); PEXPIRE = the quiet window (clean-up only)
 *   <p>:{catalog}:<kind>   hash  id → the catalog record's value (JSON): quota templates, lots,
 *                                access codes, a user's codes (spec §10)
 *   <p>:{catalog}:<kind>:r hash  id → the record's rev; both hashes changed together, by scripts
 *                                (RECORD, CREATE_RECORDS) or one MULTI
 *
 * commitSession is one Lua script on the session's slot: the rev compare, the write, its TTL
 * and the released tasks into the session's outbox, all or nothing. The outbox is then relayed
 * into the task stream (a script on the tasks slot that adds each task once, however often it
 * runs). A node that dies between the two leaves its commit in `pending`, noted before the
 * commit; any node's claimTasks relays such leftovers once they are older than
 * RELAY_GRACE_MS. So a released task is never lost and never queued twice, and no script
 * spans two slots — which one script writing the session and the stream would.
 *
 * Claims are one script on the tasks slot: XREADGROUP for new tasks, then tasks whose lease
 * (the `leases` zset, by the `now` the caller passes) ran out, moved to the new worker's
 * pending list with XCLAIM. Every claim bumps the task's attempt (HINCRBY), and finishTask's
 * script stores an outcome only if worker and attempt are still the current claim's: a stale
 * claim (its lease ran out, someone claimed again) cannot overwrite a newer one. A task stays in
 * the stream's pending list until finishTask acks and deletes it, so a node that dies mid-task
 * only delays it.
 *
 * Availability: no offline queue, no retries, a timeout on every command: while Redis is away
 * every call rejects with ROTOR_E_UNAVAILABLE at once (or after commandTimeoutMs if it hangs),
 * and ioredis reconnects by itself in the background.
 *
 * Redis Cluster (`redis-cluster://h1:p1,h2:p2,…`, an ioredis Cluster): the same keys and scripts,
 * each routed to the master of its slot. A session's keys live on the master of its id's slot;
 * {tasks}, {users}, {pools}, {logins}, {catalog} and each {pool:<name>} are one slot each, so
 * one master each (where the bottleneck goes: docs/scale.md). What walks keys walks every
 * master: listSessions SCANs each (and refuses while a slot has no master). The task stream and
 * its consumer group are one key, on one master, as on one server. While one master is down
 * (until its replica is promoted) calls on its slots fail with ROTOR_E_UNAVAILABLE within
 * commandTimeoutMs; the rest go on.
 *
 * The safe mode (`waitReplicas`, `?wait=1`; the default on a cluster): every write is followed
 * by WAIT on its master's connection (redis-cluster.ts), and resolves only once that many
 * replicas have it; if they do not within waitTimeoutMs the call rejects with
 * ROTOR_E_UNAVAILABLE (the write stands on the master, as after a lost reply). Without it, Redis
 * replication being asynchronous, a master dying loses what it acknowledged but had not yet
 * sent to its replica: rotations (the client then holds a token the store never saw),
 * revocations, claims and outcomes of tasks (a task could run twice).
 */
import { Cluster, Redis } from 'ioredis';
import type { PoolRecord, PoolSeats } from '../seats/types.ts';
import type { SessionState } from '../session/types.ts';
import { sessionWith } from '../session/state.ts';
import { byId, repeatsId, storeCall, unavailable } from './records.ts';
import { keySlot, parseClusterUrl, ReplicaWaits, takeWaitParams } from './redis-cluster.ts';
import type { CatalogEntry, CatalogKind, LoginFailures, Store, TaskClaim, TaskOutcome, TaskRecord, TaskStatus, UserRecord } from './types.ts';

export interface RedisStoreOptions {
  /** First part of every key (default `rotor`): several deployments can share one Redis. */
  prefix?: string | undefined;
  /** A command without an answer for this long fails with ROTOR_E_UNAVAILABLE. Default 2000. */
  commandTimeoutMs?: number | undefined;
  /** Connecting (at open and on every reconnect) gives up after this long. Default 2000. */
  connectTimeoutMs?: number | undefined;
  /** purgeExpired drops task-stream consumers (worker ids) idle this long and holding nothing. Default 1 h. */
  consumerIdleMs?: number | undefined;
  /**
   * The safe mode: every write resolves only once this many replicas of its master have it
   * (WAIT). Default: `?wait=` of the URL, else 1 on a Redis Cluster, 0 on one server.
   */
  waitReplicas?: number | undefined;
  /** How long a write waits for its replicas before it rejects with ROTOR_E_UNAVAILABLE. Default: `?waitTimeoutMs=`, else 500; below commandTimeoutMs. */
  waitTimeoutMs?: number | undefined;
}

const GROUP = 'rotor';
/** A commit's outbox left unrelayed this long is relayed by whichever node claims next. */
export const RELAY_GRACE_MS = 5_000;
/** Leftover outboxes relayed per claim, at most. */
const RELAY_BATCH = 32;
/** Keys listSessions asks SCAN for per step. */
const LIST_BATCH = 1000;
const DEFAULT_WAIT_TIMEOUT_MS = 500;

/** KEYS: session, outbox. ARGV: expected rev ('' = must not exist), new rev, JSON, has reply, reply, expiresAt ('' = none), then task id / task JSON pairs. */
const COMMIT = `
local cur = redis.call('HGET', KEYS[1], 'r')
if ARGV[1] == '' then
  if cur then return 0 end
elseif cur ~= ARGV[1] then
  return 0
end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], 'r', ARGV[2], 'd', ARGV[3], 'b', ARGV[5])
else
  redis.call('HSET', KEYS[1], 'r', ARGV[2], 'd', ARGV[3])
  redis.call('HDEL', KEYS[1], 'b')
end
if ARGV[6] == '' then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('PEXPIREAT', KEYS[1], ARGV[6])
end
for i = 7, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
return 1`;

/** KEYS: stream, then one task record per task. ARGV: task id / task JSON pairs. Adds each task not yet known. */
const RELAY = `
local added = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    local tid = ARGV[2 * i - 3]
    local entry = redis.call('XADD', KEYS[1], '*', 't', tid)
    redis.call('HSET', KEYS[i], 'd', ARGV[2 * i - 2], 'st', 'released', 'e', entry)
    added = added + 1
  end
end
return added`;

/**
 * KEYS: stream, leases, pending. ARGV: group, worker, max, now, leaseUntil, task key prefix,
 * relay-before. Returns the claimed records (HGETALL each) and leftover commits to relay.
 */
const CLAIM = `
local group, worker, max, prefix = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[6]
redis.pcall('XGROUP', 'CREATE', KEYS[1], group, '0', 'MKSTREAM')
local claimed = {}
local function take(tid)
  local key = prefix .. tid
  redis.call('HSET', key, 'st', 'running', 'w', worker, 'l', ARGV[5])
  redis.call('HINCRBY', key, 'a', 1)
  redis.call('ZADD', KEYS[2], ARGV[5], tid)
  claimed[#claimed + 1] = redis.call('HGETALL', key)
end
if max > 0 then
  local read = redis.call('XREADGROUP', 'GROUP', group, worker, 'COUNT', max, 'STREAMS', KEYS[1], '>')
  if read then
    for _, entry in ipairs(read[1][2]) do
      local tid = entry[2][2]
      if redis.call('HGET', prefix .. tid, 'st') == 'released' then
        take(tid)
      else
        redis.call('XACK', KEYS[1], group, entry[1])
        redis.call('XDEL', KEYS[1], entry[1])
      end
    end
  end
end
if #claimed < max then
  local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[4], 'LIMIT', 0, max - #claimed)
  for _, tid in ipairs(expired) do
    local key = prefix .. tid
    local entry = redis.call('HGET', key, 'e')
    if entry and redis.call('HGET', key, 'st') == 'running' then
      redis.call('XCLAIM', KEYS[1], group, worker, 0, entry, 'JUSTID')
      take(tid)
    else
      redis.call('ZREM', KEYS[2], tid)
    end
  end
end
return {claimed, redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[7], 'LIMIT', 0, ${RELAY_BATCH})}`;

/** KEYS: stream, leases, task. ARGV: group, task id, worker, attempt, status, finishedAt, expiresAt, then field / value pairs. */
const FINISH = `
local current = redis.call('HMGET', KEYS[3], 'st', 'w', 'a')
if current[1] ~= 'running' or current[2] ~= ARGV[3] or current[3] ~= ARGV[4] then return 0 end
local entry = redis.call('HGET', KEYS[3], 'e')
redis.call('HDEL', KEYS[3], 'l', 'res', 'ct', 'err')
redis.call('HSET', KEYS[3], 'st', ARGV[5], 'f', ARGV[6], 'x', ARGV[7])
for i = 8, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIREAT', KEYS[3], ARGV[7])
redis.call('ZREM', KEYS[2], ARGV[2])
if entry then
  redis.pcall('XACK', KEYS[1], ARGV[1], entry)
  redis.call('XDEL', KEYS[1], entry)
end
return 1`;

/** KEYS: users, totp steps. ARGV: name, step. */
const TOTP = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local last = redis.call('HGET', KEYS[2], ARGV[1])
if last and tonumber(last) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1`;

/** KEYS: seats. ARGV: expected rev (0 = none stored yet), new rev, JSON. */
const SEATS = `
local cur = redis.call('HGET', KEYS[1], 'r') or '0'
if cur ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'r', ARGV[2], 'd', ARGV[3])
return 1`;

/** KEYS: catalog values, catalog revs (one kind). ARGV: id, expected rev (0 = must not exist), new rev, JSON. */
const RECORD = `
local cur = redis.call('HGET', KEYS[2], ARGV[1]) or '0'
if cur ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1`;

/**
 * KEYS: catalog values, catalog revs (one kind). ARGV: id / JSON pairs, all distinct ids. Writes
 * every record at rev 1 if none of the ids is stored, else nothing. A loop over ARGV, not one
 * HSET of them all: unpack() of 20,000 arguments is past Lua's limit.
 */
const CREATE_RECORDS = `
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then return 0 end
end
for i = 1, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('HSET', KEYS[2], ARGV[i], 1)
end
return 1`;

/**
 * KEYS: login-failure counters (all on the {logins} slot). ARGV: now, expiresAt. Adds one failure
 * to each, restarting a counter whose expiresAt has passed; returns the counts, in KEYS order.
 * The relative TTL (ARGV 3, ms) only cleans up: what counts is x against the callers' clock.
 */
const LOGIN_FAIL = `
local counts = {}
local now = tonumber(ARGV[1])
for i = 1, #KEYS do
  local x = tonumber(redis.call('HGET', KEYS[i], 'x') or '0')
  local c = 1
  if x > now then
    c = redis.call('HINCRBY', KEYS[i], 'c', 1)
  else
    redis.call('HSET', KEYS[i], 'c', 1)
  end
  redis.call('HSET', KEYS[i], 't', ARGV[1], 'x', ARGV[2])
  redis.call('PEXPIRE', KEYS[i], ARGV[3])
  counts[i] = c
end
return counts`;

const SCRIPTS = {
  rotorCommit: { lua: COMMIT, numberOfKeys: 2 },
  rotorRelay: { lua: RELAY },
  rotorClaim: { lua: CLAIM, numberOfKeys: 3 },
  rotorFinish: { lua: FINISH, numberOfKeys: 3 },
  rotorTotp: { lua: TOTP, numberOfKeys: 2 },
  rotorSeats: { lua: SEATS, numberOfKeys: 1 },
  rotorLoginFail: { lua: LOGIN_FAIL },
  rotorRecord: { lua: RECORD, numberOfKeys: 2 },
  rotorCreateRecords: { lua: CREATE_RECORDS, numberOfKeys: 2 },
};

type Arg = string | Buffer | number;
interface Scripts {
  rotorCommit(...args: Arg[]): Promise<number>;
  rotorRelay(...args: Arg[]): Promise<number>;
  rotorClaimBuffer(...args: Arg[]): Promise<[Buffer[][], Buffer[]]>;
  rotorFinish(...args: Arg[]): Promise<number>;
  rotorTotp(...args: Arg[]): Promise<number>;
  rotorSeats(...args: Arg[]): Promise<number>;
  rotorLoginFail(...args: Arg[]): Promise<number[]>;
  rotorRecord(...args: Arg[]): Promise<number>;
  rotorCreateRecords(...args: Arg[]): Promise<number>;
}
type Client = Redis & Scripts;

export class RedisStore implements Store {
  readonly kind: 'redis' | 'redis-cluster';
  private closed = false;
  private readonly keys: {
    session: (sid: string) => string;
    /** SCAN pattern of every session key. */
    sessions: string;
    outbox: (sid: string) => string;
    task: (tid: string) => string;
    taskPrefix: string;
    stream: string;
    leases: string;
    pending: string;
    users: string;
    totp: string;
    pools: string;
    seats: (pool: string) => string;
    loginCounter: (key: string) => string;
    /** A catalog kind's values and revs: two hashes on the {catalog} slot. */
    catalog: (kind: CatalogKind) => [values: string, revs: string];
  };

  private constructor(
    /** The client: a Redis, or a Cluster (the same commands, routed by key). */
    private readonly redis: Client,
    prefix: string,
    private readonly consumerIdleMs: number,
    /** The same client as a Cluster, when it is one. */
    private readonly cluster: Cluster | undefined,
    /** The safe mode, when on. */
    private readonly waits: ReplicaWaits | undefined,
  ) {
    this.kind = cluster ? 'redis-cluster' : 'redis';
    const taskPrefix = `${prefix}:{tasks}:t:`;
    this.keys = {
      session: (sid) => `${prefix}:{${sid}}:s`,
      sessions: `${prefix.replace(/[*?[\]\\]/g, '\\$&')}:{*}:s`,
      outbox: (sid) => `${prefix}:{${sid}}:o`,
      task: (tid) => taskPrefix + tid,
      taskPrefix,
      stream: `${prefix}:{tasks}:q`,
      leases: `${prefix}:{tasks}:leases`,
      pending: `${prefix}:{tasks}:pending`,
      users: `${prefix}:{users}:u`,
      totp: `${prefix}:{users}:totp`,
      pools: `${prefix}:{pools}:p`,
      // Not `…:s`: the sessions' SCAN pattern (`{*}:s`) would take it for a session.
      seats: (pool) => `${prefix}:{pool:${pool}}:seats`,
      loginCounter: (key) => `${prefix}:{logins}:f:${key}`,
      catalog: (kind) => [`${prefix}:{catalog}:${kind}`, `${prefix}:{catalog}:${kind}:r`],
    };
  }

  /**
   * Connect to `url`: `redis://host:port/db` (`rediss://` for TLS), or a Redis Cluster by some of
   * its nodes, `redis-cluster://host:port,host:port,…` (`rediss-cluster://`); either may end in
   * `?wait=<replicas>&waitTimeoutMs=<ms>` (the safe mode). Rejects with ROTOR_E_UNAVAILABLE if
   * Redis cannot be reached.
   */
  static async open(url: string, options: RedisStoreOptions = {}): Promise<RedisStore> {
    const params = takeWaitParams(url);
    const clustered = /^rediss?-cluster:\/\//i.test(params.url);
    const commandTimeout = options.commandTimeoutMs ?? 2_000;
    const connectTimeout = options.connectTimeoutMs ?? 2_000;
    const replicas = options.waitReplicas ?? params.wait ?? (clustered ? 1 : 0);
    const waitTimeoutMs = options.waitTimeoutMs ?? params.waitTimeoutMs ?? Math.min(DEFAULT_WAIT_TIMEOUT_MS, Math.floor(commandTimeout / 2));
    if (replicas > 0 && waitTimeoutMs >= commandTimeout) throw new Error(`waitTimeoutMs (${waitTimeoutMs}) must be below commandTimeoutMs (${commandTimeout})`);
    const waits = replicas > 0 ? new ReplicaWaits(replicas, waitTimeoutMs) : undefined;
    const prefix = options.prefix ?? 'rotor';
    const consumerIdleMs = options.consumerIdleMs ?? 3_600_000;
    if (clustered) return RedisStore.openCluster(params.url, { commandTimeout, connectTimeout, prefix, consumerIdleMs, waits });

    const redis = new Redis(params.url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout,
      connectTimeout,
      retryStrategy: (times) => Math.min(times * 100, 1_000),
      // Commands sent in one turn of the event loop go out in one write: without it every
      // command was its own socket write (≈ 20 % of rotor's CPU on Redis in a profile).
      enableAutoPipelining: true,
      scripts: SCRIPTS,
    }) as Client;
    // Connection errors surface as rejected calls; the event would only be noise (or a crash).
    redis.on('error', () => {});
    try {
      await redis.connect();
    } catch (err) {
      redis.disconnect();
      // The URL may carry a password (redis://:secret@host): never in a message.
      throw unavailable(err, `redis ${withoutPassword(url)}`);
    }
    return new RedisStore(redis, prefix, consumerIdleMs, undefined, waits);
  }

  private static async openCluster(
    url: string,
    { commandTimeout, connectTimeout, prefix, consumerIdleMs, waits }: { commandTimeout: number; connectTimeout: number; prefix: string; consumerIdleMs: number; waits: ReplicaWaits | undefined },
  ): Promise<RedisStore> {
    const { nodes, username, password, tls } = parseClusterUrl(url);
    const cluster = new Cluster(nodes, {
      lazyConnect: true,
      // Nothing waits for the cluster: while it is not ready every call is refused at once.
      enableOfflineQueue: false,
      enableAutoPipelining: true,
      scripts: SCRIPTS,
      slotsRefreshTimeout: connectTimeout,
      // Learn a promoted replica soon (a MOVED or a closed connection refreshes at once too).
      slotsRefreshInterval: 2_000,
      clusterRetryStrategy: (times) => Math.min(times * 100, 1_000),
      redisOptions: {
        username,
        password,
        ...(tls ? { tls: {} } : {}),
        commandTimeout,
        connectTimeout,
        maxRetriesPerRequest: 0,
        autoResendUnfulfilledCommands: false,
      },
    });
    cluster.on('error', () => {});
    cluster.on('node error', () => {});
    let timer: NodeJS.Timeout | undefined;
    try {
      // connect() may wait on (a cluster that is not ok yet): bounded like a connect.
      await Promise.race([
        cluster.connect(),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`not ready within ${connectTimeout} ms`)), connectTimeout))),
      ]);
    } catch (err) {
      cluster.disconnect();
      throw unavailable(err, `redis-cluster ${withoutPassword(url)}`);
    } finally {
      clearTimeout(timer);
    }
    if (waits) {
      // Not the client's view: CLUSTER SLOTS leaves out replicas that have not replicated anything yet.
      const replicas = await replicasIn(cluster).catch((err: unknown) => {
        cluster.disconnect();
        throw unavailable(err, `redis-cluster ${withoutPassword(url)}`);
      });
      if (replicas < waits.replicas) {
        cluster.disconnect();
        throw new Error(
          `redis-cluster ${withoutPassword(url)}: ${replicas} replica(s) in the cluster, so the safe mode (wait=${waits.replicas}, the default on a cluster) would refuse every write: ` +
            'give each master a replica (redis-cli --cluster create … --cluster-replicas 1) or add ?wait=0 to the URL (then a failover loses what its master had not yet replicated)',
        );
      }
    }
    return new RedisStore(cluster as unknown as Client, prefix, consumerIdleMs, cluster, waits);
  }

  async createSession(state: SessionState): Promise<void> {
    if (!(await this.call(() => this.write(state, '', 0, [])))) throw new Error(`session ${state.id} exists`);
  }

  loadSession(id: string): Promise<SessionState | undefined> {
    return this.call(async () => decodeSession(await this.redis.hgetallBuffer(this.keys.session(id))));
  }

  async commitSession(next: SessionState, expectedRev: number, released: readonly TaskRecord[]): Promise<boolean> {
    if (released.length === 0) return this.call(() => this.write(next, String(expectedRev), expectedRev + 1, []));
    const member = `${expectedRev}:${next.id}`;
    // Noted before the commit: if this node dies after it, another relays the outbox.
    await this.call(async () => {
      await this.redis.zadd(this.keys.pending, Date.now(), member);
      if (this.waits) await this.waits.after(this.nodeOf(this.keys.pending));
    });
    const committed = await this.call(() => this.write(next, String(expectedRev), expectedRev + 1, released));
    // The commit stands either way; a relay that fails here is done later by some claimTasks.
    if (committed) await this.relay(next.id, member, released).catch(() => {});
    else await this.redis.zrem(this.keys.pending, member).catch(() => {});
    return committed;
  }

  claimTasks(worker: string, max: number, now: number, leaseMs: number): Promise<TaskRecord[]> {
    return this.call(async () => {
      const { stream, leases, pending, taskPrefix } = this.keys;
      const [claimed, leftovers] = await this.redis.rotorClaimBuffer(
        stream, leases, pending, GROUP, worker, max, now, now + leaseMs, taskPrefix, now - RELAY_GRACE_MS,
      );
      // A claim not on a replica could be lost with its master, and the task claimed (run) again.
      if (this.waits && claimed.length > 0) await this.waits.after(this.nodeOf(stream));
      // The claims stand whatever happens to the relays: a failed one is retried by a later claim.
      for (const member of leftovers) await this.relayLeftover(member.toString()).catch(() => {});
      return claimed.map((fields) => decodeTask(pairs(fields))!);
    });
  }

  finishTask(id: string, claim: TaskClaim, outcome: TaskOutcome, now: number): Promise<boolean> {
    return this.call(async () => {
      const extra: Arg[] = [];
      if (outcome.result !== undefined) extra.push('res', outcome.result);
      if (outcome.contentType !== undefined) extra.push('ct', outcome.contentType);
      if (outcome.error !== undefined) extra.push('err', outcome.error);
      const { stream, leases } = this.keys;
      const args = [stream, leases, this.keys.task(id), GROUP, id, claim.worker, String(claim.attempt), outcome.status, now, Math.ceil(outcome.expiresAt), ...extra];
      return this.replicated(this.keys.task(id), (await this.redis.rotorFinish(...args)) === 1);
    });
  }

  loadTask(id: string): Promise<TaskRecord | undefined> {
    return this.call(async () => decodeTask(await this.redis.hgetallBuffer(this.keys.task(id))));
  }

  putUser(user: UserRecord): Promise<void> {
    return this.call(async () => {
      const { lastTotpStep, ...rest } = user;
      const multi = this.redis.multi().hset(this.keys.users, user.name, JSON.stringify(rest));
      if (lastTotpStep === undefined) multi.hdel(this.keys.totp, user.name);
      else multi.hset(this.keys.totp, user.name, lastTotpStep);
      await exec(multi);
      await this.replicated(this.keys.users, true);
    });
  }

  loadUser(name: string): Promise<UserRecord | undefined> {
    return this.call(async () => {
      const [json, step] = (await exec(this.redis.multi().hget(this.keys.users, name).hget(this.keys.totp, name))) as (string | null)[];
      return json === null ? undefined : decodeUser(json, step ?? undefined);
    });
  }

  listUsers(): Promise<UserRecord[]> {
    return this.call(async () => {
      const [users, steps] = (await exec(this.redis.multi().hgetall(this.keys.users).hgetall(this.keys.totp))) as Record<string, string>[];
      return Object.entries(users)
        .map(([name, json]) => decodeUser(json, steps[name]))
        .sort((a, b) => a.name.localeCompare(b.name));
    });
  }

  removeUser(name: string): Promise<boolean> {
    return this.call(async () => {
      const [removed] = (await exec(this.redis.multi().hdel(this.keys.users, name).hdel(this.keys.totp, name))) as number[];
      return this.replicated(this.keys.users, removed === 1);
    });
  }

  acceptTotpStep(name: string, step: number): Promise<boolean> {
    return this.call(async () => this.replicated(this.keys.users, (await this.redis.rotorTotp(this.keys.users, this.keys.totp, name, step)) === 1));
  }

  putPool(pool: PoolRecord): Promise<void> {
    return this.call(async () => {
      await this.redis.hset(this.keys.pools, pool.name, JSON.stringify(pool));
      await this.replicated(this.keys.pools, true);
    });
  }

  loadPool(name: string): Promise<PoolRecord | undefined> {
    return this.call(async () => {
      const json = await this.redis.hget(this.keys.pools, name);
      return json === null ? undefined : (JSON.parse(json) as PoolRecord);
    });
  }

  listPools(): Promise<PoolRecord[]> {
    return this.call(async () =>
      Object.values(await this.redis.hgetall(this.keys.pools))
        .map((json) => JSON.parse(json) as PoolRecord)
        .sort((a, b) => a.name.localeCompare(b.name)),
    );
  }

  /** Two keys in two slots: the pool goes first, so a half-done remove leaves only a seats record nobody reads. */
  removePool(name: string): Promise<boolean> {
    return this.call(async () => {
      const removed = await this.replicated(this.keys.pools, (await this.redis.hdel(this.keys.pools, name)) === 1);
      await this.redis.del(this.keys.seats(name));
      return removed;
    });
  }

  loadSeats(pool: string): Promise<PoolSeats | undefined> {
    return this.call(async () => {
      const [rev, json] = await this.redis.hmget(this.keys.seats(pool), 'r', 'd');
      if (rev === null || json === null) return undefined;
      return { ...(JSON.parse(json) as Omit<PoolSeats, 'rev'>), rev: Number(rev) };
    });
  }

  commitSeats(next: PoolSeats, expectedRev: number): Promise<boolean> {
    return this.call(async () => {
      const { rev: _rev, ...rest } = next;
      const key = this.keys.seats(next.pool);
      return this.replicated(key, (await this.redis.rotorSeats(key, String(expectedRev), String(expectedRev + 1), JSON.stringify(rest))) === 1);
    });
  }

  // --- the catalog (spec §10) ---

  loadRecord<T>(kind: CatalogKind, id: string): Promise<CatalogEntry<T> | undefined> {
    return this.call(async () => {
      const [values, revs] = this.keys.catalog(kind);
      const [json, rev] = (await exec(this.redis.multi().hget(values, id).hget(revs, id))) as (string | null)[];
      return json === null ? undefined : { id, rev: Number(rev ?? 0), value: JSON.parse(json) as T };
    });
  }

  listRecords<T>(kind: CatalogKind): Promise<CatalogEntry<T>[]> {
    return this.call(async () => {
      const [values, revs] = this.keys.catalog(kind);
      const [jsons, rev] = (await exec(this.redis.multi().hgetall(values).hgetall(revs))) as Record<string, string>[];
      return Object.entries(jsons)
        .map(([id, json]) => ({ id, rev: Number(rev[id] ?? 0), value: JSON.parse(json) as T }))
        .sort(byId);
    });
  }

  commitRecord<T>(kind: CatalogKind, id: string, value: T, expectedRev: number): Promise<boolean> {
    return this.call(async () => {
      const args = [id, String(expectedRev), String(expectedRev + 1), JSON.stringify(value)];
      const keys = this.keys.catalog(kind);
      return this.replicated(keys[0], (await this.redis.rotorRecord(...keys, ...args)) === 1);
    });
  }

  /** A repeated id is refused here; the script checks what is stored. No entries: no script. */
  createRecords<T>(kind: CatalogKind, entries: readonly { id: string; value: T }[]): Promise<boolean> {
    return this.call(async () => {
      if (repeatsId(entries)) return false;
      if (entries.length === 0) return true;
      const args = entries.flatMap(({ id, value }) => [id, JSON.stringify(value)]);
      const keys = this.keys.catalog(kind);
      return this.replicated(keys[0], (await this.redis.rotorCreateRecords(...keys, ...args)) === 1);
    });
  }

  removeRecord(kind: CatalogKind, id: string): Promise<boolean> {
    return this.call(async () => {
      const [values, revs] = this.keys.catalog(kind);
      const [removed] = (await exec(this.redis.multi().hdel(values, id).hdel(revs, id))) as number[];
      return this.replicated(values, removed === 1);
    });
  }

  // --- login-failure counters (login throttling) ---

  /** One script: every key's count, its time and its expiry at once, so two nodes never lose a count. */
  recordLoginFailure(keys: readonly string[], now: number, windowMs: number): Promise<LoginFailures[]> {
    if (keys.length === 0) return Promise.resolve([]);
    return this.call(async () => {
      const counts = await this.redis.rotorLoginFail(keys.length, ...keys.map(this.keys.loginCounter), now, now + windowMs, Math.max(1, Math.ceil(windowMs)));
      // A failover must not hand back the tries it counted.
      await this.replicated(this.keys.loginCounter(keys[0]), true);
      return counts.map((count) => ({ count: Number(count), lastAt: now }));
    });
  }

  loginFailures(keys: readonly string[], now: number): Promise<LoginFailures[]> {
    if (keys.length === 0) return Promise.resolve([]);
    return this.call(async () => {
      const fields = await exec(keys.reduce((pipe, key) => pipe.hmget(this.keys.loginCounter(key), 'c', 't', 'x'), this.redis.pipeline()));
      return (fields as (string | null)[][]).map(([count, lastAt, expiresAt]) =>
        count !== null && Number(expiresAt) > now ? { count: Number(count), lastAt: Number(lastAt) } : { count: 0, lastAt: 0 },
      );
    });
  }

  clearLoginFailures(key: string): Promise<void> {
    return this.call(async () => {
      await this.redis.del(this.keys.loginCounter(key));
    });
  }

  /** SCAN over the session keys: on the server, or on every master of the cluster (refused while a slot has none). */
  async *listSessions(): AsyncIterable<SessionState> {
    for (const node of await this.call(async () => this.masters())) yield* this.scanSessions(node);
  }

  private async *scanSessions(node: Redis): AsyncIterable<SessionState> {
    let cursor = '0';
    do {
      const [next, keys] = await this.call(() => node.scan(cursor, 'MATCH', this.keys.sessions, 'COUNT', LIST_BATCH, 'TYPE', 'hash'));
      cursor = next;
      const fields = await this.call(() => exec(keys.reduce((pipe, key) => pipe.hgetallBuffer(key), node.pipeline())));
      for (const state of fields.map((f) => decodeSession(f as Record<string, Buffer>))) if (state) yield state;
    } while (cursor !== '0');
  }

  /** The server, or the cluster's masters (those the client knows), if they serve every slot. */
  private masters(): Redis[] {
    const cluster = this.cluster;
    if (!cluster) return [this.redis];
    if (cluster.status !== 'ready') throw new Error(`the cluster is ${cluster.status}`);
    const masters = new Map(cluster.nodes('master').map((node) => [`${node.options.host}:${node.options.port}`, node]));
    for (let slot = 0; slot < 16384; slot++) {
      const owner = cluster.slots[slot]?.[0];
      if (owner === undefined || !masters.has(owner)) throw new Error(`slot ${slot} has no master just now`);
    }
    return [...masters.values()];
  }

  /**
   * Sessions and finished tasks expire by their Redis TTLs, so there is nothing to count here.
   * What it does: forget consumers of the task stream (worker ids of nodes long gone) that
   * hold no task, so restarts do not grow the consumer group forever.
   */
  purgeExpired(_now: number): Promise<number> {
    return this.call(async () => {
      // No stream or no group yet (nothing was ever claimed) is a Redis reply error: nothing to do.
      const consumers = (await this.redis.xinfo('CONSUMERS', this.keys.stream, GROUP).catch((err: Error) => {
        if (err.name === 'ReplyError') return [];
        throw err;
      })) as unknown[][];
      for (const consumer of consumers) {
        const info = pairs(consumer as (string | number)[]);
        if (Number(info.pending) === 0 && Number(info.idle) > this.consumerIdleMs) {
          await this.redis.xgroup('DELCONSUMER', this.keys.stream, GROUP, String(info.name));
        }
      }
      return 0;
    });
  }

  /** PING, bounded like every command by commandTimeoutMs; rejects at once while the connection is down (no offline queue). */
  async ping(): Promise<void> {
    await this.call(async () => {
      await Promise.all(this.masters().map((node) => node.ping()));
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  /** The commit script, for createSession (expected '') and commitSession. */
  private async write(state: SessionState, expected: string, rev: number, released: readonly TaskRecord[]): Promise<boolean> {
    const prev = state.prev;
    // Built field by field (rev lives in its own hash field, the reply in another): a rest/spread
    // copy of a session record takes V8's slow path (src/session/state.ts).
    const json = JSON.stringify({
      id: state.id,
      user: state.user,
      gen: state.gen,
      tokenHash: state.tokenHash,
      acked: state.acked,
      prev: prev?.hash ?? null,
      held: state.held,
      meta: state.meta,
      createdAt: state.createdAt,
      expiresAt: state.expiresAt,
      revoked: state.revoked,
      quota: state.quota,
      seal: state.seal,
    });
    const tasks = released.flatMap((task) => [task.id, JSON.stringify(task)]);
    const result = await this.redis.rotorCommit(
      this.keys.session(state.id), this.keys.outbox(state.id),
      expected, rev, json, prev ? '1' : '0', prev?.reply ?? '', state.expiresAt === null ? '' : Math.ceil(state.expiresAt), ...tasks,
    );
    if (result === 1 && this.waits) await this.waits.after(this.nodeOf(this.keys.session(state.id)));
    return result === 1;
  }

  /** Put a committed outbox into the task stream, then forget it and its pending note. */
  private async relay(sid: string, member: string, tasks: readonly TaskRecord[]): Promise<void> {
    if (tasks.length > 0) {
      const args = tasks.flatMap(({ status: _status, result: _result, ...spec }) => [spec.id, JSON.stringify(spec)]);
      await this.redis.rotorRelay(1 + tasks.length, this.keys.stream, ...tasks.map((task) => this.keys.task(task.id)), ...args);
      // The stream has the tasks (on a replica too) before the outbox forgets them.
      if (this.waits) await this.waits.after(this.nodeOf(this.keys.stream));
      await this.redis.hdel(this.keys.outbox(sid), ...tasks.map((task) => task.id));
      if (this.waits) await this.waits.after(this.nodeOf(this.keys.outbox(sid)));
    }
    await this.redis.zrem(this.keys.pending, member);
  }

  /** Relay what a commit noted in `pending` left in its session's outbox (nothing, if it was relayed). */
  private async relayLeftover(member: string): Promise<void> {
    const sid = member.slice(member.indexOf(':') + 1);
    const outbox = await this.redis.hgetall(this.keys.outbox(sid));
    await this.relay(sid, member, Object.values(outbox).map((json) => JSON.parse(json) as TaskRecord));
  }

  private call<T>(work: () => Promise<T>): Promise<T> {
    return storeCall(this.closed, this.kind, work);
  }

  /** `value`, once the write to `key` just answered is on the replicas (the safe mode); at once otherwise, or when `wrote` is false. */
  private async replicated<T>(key: string, value: T, wrote: boolean = value !== false): Promise<T> {
    if (this.waits && wrote) await this.waits.after(this.nodeOf(key));
    return value;
  }

  /** The connection a command on `key` goes to: the server's, or that of the master of key's slot. */
  private nodeOf(key: string): Redis | undefined {
    const cluster = this.cluster;
    if (!cluster) return this.redis;
    const owner = cluster.slots[keySlot(key)]?.[0];
    return owner === undefined ? undefined : cluster.nodes('master').find((node) => `${node.options.host}:${node.options.port}` === owner);
  }
}

/** How many replicas the cluster's masters have connected (INFO replication: whom WAIT counts). */
async function replicasIn(cluster: Cluster): Promise<number> {
  const masters = cluster.nodes('master');
  if (masters.length === 0) throw new Error('no master known');
  const counts = await Promise.all(masters.map(async (master) => Number(/^connected_slaves:(\d+)/m.exec(String(await master.info('replication')))?.[1] ?? 0)));
  return counts.reduce((sum, n) => sum + n, 0);
}

async function exec(multi: ReturnType<Redis['multi' | 'pipeline']>): Promise<unknown[]> {
  const results = (await multi.exec()) ?? [];
  for (const [err] of results) if (err) throw err;
  return results.map(([, value]) => value);
}

/** [k1, v1, k2, v2, …] → { k1: v1, … } with string keys. */
function pairs<V>(flat: V[]): Record<string, V> {
  const out: Record<string, V> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1];
  return out;
}

function decodeSession(fields: Record<string, Buffer>): SessionState | undefined {
  if (!fields.r || !fields.d) return undefined;
  // quota and seal are absent from a session written before sessions had them.
  const stored = JSON.parse(fields.d.toString()) as Omit<SessionState, 'prev' | 'rev' | 'quota' | 'seal'> & { prev: string | null; quota?: SessionState['quota']; seal?: SessionState['seal'] };
  if (typeof stored.id !== 'string') return undefined;
  const prev = stored.prev === null ? null : { hash: stored.prev, reply: fields.b ?? Buffer.alloc(0) };
  return sessionWith(stored as unknown as SessionState, { rev: Number(fields.r), prev, quota: stored.quota ?? null, seal: stored.seal ?? null });
}

function decodeTask(fields: Record<string, Buffer>): TaskRecord | undefined {
  if (!fields.d || !fields.st) return undefined;
  const task: { -readonly [K in keyof TaskRecord]: TaskRecord[K] } = JSON.parse(fields.d.toString());
  task.status = fields.st.toString() as TaskStatus;
  if (fields.w) task.worker = fields.w.toString();
  if (fields.a) task.attempt = Number(fields.a);
  if (fields.l) task.leaseUntil = Number(fields.l);
  if (fields.f) task.finishedAt = Number(fields.f);
  if (fields.x) task.expiresAt = Number(fields.x);
  if (fields.res) task.result = fields.res;
  if (fields.ct) task.contentType = fields.ct.toString();
  if (fields.err) task.error = fields.err.toString();
  return task;
}

function decodeUser(json: string, step: string | undefined): UserRecord {
  const user = JSON.parse(json) as UserRecord;
  return step === undefined ? user : { ...user, lastTotpStep: Number(step) };
}

/** A Redis URL fit for a log line or an error: its user info (a password) masked. */
export function withoutPassword(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]*@/i, '$1***@');
}
