/**
 * A forged hand-over token costs the peer an Ed25519 check (≈ 130 µs): refused hand-over logins
 * are counted against their source address like wrong passwords (spec §3 Logins), so a flood
 * from one address is held off with ROTOR_E_RATE_LIMITED — and another address is not.
 */
import t from 'tap';
import { parseHandOver } from '../../src/handover/token.ts';
import { getHeader } from '../../src/wire/index.ts';
import { pair } from './helpers.ts';

t.test('forged hand-over logins from one address are throttled; a good one from elsewhere is not', async (t) => {
  const p = await pair({ config: { auth: { addressFailureFactor: 20 } } });
  const { handOver } = await p.handOverFrom();
  const signed = parseHandOver(handOver).signed;
  const from = (peer: string) => ({ carrier: 'tcp' as const, peer });
  const login = async (token: string, peer: string) =>
    getHeader((await p.b.rotor.dispatch({ kind: 'request', verb: 'POST', path: '/rotor/login', headers: [['Hand-over', token], ['Home', 'a']], body: undefined }, from(peer))).frame, 'Error');
  const seen = new Map<string, number>();
  for (let i = 0; i < 100; i++) {
    const forged = `${signed}.${Buffer.alloc(64, i).toString('base64url')}`;
    const code = (await login(forged, '198.51.100.9')) ?? 'none';
    seen.set(code, (seen.get(code) ?? 0) + 1);
  }
  t.ok((seen.get('ROTOR_E_RATE_LIMITED') ?? 0) > 50, `most of a flood is refused before its signature is checked (${JSON.stringify(Object.fromEntries(seen))})`);
  t.ok((seen.get('ROTOR_E_HANDOVER_INVALID') ?? 0) >= 1, 'the first are refused for what they are');
  t.equal(await login(handOver, '198.51.100.10'), undefined, 'a genuine hand-over from another address goes through');
});
