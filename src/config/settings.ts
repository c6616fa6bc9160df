/**
 * Every limit and timeout rotor has, in one place: their types and DEFAULTS, as plain data.
 * Kept apart from the schema (defaults.ts validates against src/config/schema.ts) so that the
 * codec and the client library, which only need the defaults, load no validation library.
 */
export interface WireLimits {
  /** Longest start or header line, CRLF excluded; a `Name:value` line counts as `Name: value` (what it re-serializes to). */
  maxLineBytes: number;
  /** Largest header block: start line + header lines + the empty line, every CRLF included. */
  maxHeaderBytes: number;
  /** Most header lines in one frame, BIN-Length not counted (counts, not only bytes: many tiny headers cost memory too). */
  maxHeaders: number;
  /** Largest BIN-Length accepted; checked as soon as the header is read. */
  maxBodyBytes: number;
}

export interface ConnectionLimits {
  /** Connections open at once on each listener (TCP/TLS; HTTP with its WebSockets). */
  maxConnections: number;
  /**
   * Connections one source address may hold at once on each listener, so one peer cannot take
   * every slot (IPv6 addresses count per /64, which one host usually holds). Behind a proxy or
   * load balancer every client shares its address: raise this to maxConnections there.
   */
  maxConnectionsPerAddress: number;
  /** The listen(2) backlog of every listener: connections the kernel queues before rotor accepts them (Linux caps it at net.core.somaxconn). */
  listenBacklog: number;
  /** Frames of one connection being worked on at once; past it the socket is paused. */
  maxInFlight: number;
  /** From the first byte of a frame to the end of its header block. */
  headerTimeoutMs: number;
  /** From the first byte of a frame to its last body byte. */
  frameTimeoutMs: number;
  /** Nothing received and nothing in flight for this long closes the connection. */
  idleTimeoutMs: number;
  /** A peer that does not read its responses for this long is dropped. */
  drainTimeoutMs: number;
  /** One sweep checks every deadline of every connection (instead of a timer per socket). */
  sweepIntervalMs: number;
  /**
   * Connections the sweep closes (or pings, on WebSocket) per turn of the event loop; the rest
   * wait for the next turns, so a mass timeout never holds the loop (a close costs ~0.15 ms).
   */
  sweepBatchSize: number;
  /** On shutdown, in-flight work gets this long before connections are destroyed. */
  shutdownGraceMs: number;
}

/**
 * Limits of the HTTP and WebSocket carriers that the TCP limits above do not already give.
 * The rest is derived, so every carrier keeps the same promises: node:http's headersTimeout is
 * connection.headerTimeoutMs, requestTimeout is connection.frameTimeoutMs, keepAliveTimeout is
 * connection.idleTimeoutMs, the largest HTTP body is wire.maxBodyBytes, and a WebSocket
 * message may be at most wire.maxHeaderBytes + wire.maxBodyBytes.
 */
export interface CarrierLimits {
  /**
   * Header bytes node:http may read beyond wire.maxHeaderBytes, for HTTP's own lines that never
   * reach the frame (Host, Content-Length, Connection, User-Agent…); the frame built from the
   * rest is then held to the wire limits exactly, with the same error codes as on TCP.
   */
  httpHeaderSlackBytes: number;
  /** Requests one HTTP keep-alive socket may carry before the server closes it; 0 = no cap (as on TCP). */
  httpMaxRequestsPerSocket: number;
  /** Every WebSocket is pinged this often; a peer that has not answered the previous ping is dropped. */
  wsPingIntervalMs: number;
  /** Reply bytes queued for a WebSocket peer past which rotor reads no more of its messages. */
  wsMaxBufferedBytes: number;
}

export interface SessionSettings {
  /** Lifetime of each token in whole minutes; -1 means never expires (needs allowNeverExpiring). */
  tokenTtlMinutes: number;
  allowNeverExpiring: boolean;
  /**
   * Bind every token to the client that logged in (spec §2): its `Client-Info` (program), its
   * source address, both, or nothing. A token shown by another client is ROTOR_E_CLIENT_MISMATCH.
   */
  bindClients: 'off' | 'program' | 'address' | 'both';
  /** How long a revoked session is remembered so its tokens get SESSION_REVOKED, not SESSION_UNKNOWN. */
  revokedRetentionMinutes: number;
  /** Largest JSON metadata object of a session, serialized. */
  maxMetaBytes: number;
  /** Tasks one exchange may defer. */
  maxTasksPerExchange: number;
  /** How often expired sessions and old task results are purged. */
  purgeIntervalMs: number;
  /** How long a finished task's result can be fetched. */
  taskResultTtlMinutes: number;
  /** Wait-for estimate when a handler gives none. */
  defaultWaitForSeconds: number;
  /** Times an exchange re-reads a session that changed under it before giving up with CONFLICT. */
  maxCommitRetries: number;
  /** Whether a token (and its metadata) may be created without a login: note 004's POST /token. */
  openTokenCreate: boolean;
}

