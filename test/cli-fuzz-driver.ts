// Runs many command lines of the CLI in one process, for the fuzz target of every command's
// arguments (test/fuzz.test.ts): reads { cases: string[][] } on stdin, runs each in the current
// folder with commander's usage errors thrown instead of exiting, and prints one JSON line per case
// with the exit code and what the command wrote.
import type { Command } from 'commander';
import { buildProgram } from '../src/cli.js';
import { runProgram } from '../src/cli-common.js';

function quiet(cmd: Command, out: { text: string }): void {
  cmd.exitOverride().configureOutput({ writeOut: (s) => (out.text += s), writeErr: (s) => (out.text += s) });
  for (const c of cmd.commands) quiet(c, out);
}

const input = JSON.parse(await new Promise<string>((resolve) => {
  let s = '';
  process.stdin.setEncoding('utf8').on('data', (c: string) => (s += c)).on('end', () => resolve(s));
})) as { cases: string[][] };

process.setMaxListeners(0);
const realOut = process.stdout.write.bind(process.stdout);
const realErr = process.stderr.write.bind(process.stderr);
for (const argv of input.cases) {
  const out = { text: '' };
  const capture = ((s: string | Uint8Array) => {
    out.text += typeof s === 'string' ? s : Buffer.from(s).toString();
    return true;
  }) as typeof process.stdout.write;
  process.stdout.write = capture;
  process.stderr.write = capture;
  let code: number;
  try {
    const program = buildProgram();
    quiet(program, out);
    code = await runProgram(program, ['node', 'semdedup', ...argv]);
  } finally {
    process.stdout.write = realOut;
    process.stderr.write = realErr;
  }
  realOut(JSON.stringify({ code, out: out.text.slice(0, 2000) }) + '\n');
}
