// ESLint (flat config): typescript-eslint's recommended rules with type information, plus the
// rules this project relies on: no floating promises anywhere; workflow code that imports
// values only from @temporalio/workflow and other workflow modules (no Node built-ins, no
// activity code, no zod), so it stays deterministic and bundles for the workflow sandbox; and
// imports that point one way: entry points -> workflows/activities -> store/backends/inputs -> core.
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
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', caughtErrors: 'none' },
      ],
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
              message:
                'workflow code imports values only from @temporalio/workflow and workflow modules (./x); anything else only as types',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['core/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        { patterns: [{ regex: '^\\.\\./', message: 'core/ is the bottom layer: it imports only core modules (and libraries)' }] },
      ],
    },
  },
  {
    files: ['store/**/*.ts', 'backends/**/*.ts', 'inputs/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^\\.\\./(activities|workflows|workers|cli|bench|test|testing)(/|$)',
              message: 'store/, backends/ and inputs/ sit below activities and workflows: they import core/ and each other only',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['activities/**/*.ts', 'workers/**/*.ts', 'cli/**/*.ts', 'bench/**/*.ts', 'infra/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            { regex: '^\\.\\./test(/|$)', message: 'code outside test/ does not import tests; shared test doubles live in testing/' },
          ],
        },
      ],
    },
  },
  prettier,
);