export interface AuthSettings {
  /**
   * scrypt cost for new password hashes (a stored hash keeps the cost it was made with). The
   * default is OWASP's Password Storage Cheat Sheet minimum: N = 2^17, r = 8, p = 1 — 128 MiB
   * and ≈ 0.25 s of one core per login on this machine class.
   */
  scryptN: number;
  scryptR: number;
  scryptP: number;
  /** scrypt runs on the thread pool; at most this many at once… */
  maxConcurrentHashes: number;
  /** …and at most this many logins wait for a turn before ROTOR_E_RATE_LIMITED. */
  maxQueuedLogins: number;
  /** TOTP steps of drift accepted each way (RFC 6238 suggests at most one). */
  totpWindow: number;
  /** Longest user name (UTF-8 bytes); a longer one is a bad request, never a store error (LMDB keys are bounded). */
  maxUserNameBytes: number;
  /**
   * Login throttling (spec §3 Logins), counted in the store, as Keycloak's brute-force detection:
   * once a counter reaches its factor, every login it covers waits
   * min(waitIncrementSeconds × ⌊failures / factor⌋, maxFailureWaitSeconds) after the last failure,
   * refused meanwhile with ROTOR_E_RATE_LIMITED. Failures of one user name from one source
   * address (0 = not counted)…
   */
  failureFactor: number;
  /** …from one source address, whatever the user name (0 = not counted)… */
  addressFailureFactor: number;
  /** …and of one user name from every address together (0 = not counted): high, so one address cannot lock a user out elsewhere. */
  userFailureFactor: number;
  /** The wait grows by this much per factor of failures… */
  waitIncrementSeconds: number;
  /** …up to this. */
  maxFailureWaitSeconds: number;
  /** A counter is forgotten this long after its last failure (Keycloak's maxDeltaTime); a success forgets the user's counter at its address. */
  failureResetMinutes: number;
}

export interface TaskSettings {
  /** Released tasks run at once per node. */
  concurrency: number;
  /** A task handler that runs longer than this is told to stop (its AbortSignal) and ends timed out: it may or may not have had its effect. */
  timeoutMs: number;
  /** How often a node looks for released tasks it was not told about (other nodes, restarts). */
  pollIntervalMs: number;
}

/** Access codes and their quotas (spec §10). */
export interface QuotaSettings {
  /** This node's name, as templates name the nodes where their codes are valid; '' = a node no template names. */
  node: string;
  /** A gap between two exchanges of a metered session counts as in use up to this long (spec §10 "in use"). */
  idleGapSeconds: number;
  /** '' = password logins are not metered; else they use the user's own usable code, or get one made from this template. */
  passwordTemplate: string;
  /** Codes a metered password login may make for one user in all (0 = never: the user must bring a code). */
  mintPerUser: number;
}

/**
 * The ring of MAC keys that sign tokens (spec §11 "Server keys"): on a shared store one record,
 * its secrets wrapped with the key file's wrapping key, read again by every node in the background.
 */
export interface KeySettings {
  /**
   * Automatic rotation: once the signing key has signed for this long a node adds a `next` key,
   * and promotes it once every node has had time to learn it (twice reloadSeconds); 0 = off.
   * `rotor serve --key-rotation 24h`.
   */
  rotationHours: number;
  /** How often a node reads the key ring again from the store (in the background, never on the request path). */
  reloadSeconds: number;
  /**
   * A key that stops signing is dropped this long after its last token can have expired
   * (session.tokenTtlMinutes): for clocks that differ between nodes, and for a node that signs
   * with the old key until its next reload — so at least reloadSeconds.
   */
  skewSeconds: number;
}

/** Hand-over to and from peers (spec §11): the peers themselves are a file (`rotor serve --peers FILE`). */
export interface PeerSettings {
  /** How often each peer's revocation list is pulled, in the background; a parent's end reaches this server within about this long. */
  pullSeconds: number;
}

