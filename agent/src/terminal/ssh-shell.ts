import type { ClientChannel } from 'ssh2';
import type { SshTarget } from '@cronium/proto/agent/v1';
import { connectSsh } from '../executors/ssh-fingerprint.ts';
import type { Shell, ShellEvents } from './shell.ts';

const INPUT_PIECE_BYTES = 4096;

/**
 * A login shell with a PTY on an SSH server, on a connection of its own (not
 * the job pool's), with the host key pinned as for jobs. Closing it ends the
 * connection, and sshd hangs up the shell.
 */
export function openSshShell(target: SshTarget, size: { cols: number; rows: number }, events: ShellEvents): Shell {
  let stream: ClientChannel | undefined;
  let end: (() => void) | undefined;
  let closed = false;
  let exited = false;
  const exit = (reason: string) => {
    if (exited) return;
    exited = true;
    end?.();
    events.exit(reason);
  };
  connectSsh(
    { host: target.host, port: target.port || 22, username: target.username, privateKey: target.privateKey, password: target.password },
    { expectedFingerprint: target.hostKeyFingerprint },
  ).then(
    ({ client }) => {
      end = () => client.end();
      client.on('error', (error) => exit(`ssh: ${error.message}`));
      client.on('close', () => exit('the SSH connection closed'));
      if (closed) return exit('closed');
      client.shell({ term: 'xterm-256color', cols: size.cols, rows: size.rows }, (error, channel) => {
        if (error) return exit(`ssh: cannot open a shell: ${error.message}`);
        stream = channel;
        channel.on('data', (data: Buffer) => events.output(data));
        channel.stderr.on('data', (data: Buffer) => events.output(data));
        channel.on('exit', (code: number | null) => exit(code === 0 || code === null ? 'the shell exited' : `the shell exited with code ${code}`));
        channel.on('close', () => exit('the shell exited'));
        if (closed) return exit('closed');
        events.ready();
      });
    },
    (error: Error) => exit(error.message),
  );
  // Keystrokes go out in pieces of at most 4 KiB, a millisecond apart while a
  // large paste drains: ssh2 (1.17) misreads the server's packets ("Bad packet
  // length", "Invalid MAC") when hundreds of KB are written to a channel at once.
  const queue: { data: Uint8Array; done: () => void }[] = [];
  let pumping = false;
  const pump = () => {
    const head = queue[0];
    if (!head || !stream) {
      pumping = false;
      for (const entry of queue.splice(0)) entry.done();
      return;
    }
    pumping = true;
    const piece = head.data.subarray(0, INPUT_PIECE_BYTES);
    head.data = head.data.subarray(piece.length);
    stream.write(piece, () => {
      if (head.data.length === 0) {
        queue.shift();
        head.done();
      }
      if (queue.length === 0) pumping = false;
      else setTimeout(pump, 1);
    });
  };
  return {
    write: (data, done) => {
      queue.push({ data, done });
      if (!pumping) pump();
    },
    resize: (cols, rows) => stream?.setWindow(rows, cols, 0, 0),
    pause: () => stream?.pause(),
    resume: () => stream?.resume(),
    close: () => {
      closed = true;
      stream?.close();
      end?.();
    },
  };
}
