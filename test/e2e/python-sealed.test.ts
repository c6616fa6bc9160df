/**
 * A sealed-session client written from spec.md alone (python3 with `cryptography`, no rotor code:
 * sealed_client.py) first reproduces spec §12's examples offline — seal key, seal, session key,
 * every proof — then runs a sealed session against a real server over raw TCP frames: open,
 * confirmation, read, a lost reply, deferred work and its result, each proof refusal (the
 * session living on after each), a cloned instance ending its own session, and logout.
 * Every fact it reports is asserted on its own, so a failure names what differed.
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runPython, startServer, type PythonRun } from './helpers.ts';
import { addApp, listInstances } from '../../src/seal/apps.ts';
import { pooledRandom } from '../../src/session/random.ts';

const SCRIPT = fileURLToPath(new URL('./sealed_client.py', import.meta.url));
const SPEC = fileURLToPath(new URL('../../spec.md', import.meta.url));
const INSTANCE = 'py-client.example.net';

const runClient = (args: string[]): Promise<PythonRun> => runPython(SCRIPT, args, 60_000);

/** What the offline checks must all have found (spec §12's examples, reproduced byte for byte). */
const OFFLINE = [
  'offline_examples',
  'offline_app_public_key',
  'offline_open_headers',
  'offline_seal_key',
  'offline_seal',
  'offline_seal_verifies',
  'offline_open_reply',
  'offline_proof_confirm',
  'offline_proof_read',
  'offline_proof_work',
  'offline_body_changed',
  'offline_replayed',
  'offline_proof_nonce_wrong',
  'offline_proof_missing',
  'offline_tokens',
  'offline_hello',
  'offline_ok',
];

