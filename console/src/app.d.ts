declare global {
  namespace App {
    interface Locals {
      /** The API token of the signed-in operator; undefined when signed out. */
      token?: string;
      /** Public API clients calling as that token. */
      api: import("#lib/server/api.ts").Api;
    }
  }
}

export {};
