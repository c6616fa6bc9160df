/**
 * The seal's memory of accepted proofs (src/seal/machine.ts), model-based: fast-check accepts
 * proofs generation after generation (several under one token, some again) and compares with a
 * model that keeps every proof forever. Whatever the trims drop, a proof accepted for one of the
 * newest `window` generations is still known; a spent-token request is `reuse` only when its
 * proof was never accepted and its generation is still remembered; acks never are.
 */
import t from 'tap';
import fc from 'fast-check';
import { freshSeal, hasSeen, remembered, staleVerdict, type PresentedProof } from '../../src/seal/machine.ts';

const mac = (gen: number, k: number) => `${String(gen).padStart(4, '0')}${'m'.repeat(14)}${String(k).padStart(4, '0')}`;

t.test('the trimmed memory agrees with keeping everything, where it says it remembers', async (t) => {
  let checked = 0;
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 12 }),
      fc.array(fc.record({ rotate: fc.boolean(), again: fc.boolean(), k: fc.nat({ max: 3 }) }), { minLength: 1, maxLength: 300 }),
      (window, steps) => {
        let seal = freshSeal('app', 'host', 'k1.x');
        let gen = 1;
        const all = new Map<string, number>();
        for (const step of steps) {
          const proof: PresentedProof = { gen, mac: mac(gen, step.k), ack: false };
          const newest = step.rotate ? gen + 1 : gen;
          const before = seal;
          seal = remembered(seal, proof, newest, window);
          if (step.again) t.equal(remembered(seal, proof, newest, window), seal, 'a proof accepted again changes nothing');
          all.set(proof.mac, proof.gen);
          gen = newest;
          if (seal.from < before.from) throw new Error('from went back');
          if (seal.from > gen - window + 1 && seal.from > 1) throw new Error(`from ${seal.from} forgets one of the newest ${window} generations (newest ${gen})`);
          for (const [m, g] of all) {
            const known = hasSeen(seal, { gen: g, mac: m, ack: false });
            if (g >= seal.from && !known) throw new Error(`${m} of generation ${g} is forgotten, though from is ${seal.from}`);
            const verdict = staleVerdict(seal, { gen: g, mac: m, ack: false });
            if (verdict !== 'replayed') throw new Error(`an accepted proof of generation ${g} is taken for a clone's`);
          }
          for (let g = Math.max(1, gen - window + 1); g <= gen; g++) {
            const unseen: PresentedProof = { gen: g, mac: mac(g, 99), ack: false };
            if (staleVerdict(seal, unseen) !== 'reuse') throw new Error(`a proof never seen for remembered generation ${g} is not a reuse`);
            if (staleVerdict(seal, { ...unseen, ack: true }) !== 'replayed') throw new Error('a spent ack ended a session');
          }
          checked++;
        }
        if (seal.seen.length > 8 * window * 34 + 34) throw new Error(`the memory grew to ${seal.seen.length} characters`);
      },
    ),
    { numRuns: 400 },
  );
  t.ok(checked > 1000, `${checked} steps checked`);
});

t.test('a key holder sending one new request after another under one token fills the memory only so far', async (t) => {
  let seal = freshSeal('app', 'host', 'k1.x');
  for (let k = 0; k < 1000; k++) seal = remembered(seal, { gen: 5, mac: mac(5, k), ack: false }, 5, 8);
  t.ok(seal.seen.length <= 8 * 8 * 34 + 34, `${seal.seen.length} characters kept`);
  t.ok(hasSeen(seal, { gen: 5, mac: mac(5, 0), ack: false }), 'the first ones are kept');
});
