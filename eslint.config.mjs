// ESLint (flat config): typescript-eslint's recommended rules with type information, plus the
// two rules this project relies on: no floating promises anywhere, and workflow code that
// imports values only from @temporalio/workflow and other workflow modules (no Node built-ins,
// no activity code, no zod), so it stays deterministic and bundles for the workflow sandbox.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', '.srlm/', 'compute/', 'infra/compose/', '**/*.js', '**/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: globals.node,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': 'off',
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^(?!@temporalio/workflow$)(?!\\./[\\w-]+$)',
              allowTypeImports: true,
              message: 'workflow code imports values only from @temporalio/workflow and workflow modules (./x); anything else only as types',
            },
          ],
        },
      ],
    },
  },
  prettier,
);
