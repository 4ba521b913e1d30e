import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'data/', 'node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'no-console': 'error',
    },
  },
  {
    files: ['src/start-all.ts'],
    rules: { 'no-console': 'off' },
  },
  {
    // The dashboard runs in the browser, as plain JavaScript without a build step.
    files: ['public/**/*.js'],
    languageOptions: { globals: globals.browser },
  },
  {
    // Tests poke at untyped JSON answers and raw tables on purpose.
    files: ['test/**'],
    rules: { 'no-console': 'off', '@typescript-eslint/no-explicit-any': 'off' },
  },
);