/** Sealed application sessions (spec §12). */
export interface SealSettings {
  /** How long an open nonce (`GET /rotor/seal`) may be used for an open. */
  openNonceSeconds: number;
  /** How many of a sealed session's newest generations keep the proofs rotor accepted: a spent token within them is told apart from a clone's. */
  rememberGenerations: number;
  /** How long a node takes an app (and a listed instance) as still registered before it reads the store again: a removed app's sessions end within about this long. */
  registeredSeconds: number;
}

/** Watching a running rotor: metrics, health, logs. */
export interface ObservabilitySettings {
  /** Port of the operations listener (Prometheus `/metrics`, `/livez`, `/readyz`); 0 = off. */
  metricsPort: number;
  /** Address of the operations listener (loopback by default: metrics are not for the public). */
  metricsHost: string;
  /** One access-log line per exchange at info level (request id, operation, outcome; never a secret). */
  accessLog: boolean;
  /** Of the exchanges, the fraction that get an access-log line (1 = all). Security events are always logged. */
  accessLogSample: number;
  /** Human-readable logs (pino-pretty): 'auto' = when stdout is a terminal. */
  prettyLogs: 'auto' | 'always' | 'never';
}

export interface RotorConfig {
  host: string;
  port: number;
  wire: WireLimits;
  connection: ConnectionLimits;
  carriers: CarrierLimits;
  session: SessionSettings;
  auth: AuthSettings;
  tasks: TaskSettings;
  quotas: QuotaSettings;
  keys: KeySettings;
  peers: PeerSettings;
  seal: SealSettings;
  observability: ObservabilitySettings;
  logLevel: string;
}

export const DEFAULTS: RotorConfig = Object.freeze({
  host: '127.0.0.1',
  port: 3666,
  wire: Object.freeze({
    maxLineBytes: 8 * 1024,
    maxHeaderBytes: 16 * 1024,
    maxHeaders: 64,
    maxBodyBytes: 1024 * 1024,
  }),
  connection: Object.freeze({
    maxConnections: 10_000,
    maxConnectionsPerAddress: 256,
    listenBacklog: 4096,
    maxInFlight: 64,
    headerTimeoutMs: 10_000,
    frameTimeoutMs: 60_000,
    idleTimeoutMs: 120_000,
    drainTimeoutMs: 30_000,
    sweepIntervalMs: 1_000,
    sweepBatchSize: 64,
    shutdownGraceMs: 10_000,
  }),
  carriers: Object.freeze({
    httpHeaderSlackBytes: 4 * 1024,
    httpMaxRequestsPerSocket: 0,
    wsPingIntervalMs: 30_000,
    wsMaxBufferedBytes: 1024 * 1024,
  }),
  session: Object.freeze({
    tokenTtlMinutes: 120,
    allowNeverExpiring: false,
    bindClients: 'off',
    revokedRetentionMinutes: 24 * 60,
    maxMetaBytes: 16 * 1024,
    maxTasksPerExchange: 8,
    purgeIntervalMs: 60_000,
    taskResultTtlMinutes: 60,
    defaultWaitForSeconds: 1,
    maxCommitRetries: 8,
    openTokenCreate: false,
  }),
  auth: Object.freeze({
    scryptN: 131072,
    scryptR: 8,
    scryptP: 1,
    maxConcurrentHashes: 2,
    maxQueuedLogins: 256,
    totpWindow: 1,
    maxUserNameBytes: 256,
    failureFactor: 5,
    addressFailureFactor: 20,
    userFailureFactor: 100,
    waitIncrementSeconds: 30,
    maxFailureWaitSeconds: 900,
    failureResetMinutes: 720,
  }),
  tasks: Object.freeze({
    concurrency: 4,
    timeoutMs: 60_000,
    pollIntervalMs: 1_000,
  }),
  quotas: Object.freeze({
    node: '',
    idleGapSeconds: 60,
    passwordTemplate: '',
    mintPerUser: 1,
  }),
  keys: Object.freeze({
    rotationHours: 0,
    reloadSeconds: 30,
    skewSeconds: 60,
  }),
  peers: Object.freeze({
    pullSeconds: 10,
  }),
  seal: Object.freeze({
    openNonceSeconds: 60,
    rememberGenerations: 8,
    registeredSeconds: 5,
  }),
  observability: Object.freeze({
    metricsPort: 0,
    metricsHost: '127.0.0.1',
    accessLog: true,
    accessLogSample: 1,
    prettyLogs: 'auto',
  }),
  logLevel: 'info',
}) as RotorConfig;

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };
