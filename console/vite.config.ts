import adapter from '@sveltejs/adapter-node';
import { sveltekit } from '@sveltejs/kit/vite';
import { defineConfig } from 'vite';

export default defineConfig({
  plugins: [
    sveltekit({
      // Environment of the built server: CRONIUM_CONSOLE_ORIGIN, CRONIUM_CONSOLE_PROTOCOL_HEADER, …
      adapter: adapter({ out: process.env.CRONIUM_BUILD_CONSOLE_OUT || 'build', precompress: false, envPrefix: 'CRONIUM_CONSOLE_' }),
      // Scripts only from the console itself (SvelteKit hashes its inline bootstrap).
      // Inline styles stay allowed: CodeMirror themes and ansi_up colours use them.
      csp: {
        mode: 'auto',
        directives: {
          'default-src': ['self'],
          'script-src': ['self'],
          'style-src': ['self', 'unsafe-inline'],
          'img-src': ['self', 'data:'],
          'connect-src': ['self'],
          'object-src': ['none'],
          'base-uri': ['self'],
          'form-action': ['self'],
          'frame-ancestors': ['none'],
        },
      },
    }),
  ],
});
