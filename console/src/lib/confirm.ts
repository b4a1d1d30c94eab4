import type { SubmitFunction } from '$app/forms';

/** A `use:enhance` callback that submits only after the operator confirms. */
export function confirmFirst(message: string): SubmitFunction {
  return ({ cancel }) => {
    if (!confirm(message)) cancel();
  };
}
