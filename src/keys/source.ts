/**
 * A node's key ring, kept in step with the store's (spec §11): `open` reads it (writing the
 * node's first ring when the store has none) and refuses when the wrapping key cannot unwrap it;
 * then every keys.reloadSeconds, in the background, the node reads it again, does its part of the
 * upkeep (dropping keys past retireAt, automatic rotation: compare-and-set, so many nodes change
 * it once) and swaps the keys of its live KeyRing in place. Nothing here runs on the request path.
 */
import type { RotorConfig } from '../config/settings.ts';
import type { Logger } from '../log/index.ts';
import { pooledRandom, type RandomSource } from '../session/random.ts';
import { KeyRing } from '../session/token.ts';
import type { Store } from '../store/types.ts';
import type { KeyMaterial } from './file.ts';
import { changeRing, processHome, storeHome, type HeldRing, type RingHome } from './home.ts';
import { acceptedKeys, freshRing, maintain, newKeyId, ringPolicy, seededRing, signingKey, type Ring, type RingPolicy } from './ring.ts';
import { UnwrapError, unwrapSecret, wrapSecret, WRAP_KEY_BYTES } from './wrap.ts';

/** A node that cannot use the store's key ring: it must not start (it would refuse every token). */
export class KeyRingError extends Error {
  override name = 'KeyRingError';
}

export interface KeyRingSourceOptions {
  home: RingHome;
  material: KeyMaterial;
  config: Pick<RotorConfig, 'session' | 'keys'>;
  log: Logger;
  now?: (() => number) | undefined;
  random?: RandomSource | undefined;
}

export class KeyRingSource {
  /** The live ring: the object every exchange signs and verifies with, changed in place. */
  readonly ring: KeyRing;
  private held: HeldRing;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;

  private constructor(
    private readonly options: KeyRingSourceOptions,
    first: HeldRing,
    private readonly unwrapped: SecretCache,
  ) {
    this.now = options.now ?? Date.now;
    this.held = first;
    this.ring = new KeyRing(this.live(first.ring).keys);
  }

  /**
   * The ring of `home`, made there from the key material when it has none; throws KeyRingError
   * when the wrapping key does not unwrap it (then nothing is written).
   */
  static async open(options: KeyRingSourceOptions): Promise<KeyRingSource> {
    const { material } = options;
    if (material.wrap.length !== WRAP_KEY_BYTES) throw new KeyRingError(`a wrapping key is ${WRAP_KEY_BYTES} bytes, this one ${material.wrap.length}`);
    const cache: SecretCache = new Map();
    const first = await upkeep(options, true, cache);
    const source = new KeyRingSource(options, first, cache);
    if (first.seeded && material.legacy) {
      options.log.warn(
        { keyFile: material.file, keys: first.ring.keys.map((key) => key.id) },
        `the key file is in rotor 0.1's format: its keys now seed the key ring in ${options.home.where}, wrapped with a key derived from that file. Keep the file as it is, the same on every node`,
      );
    }
    return source;
  }

  /** The ring as last read from its home: ids, states, times, wrapped secrets. */
  get stored(): Ring<string> {
    return this.held.ring;
  }

  /** Read the ring again, do this node's upkeep of it, and use what it holds now. Rejects when the home cannot be read or the ring does not unwrap (the live ring is then kept). */
  refresh(): Promise<void> {
    return (this.refreshing ??= this.refreshOnce().finally(() => (this.refreshing = undefined)));
  }

