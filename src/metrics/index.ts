/** Operations: rotor's Prometheus metrics (one Registry per server), a timing wrapper for any Store, the /metrics /livez /readyz listener. */
export { Metrics, OPERATIONS, LOGIN_RESULTS, TASK_EVENTS, STORE_OPERATIONS, type Operation, type Outcome, type LoginResult, type TaskEvent, type StoreOperation } from './metrics.ts';
export { timedStore } from './store.ts';
export { listenOps, type OpsListener, type OpsListenOptions } from './ops.ts';
