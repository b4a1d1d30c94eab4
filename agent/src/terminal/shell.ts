/** An interactive shell with a PTY, wherever it runs. */
export interface Shell {
  /** `done` once the shell's side took the bytes (flow-control credit back to the browser). */
  write(data: Uint8Array, done: () => void): void;
  resize(cols: number, rows: number): void;
  /** Stop / start reading output (flow control towards the control plane). */
  pause(): void;
  resume(): void;
  /** Ends the shell and its session: the processes under it get SIGHUP. */
  close(): void;
}

export interface ShellEvents {
  ready(): void;
  output(data: Uint8Array): void;
  /** Once, when the shell is gone (or never came). */
  exit(reason: string): void;
}