  /** Refresh every keys.reloadSeconds in the background (the timer does not hold the process open); failures are logged. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.refresh().catch((err: unknown) => this.options.log.error({ err }, 'reading the key ring failed: this node keeps the keys it has'));
    }, this.options.config.keys.reloadSeconds * 1000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async refreshOnce(): Promise<void> {
    const held = await upkeep(this.options, false, this.unwrapped);
    const before = { signing: this.ring.signing.id, ids: this.ring.ids.join(',') };
    const keys = this.live(held.ring);
    this.ring.replace(keys.keys, keys.signing);
    this.held = held;
    if (held.changed || before.signing !== keys.signing || before.ids !== this.ring.ids.join(',')) {
      this.options.log.info({ signing: keys.signing, keys: held.ring.keys.map(({ id, state, retireAt }) => ({ id, state, retireAt })) }, 'key ring changed');
    }
  }

  /** The keys a node holds of `ring` now, the signing key first: all but those past their retireAt, unwrapped. */
  private live(ring: Ring<string>): { keys: { id: string; secret: Buffer }[]; signing: string } {
    const accepted = acceptedKeys(ring, this.now()).sort((a, b) => Number(b.state === 'signing') - Number(a.state === 'signing'));
    const keys = accepted.map((key) => ({ id: key.id, secret: unwrapped(this.options.material, key, this.unwrapped) }));
    for (const id of this.unwrapped.keys()) if (!keys.some((key) => key.id === id)) this.unwrapped.delete(id);
    return { keys, signing: signingKey(ring).id };
  }
}

/**
 * The ring of a server: in the store's catalog with a key file's material, only in the process
 * without one (a fresh wrapping key: nothing outside can read it).
 */
export function openKeyRingSource(store: Store, material: KeyMaterial | undefined, deps: Omit<KeyRingSourceOptions, 'home' | 'material'>): Promise<KeyRingSource> {
  const random = deps.random ?? pooledRandom();
  return KeyRingSource.open({
    ...deps,
    random,
    home: material ? storeHome(store) : processHome(),
    material: material ?? { wrap: random(WRAP_KEY_BYTES), seed: [] },
  });
}

/**
 * Read the ring (every key must unwrap before anything is written: a node with another wrapping
 * key would otherwise plant keys no other node can read), make it when there is none, and do this
 * node's upkeep. The ring as it stands afterwards.
 */
async function upkeep(options: KeyRingSourceOptions, starting: boolean, cache: SecretCache): Promise<HeldRing & { changed: boolean; seeded: boolean }> {
  const { home, material } = options;
  const now = options.now ?? Date.now;
  const random = options.random ?? pooledRandom();
  const policy = ringPolicy(options.config);
  let seeded = false;
  const held = await changeRing(home, (found) => {
    const at = now();
    if (found) checkUnwraps(found, material, home.where, cache, starting ? '' : ' (this node keeps the keys it has)');
    seeded = !found && material.seed.length > 0;
    return maintain(found ?? firstRing(material, at, policy, random), at, policy, (id) => wrapSecret(material.wrap, id, random(32)));
  });
  return { ...held, seeded };
}

/** The ring a store without one gets: the key material's keys (the first signs), or one fresh key. */
export function firstRing(material: KeyMaterial, at: number, policy: RingPolicy, random: RandomSource): Ring<string> {
  if (material.seed.length > 0) return seededRing(material.seed.map((key) => ({ id: key.id, secret: wrapSecret(material.wrap, key.id, key.secret) })), at, policy);
  const id = newKeyId({ keys: [] }, at);
  return freshRing(id, wrapSecret(material.wrap, id, random(32)), at);
}

/** Throws KeyRingError unless every key of `ring` unwraps with the material's wrapping key. */
export function checkUnwraps(ring: Ring<string>, material: KeyMaterial, where: string, cache: SecretCache = new Map(), after = ''): void {
  for (const key of ring.keys) {
    try {
      unwrapped(material, key, cache);
    } catch (err) {
      if (!(err instanceof UnwrapError)) throw err;
      const file = material.file ? `the key file ${material.file}` : 'this wrapping key';
      throw new KeyRingError(
        `${file} cannot unwrap the key ring in ${where} (${err.message}): every node on one store needs the same wrapping key — give this node the key file of the nodes already on it${after}`,
      );
    }
  }
}

/** Unwrapped secrets by key id, with the wrapped text they came from. */
type SecretCache = Map<string, { wrapped: string; secret: Buffer }>;

/** A key's secret, unwrapped once per wrapped text (the same Buffer while it stays the same). */
function unwrapped(material: KeyMaterial, key: { id: string; secret: string }, cache: SecretCache): Buffer {
  const cached = cache.get(key.id);
  if (cached && cached.wrapped === key.secret) return cached.secret;
  const secret = unwrapSecret(material.wrap, key.id, key.secret);
  cache.set(key.id, { wrapped: key.secret, secret });
  return secret;
}
