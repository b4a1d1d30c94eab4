// A shell with a PTY on the agent's own host, without a native addon (the
// agent ships as a single executable): a small Python helper forks the shell on
// a pseudo-terminal and relays it over pipes; window sizes arrive on fd 3.
import { spawn } from 'node:child_process';
import type { Writable } from 'node:stream';
import type { Shell, ShellEvents } from './shell.ts';

const HELPER = String.raw`
import os, sys, pty, select, fcntl, termios, struct, signal, errno
rows, cols = int(sys.argv[1]), int(sys.argv[2])
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))
    shell = os.environ.get('SHELL') or '/bin/bash'
    os.execvp(shell, [shell, '-l'])
fl = fcntl.fcntl(fd, fcntl.F_GETFL)
fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
pending = b''
ctl = b''
inputs = [0, 3]
while True:
    r, w, _ = select.select(inputs + [fd], [fd] if pending else [], [])
    if fd in w:
        try:
            pending = pending[os.write(fd, pending):]
        except OSError as e:
            if e.errno != errno.EAGAIN: break
    if fd in r:
        try:
            data = os.read(fd, 65536)
        except OSError as e:
            if e.errno == errno.EAGAIN: continue
            break
        if not data: break
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]
    if 0 in r:
        data = os.read(0, 65536)
        if not data: break
        pending += data
    if 3 in r:
        data = os.read(3, 1024)
        if not data:
            inputs.remove(3)
            continue
        ctl += data
        while b'\n' in ctl:
            line, ctl = ctl.split(b'\n', 1)
            r2, c2 = (int(x) for x in line.split())
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', r2, c2, 0, 0))
try:
    os.killpg(os.getpgid(pid), signal.SIGHUP)
except OSError:
    pass
os.waitpid(pid, 0)
`;

export function openLocalShell(size: { cols: number; rows: number }, events: ShellEvents): Shell {
  const child = spawn('python3', ['-c', HELPER, String(size.rows), String(size.cols)], {
    stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
    env: { ...process.env, TERM: 'xterm-256color' },
  });
  const control = child.stdio[3] as Writable;
  let done = false;
  const exit = (reason: string) => {
    if (done) return;
    done = true;
    events.exit(reason);
  };
  child.stdout.on('data', (data: Buffer) => events.output(data));
  child.stderr.on('data', (data: Buffer) => events.output(data));
  child.on('error', (error) => exit(`cannot start a local shell (python3 is needed): ${error.message}`));
  child.on('close', (code) => exit(code === 0 ? 'the shell exited' : `the shell exited with code ${code}`));
  child.stdin.on('error', () => {});
  control.on('error', () => {});
  child.on('spawn', () => events.ready());
  return {
    write: (data, done) => void child.stdin.write(data, () => done()),
    resize: (cols, rows) => void control.write(`${rows} ${cols}\n`),
    pause: () => child.stdout.pause(),
    resume: () => child.stdout.resume(),
    close: () => {
      child.stdin.end();
      setTimeout(() => child.kill('SIGKILL'), 2_000).unref();
    },
  };
}
