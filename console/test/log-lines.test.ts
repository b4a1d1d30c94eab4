// WatchJob chunks → log lines for the virtual list: chunks split at newlines,
// a line continued across chunks, attempts marked, colours kept across lines.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LogLines } from '../src/lib/log-lines.ts';

const text = (log: LogLines) => log.lines.map((line) => (line.marker ? `#${line.attempt}` : line.segments.map((s) => `${s.stream}:${s.html}`).join('+')));

test('chunks become lines; a chunk that ends mid-line is continued by the next', () => {
  const log = new LogLines();
  log.add({ stream: 'stdout', data: 'one\ntw', attempt: 1, offset: 0 });
  log.add({ stream: 'stdout', data: 'o\nthree\n', attempt: 1, offset: 6 });
  log.add({ stream: 'stderr', data: 'oops\n\n', attempt: 1, offset: 0 });
  assert.deepEqual(text(log), ['#1', 'stdout:one', 'stdout:tw+stdout:o', 'stdout:three', 'stderr:oops', 'stderr:']);
  assert.deepEqual(log.lines.map((l) => l.key), [0, 1, 2, 3, 4, 5], 'keys stay put as lines grow');
});

test('a new attempt starts with a marker line, and a new line', () => {
  const log = new LogLines();
  log.add({ stream: 'stdout', data: 'no newline', attempt: 1, offset: 0 });
  log.add({ stream: 'system', data: 'retrying\n', attempt: 2, offset: 0 });
  assert.deepEqual(text(log), ['#1', 'stdout:no newline', '#2', 'system:retrying']);
});

test('HTML is escaped, and a colour set on one line holds on the next', () => {
  const log = new LogLines();
  log.add({ stream: 'stdout', data: '<b>\x1b[31mred\nstill red\x1b[0m\n', attempt: 1, offset: 0 });
  const [, first, second] = log.lines;
  assert.match(first!.segments[0]!.html, /^&lt;b&gt;<span style="color:rgb\(187,0,0\)">red<\/span>$/);
  assert.match(second!.segments[0]!.html, /<span style="color:rgb\(187,0,0\)">still red<\/span>/);
});
