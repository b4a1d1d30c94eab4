/** Keys set through the API: usable as environment variable names. */
const KEY = /^[A-Z_][A-Z0-9_]*$/;
const MAX_KEY_LENGTH = 128;

/** Names the runtime sets in every job's environment; a variable may not shadow them. */
export const RESERVED_PREFIXES = ['CRONIUM_'] as const;
export const RESERVED_NAMES = ['BASH_ENV', 'PYTHONPATH', 'NODE_PATH'] as const;

/** Why a key is refused, or undefined when it is fine. */
export function keyProblem(key: string): string | undefined {
  if (!key) return 'required';
  if (key.length > MAX_KEY_LENGTH) return `at most ${MAX_KEY_LENGTH} characters`;
  if (!KEY.test(key)) return 'must match ^[A-Z_][A-Z0-9_]*$ (upper-case letters, digits and _)';
  const prefix = RESERVED_PREFIXES.find((p) => key.startsWith(p));
  if (prefix) return `the prefix ${prefix} is reserved for Cronium`;
  if ((RESERVED_NAMES as readonly string[]).includes(key)) return `${key} is reserved for the runtime helpers`;
  return undefined;
}
