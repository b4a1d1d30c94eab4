// Re-runs the page's load every `seconds` while the tab is visible (never more
// often than once a second), so lists stay current without hammering the API.
import { invalidateAll } from '$app/navigation';

export function refreshEvery(seconds: number): void {
  $effect(() => {
    const interval = Math.max(1, seconds) * 1000;
    const timer = setInterval(() => {
      if (document.visibilityState === 'visible') void invalidateAll();
    }, interval);
    return () => clearInterval(timer);
  });
}
