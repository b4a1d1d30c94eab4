// Terminals on the agent's own host (enable_terminal): the agent's terminal
// end driven by link messages, with a real shell on a real pseudo-terminal.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, test } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { ConnectResponseSchema, type ConnectRequest, type ConnectResponse } from '@cronium/proto/agent/v1';
import { Terminals } from '../src/terminal/terminals.ts';

function harness(localEnabled: boolean) {
  const sent: ConnectRequest[] = [];
  const terminals = new Terminals({ send: (message) => sent.push(message), localEnabled, sshEnabled: false, log: () => {} });
  let seq = 0n;
  const output = (id: string) =>
    Buffer.concat(sent.flatMap((m) => (m.kind.case === 'terminalData' && m.kind.value.id === id ? [Buffer.from(m.kind.value.data)] : []))).toString();
  const closed = (id: string) => sent.find((m) => m.kind.case === 'terminalClose' && m.kind.value.id === id)?.kind.value as { reason: string } | undefined;
  const deliver = (kind: ConnectResponse['kind']) => terminals.receive(create(ConnectResponseSchema, { kind } as never));
  const type = (id: string, text: string) => {
    const data = Buffer.from(text);
    deliver({ case: 'terminalData', value: { id, seq, data } } as never);
    seq += BigInt(data.length);
  };
  async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const value = probe();
      if (value) return value;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`timed out waiting for ${what}; output so far: ${JSON.stringify(output('t1'))}`);
  }
  return { terminals, sent, output, closed, deliver, type, waitFor };
}

test('a local terminal runs a shell on a PTY: input, resize, Ctrl-C, Unicode; closing it ends the shell', async () => {
  const { terminals, sent, output, closed, deliver, type, waitFor } = harness(true);
  after(() => terminals.closeAll('test over'));
  deliver({ case: 'terminalOpen', value: { id: 't1', local: true, cols: 100, rows: 30 } } as never);
  await waitFor('opened', () => sent.some((m) => m.kind.case === 'terminalOpened'));
  type('t1', 'echo $((6*7)); stty size\n');
  await waitFor('42 and the size', () => /\r42\r\n30 100\r\n/.test(output('t1')));
  deliver({ case: 'terminalResize', value: { id: 't1', cols: 70, rows: 20 } } as never);
  type('t1', 'stty size\n');
  await waitFor('the new size', () => /\r20 70\r\n/.test(output('t1')));
  type('t1', 'sleep 100\n');
  await new Promise((resolve) => setTimeout(resolve, 300));
  type('t1', '\x03');
  type('t1', "export LC_ALL=C.UTF-8; printf 'after-%s ✓\\n' ok; echo PID $$\n");
  const pid = Number((await waitFor('the pid', () => /after-ok ✓\r\nPID (\d+)/.exec(output('t1'))))![1]);
  assert.ok(existsSync(`/proc/${pid}`));
  // Keystrokes are acknowledged, which gives the browser its credit back.
  assert.ok(sent.some((m) => m.kind.case === 'terminalAck' && m.kind.value.id === 't1'));
  deliver({ case: 'terminalClose', value: { id: 't1', reason: 'closed by the browser' } } as never);
  await waitFor('the shell to end', () => !existsSync(`/proc/${pid}`));
  assert.equal(closed('t1'), undefined, 'a terminal the control plane closed is not closed back');
});

test('an agent without enable_terminal refuses a local terminal', () => {
  const { closed, deliver } = harness(false);
  deliver({ case: 'terminalOpen', value: { id: 't2', local: true, cols: 80, rows: 24 } } as never);
  assert.match(closed('t2')?.reason ?? '', /enable_terminal is off/);
});
