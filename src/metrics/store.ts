import type { Store } from '../store/types.ts';
import type { Metrics, StoreOperation } from './metrics.ts';

/**
 * `store` with the latency of each call measured into `metrics` (rotor_store_seconds) and its
 * failures counted (rotor_store_errors_total): one wrapper for every backend. The caller gets
 * the backend's own promise back, so timing adds no turn of the event loop.
 */
export function timedStore(store: Store, metrics: Metrics): Store {
  const timed = <T>(operation: StoreOperation, call: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    const settled = call();
    settled.then(
      () => metrics.store[operation].observe((performance.now() - started) / 1000),
      () => {
        metrics.store[operation].observe((performance.now() - started) / 1000);
        metrics.storeErrors[operation].inc();
      },
    );
    return settled;
  };
  const wrapper: Store = {
    kind: store.kind,
    createSession: (state) => timed('createSession', () => store.createSession(state)),
    loadSession: (id) => timed('loadSession', () => store.loadSession(id)),
    commitSession: (next, expectedRev, released) => timed('commitSession', () => store.commitSession(next, expectedRev, released)),
    claimTasks: (worker, max, now, leaseMs) => timed('claimTasks', () => store.claimTasks(worker, max, now, leaseMs)),
    finishTask: (id, claim, outcome, now) => timed('finishTask', () => store.finishTask(id, claim, outcome, now)),
    loadTask: (id) => timed('loadTask', () => store.loadTask(id)),
    putUser: (user) => timed('putUser', () => store.putUser(user)),
    loadUser: (name) => timed('loadUser', () => store.loadUser(name)),
    listUsers: () => timed('listUsers', () => store.listUsers()),
    removeUser: (name) => timed('removeUser', () => store.removeUser(name)),
    acceptTotpStep: (name, step) => timed('acceptTotpStep', () => store.acceptTotpStep(name, step)),
    putPool: (pool) => timed('putPool', () => store.putPool(pool)),
    loadPool: (name) => timed('loadPool', () => store.loadPool(name)),
    listPools: () => timed('listPools', () => store.listPools()),
    removePool: (name) => timed('removePool', () => store.removePool(name)),
    loadSeats: (pool) => timed('loadSeats', () => store.loadSeats(pool)),
    commitSeats: (next, expectedRev) => timed('commitSeats', () => store.commitSeats(next, expectedRev)),
    loadRecord: (kind, id) => timed('loadRecord', () => store.loadRecord(kind, id)),
    listRecords: (kind) => timed('listRecords', () => store.listRecords(kind)),
    commitRecord: (kind, id, value, expectedRev) => timed('commitRecord', () => store.commitRecord(kind, id, value, expectedRev)),
    createRecords: (kind, entries) => timed('createRecords', () => store.createRecords(kind, entries)),
    removeRecord: (kind, id) => timed('removeRecord', () => store.removeRecord(kind, id)),
    recordLoginFailure: (keys, now, windowMs) => timed('recordLoginFailure', () => store.recordLoginFailure(keys, now, windowMs)),
    loginFailures: (keys, now) => timed('loginFailures', () => store.loginFailures(keys, now)),
    clearLoginFailures: (key) => timed('clearLoginFailures', () => store.clearLoginFailures(key)),
    purgeExpired: (now) => timed('purgeExpired', () => store.purgeExpired(now)),
    close: () => store.close(),
  };
  // Optional methods stay optional: callers test for them (the token API's dump, readiness).
  if (store.listSessions) wrapper.listSessions = () => store.listSessions!();
  if (store.loadSessionNow) {
    const load = store.loadSessionNow.bind(store);
    const latency = metrics.store.loadSession;
    wrapper.loadSessionNow = (id) => {
      const started = performance.now();
      try {
        return load(id);
      } catch (err) {
        metrics.storeErrors.loadSession.inc();
        throw err;
      } finally {
        latency.observe((performance.now() - started) / 1000);
      }
    };
  }
  if (store.ping) wrapper.ping = () => timed('ping', () => store.ping!());
  return wrapper;
}
