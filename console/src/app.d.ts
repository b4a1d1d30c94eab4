declare global {
  namespace App {
    interface Locals {
      /** The signed-in operator's session or API token; undefined when signed out. */
      token?: string;
      /** How `token` was obtained: `session` (email and password) or `token` (an API token). */
      credential?: import("#lib/server/session.ts").CredentialKind;
      /** Who is signed in, from AuthService/WhoAmI; set on page requests. */
      me?: import("#lib/roles.ts").Me;
      /** Public API clients calling as that token. */
      api: import("#lib/server/api.ts").Api;
    }
  }
}

export {};
