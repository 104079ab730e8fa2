/**
 * Reading JSON log lines strictly: JSON.parse keeps the last of two equal keys without a word,
 * so a line that repeats `owner` looks fine to it. This scanner walks the text and reports every
 * object key that occurs twice in the same object, at any depth, with its path.
 */

/** The repeated keys of one JSON text ("owner", "outputs.rows"); throws if it is not JSON. */
export function duplicateKeys(text: string): string[] {
  let i = 0;
  const dups: string[] = [];
  const ws = () => {
    while (i < text.length && " \t\r\n".includes(text[i]!)) i++;
  };
  const str = (): string => {
    const start = i;
    i++; // opening quote
    while (text[i] !== '"') {
      if (i >= text.length) throw new Error(`unterminated string at ${start}`);
      i += text[i] === "\\" ? 2 : 1;
    }
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (path: string): void => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const seen = new Set<string>();
      ws();
      if (text[i] === "}") return void i++;
      for (;;) {
        ws();
        if (text[i] !== '"') throw new Error(`expected a key at ${i}`);
        const k = str();
        if (seen.has(k)) dups.push(path ? `${path}.${k}` : k);
        seen.add(k);
        ws();
        if (text[i++] !== ":") throw new Error(`expected : at ${i - 1}`);
        value(path ? `${path}.${k}` : k);
        ws();
        const sep = text[i++];
        if (sep === "}") return;
        if (sep !== ",") throw new Error(`expected , or } at ${i - 1}`);
      }
    }
    if (c === "[") {
      i++;
      ws();
      if (text[i] === "]") return void i++;
      for (let n = 0; ; n++) {
        value(`${path}[${n}]`);
        ws();
        const sep = text[i++];
        if (sep === "]") return;
        if (sep !== ",") throw new Error(`expected , or ] at ${i - 1}`);
      }
    }
    if (c === '"') return void str();
    const m = /^(-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i, i + 400));
    if (!m) throw new Error(`unexpected ${JSON.stringify(c)} at ${i}`);
    i += m[0].length;
  };
  value("");
  ws();
  if (i !== text.length) throw new Error(`trailing text at ${i}`);
  JSON.parse(text); // and valid JSON as a whole
  return dups;
}

/** The JSON lines of a process's stderr (lines starting with "{"), each checked for repeated keys. */
export function jsonLinesOf(stderr: string): { line: string; doc: Record<string, unknown>; dups: string[] }[] {
  return stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((line) => ({ line, doc: JSON.parse(line) as Record<string, unknown>, dups: duplicateKeys(line) }));
}
