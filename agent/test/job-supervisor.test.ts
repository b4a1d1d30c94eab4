// The supervisor's exit line, found in output split anywhere, and nothing else taken out.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { envFile, ExitLineScanner, handOver } from '../src/executors/job-supervisor.ts';

function scan(nonce: string, text: string, cut: (i: number) => boolean) {
  const scanner = new ExitLineScanner(nonce);
  const bytes = Buffer.from(text);
  let out = '';
  let start = 0;
  for (let i = 1; i <= bytes.length; i++) {
    if (i === bytes.length || cut(i)) {
      out += scanner.push(bytes.subarray(start, i)).toString();
      start = i;
    }
  }
  if (!scanner.exit) out += scanner.flush().toString();
  return { out, exit: scanner.exit };
}

describe('ExitLineScanner', () => {
  const { nonce } = handOver('job');
  const line = `CRONIUM-EXIT-${nonce} 3 0\n`;

  test('the exit line ends the job output, wherever the chunks are cut', () => {
    const text = `one\nCRONIUM-EXIT-\nCRONIUM-EXIT-${'f'.repeat(32)} 0 0\ntwo, no newline${line}after`;
    for (const cut of [() => false, () => true, (i: number) => i % 7 === 0, (i: number) => i % 13 === 5]) {
      const { out, exit } = scan(nonce, text, cut);
      assert.equal(out, `one\nCRONIUM-EXIT-\nCRONIUM-EXIT-${'f'.repeat(32)} 0 0\ntwo, no newline`);
      assert.deepEqual(exit, { exitCode: 3, oomKills: 0 });
    }
  });

  test('without the exit line everything passes, held bytes included', () => {
    const text = `a\nCRONIUM-EXIT-${nonce.slice(0, 10)}`;
    for (const cut of [() => false, () => true]) assert.deepEqual(scan(nonce, text, cut), { out: text, exit: undefined });
  });

  test('a malformed line with the token is output; an unknown oom count is undefined', () => {
    const text = `CRONIUM-EXIT-${nonce} x\nCRONIUM-EXIT-${nonce} 137 ?\n`;
    assert.deepEqual(scan(nonce, text, () => false), { out: `CRONIUM-EXIT-${nonce} x\n`, exit: { exitCode: 137, oomKills: undefined } });
  });
});

test('envFile: NUL-ended records in order; names it cannot pass are named', () => {
  const { content, skipped } = envFile({ A: "it's", 'my.var': 'x\ny', '': 'e', 'B=C': 'd', D: 'nul\0' });
  assert.equal(content.toString(), "A=it's\0my.var=x\ny\0");
  assert.deepEqual(skipped, ['', 'B=C', 'D']);
});
