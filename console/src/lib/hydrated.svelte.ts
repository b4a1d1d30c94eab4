/**
 * Whether the page has started in the browser: pages put it on an element as
 * `data-hydrated`, so browser tests type only once the page's scripts run.
 */
export function hydration(): { readonly done: boolean } {
  let done = $state(false);
  $effect(() => {
    done = true;
  });
  return {
    get done() {
      return done;
    },
  };
}
