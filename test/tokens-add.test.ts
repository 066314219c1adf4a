/**
 * `tokenpool tokens add` end to end: real CLI, real embedded server. SURL lists from the three LTA
 * sites are added twice (each token created once); every bad input is refused with its line or
 * field named, a non-zero exit, and nothing written.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTestServer, type TestServer } from './helpers/server.js';
import { runCli } from './helpers/cli.js';
import type { Pool } from '../server/client.js';
import { initDatabase } from '../server/setup.js';
import { inputFilesOf, validateToken, type Token } from '../server/token.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const surls = (name: string) => path.join(FIXTURES, 'surls', name);
const spec = (name: string) => path.join(FIXTURES, 'specs', name);

let server: TestServer;
let tmp: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  server = await startTestServer();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-add-test-'));
  env = { TOKENPOOL_CREDENTIALS: server.adminCredentialsFile() };
});

afterAll(async () => {
  await server?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function freshPool(): Promise<{ dbUrl: string; pool: Pool }> {
  const dbUrl = server.newDbUrl('add');
  const pool = server.adminPool(dbUrl);
  await initDatabase(pool, { guard: true });
  return { dbUrl, pool };
}

async function tokens(pool: Pool): Promise<Token[]> {
  const res = await pool.db.list({ include_docs: true });
  return res.rows.map((r) => r.doc as Token).filter((d) => d.type === 'token');
}

const docCount = async (pool: Pool) => (await pool.db.info()).doc_count;

test('SURL lists from SARA, Jülich and Poznań: added twice, each token is created once', async () => {
  const { dbUrl, pool } = await freshPool();
  const lists = [
    ['sara-L229507.txt', 'L229507', 'sara', 20],
    ['juelich-L583127.txt', 'L583127', 'juelich', 12],
    ['poznan-L555005.txt', 'L555005', 'poznan', 10],
  ] as const;
  for (const [file, , , n] of lists) {
    const first = await runCli(['tokens', 'add', '--surls', surls(file), '--step', 'cal1', '--db', dbUrl, '--json'], { env });
    assert.equal(first.code, 0, first.stderr);
    const summary = JSON.parse(first.stdout);
    assert.equal(summary.created, n);
    assert.equal(summary.already_present, 0);
  }
  const again = await runCli(['tokens', 'add', '--surls', surls('sara-L229507.txt'), '--step', 'cal1', '--db', dbUrl], { env });
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /created 0, already present 20, duplicate lines dropped 1/);

  const all = await tokens(pool);
  assert.equal(all.length, 42);
  for (const t of all) assert.ok(validateToken(t).ok, t._id);
  for (const [, obsid, site] of lists) {
    const mine = all.filter((t) => t.obsid === obsid);
    assert.ok(mine.every((t) => t.site === site && t.step === 'cal1' && t.status === 'todo' && t.input.length === 1));
  }
  const sb100 = all.find((t) => t._id === 'L229507_cal1_SB100')!;
  assert.match(inputFilesOf(sb100)[0]!.url, /^srm:\/\/srm\.grid\.sara\.nl:8443\/.*L229507_SB100_uv\.dppp\.MS_[0-9a-f]{8}\.tar$/);
  assert.equal(sb100.project, 'lc2_038');
});

test('--group puts consecutive subbands in one token; flags fill the token fields; --staging holds them back', async () => {
  const { dbUrl, pool } = await freshPool();
  const r = await runCli(
    ['tokens', 'add', '--surls', surls('juelich-L583127.txt'), '--step', 'target', '--group', '5', '--command', 'run.sh', '--image', 'lofar/lofar:4', '--priority', '3', '--max-attempts', '5', '--staging', '--db', dbUrl],
    { env },
  );
  assert.equal(r.code, 0, r.stderr);
  const all = await tokens(pool);
  assert.deepEqual(all.map((t) => t._id).sort(), ['L583127_target_SB000-004', 'L583127_target_SB005-009', 'L583127_target_SB010-011']);
  const first = all.find((t) => t._id === 'L583127_target_SB000-004')!;
  assert.deepEqual(first.subbands, [0, 1, 2, 3, 4]);
  assert.equal(first.input.length, 5);
  assert.equal(first.status, 'staging');
  assert.equal(first.command, 'run.sh');
  assert.equal(first.image, 'lofar/lofar:4');
  assert.equal(first.priority, 3);
  assert.equal(first.max_attempts, 5);
});

test('a YAML spec and NDJSON on stdin create the tokens they describe', async () => {
  const { dbUrl, pool } = await freshPool();
  const y = await runCli(['tokens', 'add', '--spec', spec('target.yaml'), '--db', dbUrl, '--json'], { env });
  assert.equal(y.code, 0, y.stderr);
  assert.equal(JSON.parse(y.stdout).created, 2);
  const t = (await pool.db.get('L229507_target1_SB110-119')) as Token;
  assert.equal(t.requirements.cores, 8);
  assert.equal(t.max_attempts, 4);
  assert.equal(t.parset, 'target.parset');
  assert.equal(t.results, '${RESULTS}/${OBSID}/${STEP}/${TOKEN_ID}.tar');

  const n = await runCli(['tokens', 'add', '--ndjson', '-', '--db', dbUrl], { env, input: fs.readFileSync(spec('tokens.ndjson'), 'utf8') });
  assert.equal(n.code, 0, n.stderr);
  assert.match(n.stdout, /created 3/);
  assert.equal(((await pool.db.get('L229507_cal1_SB002')) as Token).requirements.cores, 2);
});

test('files without a flag: a SURL list, a YAML spec and NDJSON are told apart by their content and written together', async () => {
  const { dbUrl, pool } = await freshPool();
  // Extensions that say nothing: only the content tells the kind.
  const files = [surls('sara-L229507.txt'), spec('target.yaml'), spec('tokens.ndjson')].map((from, i) => {
    const to = path.join(tmp, `input-${i}.dat`);
    fs.copyFileSync(from, to);
    return to;
  });
  const bad = path.join(tmp, 'input-bad.dat');
  fs.writeFileSync(bad, '{"observation": "L229507", "step": "cal1", "subbands": [7]}\n{"observation": "X1", "step": "cal1", "subbands": [8]}\n');

  const refused = await runCli(['tokens', 'add', ...files, bad, '--step', 'cal1', '--db', dbUrl], { env });
  assert.equal(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, /input-bad\.dat: line 2: token X1_cal1_SB008: obsid/);
  assert.equal((await tokens(pool)).length, 0, 'one bad file: nothing written');

  const r = await runCli(['tokens', 'add', ...files, '--step', 'cal1', '--db', dbUrl, '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).created, 20 + 2 + 3);
  const all = await tokens(pool);
  assert.equal(all.filter((t) => t.step === 'cal1' && t.input.length === 1).length, 20, 'the SURL list');
  assert.ok(all.some((t) => t._id === 'L229507_target1_SB110-119'), 'the YAML spec');
  assert.equal(((await pool.db.get('L229507_cal1_SB002')) as Token).requirements.cores, 2, 'the NDJSON');

  const stdin = await runCli(['tokens', 'add', '-', '--step', 'cal1', '--db', dbUrl, '--json'], { env, input: fs.readFileSync(surls('poznan-L555005.txt'), 'utf8') });
  assert.equal(stdin.code, 0, stdin.stderr);
  assert.equal(JSON.parse(stdin.stdout).created, 10, 'a SURL list on stdin');
});

test('usage errors name the flag, suggest the close one and show the example that fits; exported TOKENPOOL_* settings of other verbs are no unknown flags', async () => {
  const typo = await runCli(['tokens', 'add', '--sruls', 'x.txt', '--step', 'cal1']);
  assert.equal(typo.code, 2);
  assert.match(typo.stderr, /^error: Unknown argument: sruls\n  did you mean --surls\?\nexample: tokenpool tokens add --surls L229507\.txt --step cal1 --group 10\nall options: tokenpool tokens add --help\n$/);

  const missing = await runCli(['db', 'user', 'add', 'pilot', '--out', 'pilot.json']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /error: Missing required argument: role\nexample: tokenpool db user add pilot --role agent/);

  const none = await runCli(['tokens']);
  assert.equal(none.code, 2);
  assert.match(none.stdout + none.stderr, /tokenpool tokens add[\s\S]*error: Name a tokens subcommand/);

  // TOKENPOOL_DB is exported for the other verbs (the README's flow); `server` does not take it, and does not name it.
  const bogus = await runCli(['server', '--port', '0', '--data', path.join(tmp, 'server-data'), '--in-memory', '--bogus'], { env: { TOKENPOOL_DB: 'http://127.0.0.1:5984/lofar' } });
  assert.equal(bogus.code, 2);
  assert.match(bogus.stderr, /Unknown argument: bogus/);
  assert.doesNotMatch(bogus.stderr, /\bdb\b/);
});

test('bad input is refused with the line or field named, a non-zero exit, and nothing written', async () => {
  const { dbUrl, pool } = await freshPool();
  const before = await docCount(pool);
  const badJson = path.join(tmp, 'bad.ndjson');
  fs.writeFileSync(badJson, '{"observation": "L1", "step": "a", "subbands": [1]}\n{"observation": "L1", "step": \n');
  const badToken = path.join(tmp, 'bad-token.ndjson');
  fs.writeFileSync(badToken, '{"observation": "L1", "step": "a", "subbands": [1]}\n{"observation": "X17", "step": "a", "subbands": [2]}\n');
  const notSpec = path.join(tmp, 'broken.json');
  fs.writeFileSync(notSpec, '{"observation": "L1",,}');
  const cases: [string[], RegExp, string?][] = [
    [['--surls', surls('bad-site.txt'), '--step', 'cal1'], /line 7: unknown LTA site host srm\.example\.org/],
    [['--surls', surls('bad-name.txt'), '--step', 'cal1'], /line 2: file name calibrator\.MS\.tar does not look like L<obsid>_SB<nnn>[\s\S]*line 4: not a URL/],
    [['--surls', surls('mixed-obs.txt'), '--step', 'cal1'], /line 3: observation L555005 differs from L229507 \(line 1\); pass --allow-mixed/],
    [['--surls', surls('sara-L229507.txt')], /--step: a SURL list needs --step NAME/],
    [['--surls', surls('sara-L229507.txt'), '--step', 'bad step'], /--step "bad step" is not usable/],
    [['--surls', path.join(tmp, 'missing.txt'), '--step', 'cal1'], /cannot read SURL list .*missing\.txt: ENOENT/],
    [['--spec', spec('bad-field.json')], /bad-field\.json \[1\]: priority: Invalid input: expected number, received string/],
    [['--spec', notSpec], /broken\.json is not valid JSON/],
    [['--ndjson', badJson], /line 2: bad JSON/],
    [['--ndjson', badToken], /line 2: token X17_a_SB002: obsid: must look like L229507/],
    [['--ndjson', '-'], /line 1: must be a JSON object/, '[1, 2]\n'],
    [['--ndjson', '-'], /line 1: comand: |line 1: .*Unrecognized key.*comand/i, '{"observation": "L1", "step": "a", "comand": "x"}\n'],
    [['--surls', surls('sara-L229507.txt'), '--spec', spec('target.yaml'), '--step', 'x'], /exactly one of --surls/],
  ];
  for (const [args, message, input] of cases) {
    const r = await runCli(['tokens', 'add', ...args, '--db', dbUrl], { env, input });
    assert.notEqual(r.code, 0, `${args.join(' ')} should fail`);
    assert.match(r.stderr, message, args.join(' '));
    assert.equal(await docCount(pool), before, `${args.join(' ')} wrote nothing`);
    assert.ok(!(r.stdout + r.stderr).includes(server.admin.password), 'the password never appears in output');
  }
  const unknown = await runCli(['tokens', 'show', 'L1_nope_SB001', '--db', dbUrl], { env });
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /no token L1_nope_SB001 in /);
});

test('--skip-invalid adds the valid lines and reports the others; --allow-mixed accepts several observations; --dry-run writes nothing', async () => {
  const { dbUrl, pool } = await freshPool();
  const dry = await runCli(['tokens', 'add', '--surls', surls('sara-L229507.txt'), '--step', 'cal1', '--dry-run', '--db', dbUrl], { env });
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /dry run: 20 valid tokens, nothing written/);
  assert.equal((await tokens(pool)).length, 0);

  const skip = await runCli(['tokens', 'add', '--surls', surls('bad-site.txt'), '--step', 'cal1', '--skip-invalid', '--db', dbUrl, '--json'], { env });
  assert.equal(skip.code, 0, skip.stderr);
  const summary = JSON.parse(skip.stdout);
  assert.equal(summary.created, 5);
  assert.equal(summary.invalid, 1);
  assert.match(skip.stderr, /line 7: unknown LTA site host/);

  const mixed = await runCli(['tokens', 'add', '--surls', surls('mixed-obs.txt'), '--step', 'cal1', '--allow-mixed', '--db', dbUrl], { env });
  assert.equal(mixed.code, 0, mixed.stderr);
  assert.equal(((await pool.db.get('L555005_cal1_SB300')) as Token).site, 'poznan');

  const local = await runCli(['tokens', 'add', '--surls', surls('local-L700001.txt'), '--step', 'demo', '--db', dbUrl], { env });
  assert.equal(local.code, 0, local.stderr);
  const demo = (await pool.db.get('L700001_demo_SB000')) as Token;
  assert.equal(demo.site, null);
  assert.match(inputFilesOf(demo)[0]!.url, /^file:\/\/\/srv\/lta\/L700001\//);
});
