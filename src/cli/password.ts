/**
 * Where a command's password comes from. `--password` works, but a command line is visible to
 * every user of the machine (`ps`, /proc/<pid>/cmdline), so the help steers to the others:
 * env ROTOR_PASSWORD, a prompt on the terminal that does not echo, or one line on stdin.
 */

export const PASSWORD_HELP =
  'the password; visible to other users of this machine via ps, so prefer env ROTOR_PASSWORD, one line on stdin, or the prompt (on a terminal, not echoed)';

/** `given` (--password), else ROTOR_PASSWORD, else the terminal prompt or stdin's first line. */
export async function readPassword(given: string | undefined): Promise<string> {
  const password = given ?? process.env.ROTOR_PASSWORD ?? (process.stdin.isTTY ? await promptHidden('password: ') : await firstLine(process.stdin));
  if (!password) throw new Error('no password: type it at the prompt, give it as one line on stdin or in ROTOR_PASSWORD (--password works but shows in ps)');
  return password;
}

/** The first line of a stream that is not a terminal (all of it if it has no newline). */
function firstLine(input: NodeJS.ReadStream): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const finish = (line: string) => {
      input.off('data', onData).off('end', onEnd).off('error', reject);
      input.pause();
      resolve(line.replace(/\r$/, ''));
    };
    const onData = (chunk: string) => {
      text += chunk;
      const newline = text.indexOf('\n');
      if (newline >= 0) finish(text.slice(0, newline));
    };
    const onEnd = () => finish(text);
    input.setEncoding('utf8');
    input.on('data', onData).on('end', onEnd).on('error', reject);
  });
}

/**
 * Read a line from the terminal in raw mode, so the terminal echoes nothing: Enter ends it,
 * Backspace and Ctrl-U edit it, Ctrl-C exits (130), Ctrl-D on an empty line gives ''.
 * Raw mode is on before the prompt shows, so nothing typed after it can be echoed.
 */
function promptHidden(prompt: string): Promise<string> {
  const input = process.stdin;
  return new Promise((resolve) => {
    let chars: string[] = [];
    const finish = () => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      process.stderr.write('\n');
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') {
          finish();
          return resolve(chars.join(''));
        }
        if (ch === '\u0003') {
          finish();
          process.exit(130);
        }
        if (ch === '\u0004' && chars.length === 0) {
          finish();
          return resolve('');
        }
        if (ch === '\u007f' || ch === '\b') chars.pop();
        else if (ch === '\u0015') chars = [];
        else if (ch === '\u001b') return; // an escape sequence (arrow keys…): none of it is the password
        else if (ch >= ' ') chars.push(ch);
      }
    };
    input.setRawMode(true);
    input.setEncoding('utf8');
    input.on('data', onData);
    input.resume();
    process.stderr.write(prompt);
  });
}
