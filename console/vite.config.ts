import adapter from '@sveltejs/adapter-node';
import { sveltekit } from '@sveltejs/kit/vite';
import { defineConfig } from 'vite';

export default defineConfig({
  plugins: [
    sveltekit({
      // Environment of the built server: CRONIUM_CONSOLE_ORIGIN, CRONIUM_CONSOLE_PROTOCOL_HEADER, …
      adapter: adapter({ out: process.env.CRONIUM_BUILD_CONSOLE_OUT || 'build', precompress: false, envPrefix: 'CRONIUM_CONSOLE_' }),
    }),
  ],
});
