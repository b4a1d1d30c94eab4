// A job's environment as POSIX shell text, for an SSH job's wrapper.

/** A shell word for the value: single quotes, each `'` written as `'\''`. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `export NAME='value'` lines; names that are not shell identifiers, or values with NUL, are left out and named. */
export function exportLines(env: Readonly<Record<string, string>>): { lines: string[]; skipped: string[] } {
  const lines: string[] = [];
  const skipped: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (!ENV_NAME.test(name) || value.includes('\0')) skipped.push(name);
    else lines.push(`export ${name}=${shellQuote(value)}`);
  }
  return { lines, skipped };
}
