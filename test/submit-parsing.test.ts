/** What submission reads and writes as text: squeue JSON of several Slurm versions, time limits, job ids, templates. */
import { test } from 'vitest';
import assert from 'node:assert/strict';
import { countTasks, parseSlurmDuration, parseSqueueJson } from '../server/slurm.js';
import { parseJobIds } from '../scripts/commands/submit-grid.js';
import { renderTemplate, shQuote } from '../scripts/commands/submit-template.js';
import { checkPassThroughArgs } from '../scripts/commands/submit-credentials.js';
import { InputError } from '../server/errors.js';

test('squeue --json: Slurm 22.05 (plain values) and 23.02+ (state lists, {set, number}) shapes', () => {
  const v22 = JSON.stringify({
    jobs: [
      { job_id: 11, array_job_id: 10, array_task_id: 0, array_task_string: '', job_state: 'RUNNING' },
      { job_id: 12, array_job_id: 10, array_task_id: 1, array_task_string: '', job_state: 'COMPLETED' },
      { job_id: 10, array_job_id: 10, array_task_id: null, array_task_string: '2-5%2', job_state: 'PENDING' },
      { job_id: 20, array_job_id: 0, array_task_id: null, array_task_string: '', job_state: 'PENDING' },
    ],
  });
  assert.deepEqual(Object.fromEntries(parseSqueueJson(v22)), {
    '10': { queued: 4, running: 1, finished: 1 },
    '20': { queued: 1, running: 0, finished: 0 },
  });
  const v23 = JSON.stringify({
    jobs: [
      { job_id: 31, array_job_id: { set: true, infinite: false, number: 30 }, array_task_id: { set: true, number: 0 }, array_task_string: '', job_state: ['RUNNING'] },
      { job_id: 30, array_job_id: { set: true, number: 30 }, array_task_id: { set: false, number: 0 }, array_task_string: '1,3-4', job_state: ['PENDING'] },
      { job_id: 32, array_job_id: { set: true, number: 30 }, array_task_id: { set: true, number: 2 }, job_state: ['CANCELLED'] },
    ],
  });
  assert.deepEqual(Object.fromEntries(parseSqueueJson(v23)), { '30': { queued: 3, running: 1, finished: 1 } });
  assert.throws(() => parseSqueueJson('squeue: error: …'), /not JSON/);
  assert.equal(countTasks('0-11%3'), 12);
  assert.equal(countTasks('0-10:2'), 6);
});

test('Slurm time limits', () => {
  assert.equal(parseSlurmDuration('30'), 1800);
  assert.equal(parseSlurmDuration('30:15'), 1815);
  assert.equal(parseSlurmDuration('12:00:00'), 43200);
  assert.equal(parseSlurmDuration('2-00'), 172800);
  assert.equal(parseSlurmDuration('1-02:30'), 95400);
  assert.equal(parseSlurmDuration('1-00:00:10'), 86410);
  for (const bad of ['', 'soon', '1h', '12:00:00:00', '-1']) assert.equal(parseSlurmDuration(bad), null, bad);
});

test('job ids from the grid clients\' output', () => {
  assert.deepEqual(parseJobIds('dirac', 'JobID = 4242\n'), ['4242']);
  assert.deepEqual(parseJobIds('dirac', "JobID = [4242, 4243, 4244]\n"), ['4242', '4243', '4244']);
  assert.deepEqual(parseJobIds('dirac', 'ERROR: no proxy'), []);
  const glite = [
    'Connecting to the service https://wms.grid.sara.nl:7443/glite_wms_wmproxy_server',
    '====================== glite-wms-job-submit Success ======================',
    'The job has been successfully submitted to the WMProxy',
    'Your job identifier is:',
    '',
    'https://wms.grid.sara.nl:9000/Xq1d2mW3k4Ab5cD6eF7g',
  ].join('\n');
  assert.deepEqual(parseJobIds('glite', glite), ['https://wms.grid.sara.nl:9000/Xq1d2mW3k4Ab5cD6eF7g']);
});

test('templates: optional and repeated lines; a line break in a value is refused', () => {
  const t = '#A {{a}}\n#B {{b?}}\n#C {{c*}}\nend';
  assert.equal(renderTemplate(t, { a: 1, b: null, c: ['x', 'y'] }), '#A 1\n#C x\n#C y\nend');
  assert.equal(renderTemplate(t, { a: 1, b: 'z', c: [] }), '#A 1\n#B z\nend');
  assert.throws(() => renderTemplate(t, { a: 'ok\n#SBATCH --wrap=evil', c: [] }), InputError);
  assert.throws(() => renderTemplate(t, { a: 1, c: ['--qos=x\nrm -rf /'] }), InputError);
  assert.equal(shQuote("it's"), `'it'\\''s'`);
  assert.equal(shQuote('--step'), '--step');
});

test('agent flags passed to pilots may not carry an account', () => {
  assert.deepEqual(checkPassThroughArgs(['--step', 'cal1']), ['--step', 'cal1']);
  for (const bad of [['--password', 'x'], ['--db=http://a:b@host/db'], ['--credentials', 'f.json'], ['--command', 'curl http://u:secret@host/']]) {
    assert.throws(() => checkPassThroughArgs(bad), InputError, bad.join(' '));
  }
});
