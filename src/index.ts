/**
 * What `import … from 'rotor'` gives: serve an application, the stores, the configuration,
 * users from code, the error codes — and the client (also on its own as `rotor/client`, which
 * loads no server code).
 */
export { serve, Rotor, type ServeOptions, type HttpServeOptions, type RunningServer } from './server/index.ts';
export type { RotorApp, Handler, TaskHandler, TaskContext, TaskResult, AppRequest, AppReply, Deferral } from './server/app.ts';
export { addUser, type AddUserOptions, type AddedUser } from './server/users.ts';
export { hashPassword, newTotpSecret, totpFor } from './server/auth.ts';

export {
  openStore,
  MemoryStore,
  LmdbStore,
  RedisStore,
  DEFAULT_DATA_DIR,
  type OpenStoreOptions,
  type LmdbStoreOptions,
  type RedisStoreOptions,
  type Store,
  type UserRecord,
  type TaskRecord,
  type TaskStatus,
  type TaskEnding,
  type TaskOutcome,
  type TaskClaim,
} from './store/index.ts';

export {
  resolveConfig,
  DEFAULTS,
  ConfigError,
  type RotorConfig,
  type DeepPartial,
  type WireLimits,
  type ConnectionLimits,
  type CarrierLimits,
  type SessionSettings,
  type AuthSettings,
  type TaskSettings,
  type KeySettings,
  type ObservabilitySettings,
} from './config/defaults.ts';

export { RotorError, isRotorError, ERRORS, type ErrorCode } from './errors.ts';
export { KeyRing, type MacKey } from './session/token.ts';
export { loadOrCreateKeyFile, readKeyFile, KeyRingError, KeyRingSource, type KeyMaterial } from './keys/index.ts';
export { pooledRandom, type RandomSource } from './session/random.ts';
export { createLogger, silentLogger, type Logger } from './log/index.ts';

export * from './client/index.ts';
export { HandOver, loadPeers, parsePeers, loadOrCreateHandOverKeys, readHandOverKeys } from './handover/index.ts';