t.test('the spec-only python client reproduces spec §12 and runs a sealed session', async (t) => {
  const srv = await startServer({ tasks: { pollIntervalMs: 50 } });
  t.teardown(() => srv.close());
  const app = await addApp(srv.store, 'py-billing', 'open', Date.now(), pooledRandom());
  const run = await runClient(['--spec', SPEC, '--server', `127.0.0.1:${srv.port}`, '--app', app.id, '--key', app.key, '--instance', INSTANCE]);
  const f = run.facts;
  t.equal(run.stderr, '', 'nothing on stderr');
  t.equal(f.error, undefined, 'no error reported');
  t.equal(f.step, 'done', 'it ran to the end');

  for (const name of OFFLINE) t.equal(f[name], true, `offline: ${name}`);

  const user = `app:${app.id}/${INSTANCE}`;
  const expected: Record<string, unknown> = {
    seal_nonce_status: 200,
    open_forged_seal: 'ROTOR_E_SEAL_INVALID',
    open_unknown_app: 'ROTOR_E_APP_UNKNOWN',
    open_foreign_nonce: 'ROTOR_E_SEAL_NONCE_EXPIRED',
    open_status: 200,
    open_again: 'ROTOR_E_SEAL_NONCE_USED',
    open_low_order: 'ROTOR_E_SEAL_INVALID',
    confirm_status: 200,
    hello_status: 200,
    hello: `hello, ${user}`,
    work_status: 202,
    lost_reply_identical: true,
    task_status: 200,
    task_result_hex: Buffer.from('sealed \x00\r\n bytes').reverse().toString('hex'),
    replayed: 'ROTOR_E_SEAL_REPLAYED',
    replayed_then: 200,
    proof_missing: 'ROTOR_E_SEAL_PROOF_MISSING',
    proof_missing_then: 200,
    proof_wrong: 'ROTOR_E_SEAL_PROOF_WRONG',
    proof_wrong_then: 200,
    proof_malformed: 'ROTOR_E_SEAL_PROOF_WRONG',
    proof_malformed_then: 200,
    nonce_wrong: 'ROTOR_E_SEAL_NONCE_WRONG',
    nonce_wrong_then: 200,
    body_changed: 'ROTOR_E_SEAL_BODY_CHANGED',
    body_changed_then: 202,
    body_changed_task_status: 200,
    second_confirmed_by_use: 200,
    nonce_other_session: 'ROTOR_E_SEAL_NONCE_WRONG',
    clone_before_ack: 'replay',
    clone: 'ROTOR_E_TOKEN_REUSED',
    clone_then: 'ROTOR_E_SESSION_REVOKED',
    first_session_lives: 200,
    replayed_ack: 'ROTOR_E_SEAL_REPLAYED',
    replayed_old: 'ROTOR_E_SEAL_REPLAYED',
    replayed_old_then: 200,
    malleated_replay_then: 200,
    noncanonical_then: 200,
    meta_status: 200,
    logout_status: 200,
    after_logout: 'ROTOR_E_SESSION_REVOKED',
    // §12: the proof is checked before the session machine, so a revoked sealed session's token
    // without one is refused for the missing proof.
    after_logout_no_proof: 'ROTOR_E_SEAL_PROOF_MISSING',
  };
  for (const [name, value] of Object.entries(expected)) t.equal(f[name], value, name);
  // A re-encoded captured proof: refused either as not the key's MAC or as the replay it is — never a reuse.
  t.ok(['ROTOR_E_SEAL_PROOF_WRONG', 'ROTOR_E_SEAL_REPLAYED'].includes(String(f.malleated_replay)), `malleated_replay (${f.malleated_replay})`);
  // Where spec.md does not say (reported, not judged): does a low-order open spend its nonce; is a
  // non-canonical base64url MAC or digest (the right bytes) refused? Any answer the spec admits.
  t.ok([200, 'ROTOR_E_SEAL_NONCE_USED'].includes(f.probe_low_order_nonce_after as never), `probe_low_order_nonce_after (${f.probe_low_order_nonce_after})`);
  t.ok([200, 'ROTOR_E_SEAL_PROOF_WRONG'].includes(f.probe_noncanonical_mac as never), `probe_noncanonical_mac (${f.probe_noncanonical_mac})`);
  t.ok([200, 'ROTOR_E_SEAL_PROOF_WRONG', 'ROTOR_E_SEAL_BODY_CHANGED'].includes(f.probe_noncanonical_digest as never), `probe_noncanonical_digest (${f.probe_noncanonical_digest})`);
  t.same(f.meta, { build: 7, step: 'meta' }, 'meta: the open body merged with the PUT');
  t.ok(Number(f.generations) > 9, `generations (${f.generations}): the old replays were past seal.rememberGenerations`);
  t.equal(f.ok, true, 'ok');
  t.equal(run.code, 0, `exit code (${run.stdout.trim()})`);

  // The server agrees: the lost work ran once, with the body sent; the instance was registered.
  const task = await srv.store.loadTask(String(f.task));
  t.equal(task?.status, 'done', 'the task is done');
  t.equal(task?.result?.toString('latin1'), Buffer.from('sealed \x00\r\n bytes').reverse().toString('latin1'), 'the task result');
  const instances = await listInstances(srv.store, app.id);
  t.same(instances.map((i) => i.instance), [INSTANCE], 'the instance registered at its open');
});

t.test('a change to spec §12 fails the offline check, with a non-zero exit', async (t) => {
  const spec = readFileSync(SPEC, 'utf8');
  const proof = 'JK_wjvWnKnjhdYPxYugS0.47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU.KH_c_mU5pUDKiFiogT1rQg';
  t.ok(spec.includes(proof), 'the sealed-read proof is in spec.md');
  const dir = t.testdir({});
  const changed = `${dir}/spec.md`;
  writeFileSync(changed, spec.replace(proof, proof.slice(0, -1) + (proof.endsWith('g') ? 'A' : 'g')));
  const run = await runClient(['--spec', changed, '--offline']);
  t.equal(run.facts.offline_proof_read, false, 'the changed proof is caught');
  t.equal(run.facts.offline_proof_confirm, true, 'the others still match');
  t.equal(run.facts.offline_ok, false);
  t.equal(run.facts.ok, false);
  t.equal(run.code, 1);
});
