/** Benchmark flags: `--name value` or `--name=value`, plus boolean `--quick`. Unknown flags are an error. */
export type Flags = Record<string, string | boolean>;

export function parseFlags(argv: string[], known: Record<string, 'string' | 'number' | 'bool'>): Flags {
  const out: Flags = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument "${a}"`);
    let [name, value] = a.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    const type = known[name];
    if (!type) throw new Error(`unknown flag --${name} (known: ${Object.keys(known).map((k) => `--${k}`).join(' ')})`);
    if (type === 'bool') {
      out[name] = value === undefined ? true : value !== 'false';
      continue;
    }
    if (value === undefined) value = argv[++i];
    if (value === undefined) throw new Error(`--${name} needs a value`);
    if (type === 'number' && !Number.isFinite(Number(value.replace(/_/g, '')))) throw new Error(`--${name}: "${value}" is not a number`);
    out[name] = type === 'number' ? value.replace(/_/g, '') : value;
  }
  return out;
}

export function num(flags: Flags, name: string, dflt: number): number {
  return flags[name] === undefined ? dflt : Number(flags[name]);
}
