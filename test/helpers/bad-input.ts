/**
 * Shared by the test/bad-input-*.test.ts files: figures printed next to the test output
 * (the report in docs/reliability/bad-input.md is filled from them).
 */
export function note(msg: string): void {
  process.stdout.write(`# ${msg.split('\n').join('\n# ')}\n`);
}
