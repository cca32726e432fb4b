// The schema rendered as documentation: the markdown table of every key (README, `semdedup config --doc`).
import { configSchema, type ConfigKeySpec } from './schema.js';

const SCHEMA: readonly ConfigKeySpec[] = configSchema;

function typeText(spec: ConfigKeySpec): string {
  switch (spec.kind) {
    case 'path':
      return 'path';
    case 'paths':
      return 'path, folder, glob or list of paths';
    case 'enum':
      return (spec.values ?? []).map((v) => `\`${v}\``).join(' \\| ');
    case 'posint':
      return 'integer ≥ 1';
    case 'nonnegint':
      return 'integer ≥ 0';
    case 'int':
      return 'integer';
    case 'bool':
      return 'boolean';
    case 'epsList':
      return 'list of numbers in (0, 1)';
    case 'similarityList':
      return 'number or list of numbers in (0, 1)';
    case 'strDtype':
      return 'string dtype (`S24`, `U40`)';
    case 'compat':
      return 'path or None';
    case 'string':
      return 'string';
    case 'rankBy':
      return '`{column, order}` or `column:desc`';
  }
}

/** Renders `configSchema` as a markdown table (key, aliases, type, default, description). */
export function formatConfigDoc(): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const lines = [
    '| key | original names | type | default | description |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const s of SCHEMA) {
    const names = [
      ...s.aliases.map((a) => `\`${a.name}\` (${a.file})`),
      ...(s.sameNameIn?.length ? [`same name (${s.sameNameIn.join(', ')})`] : []),
    ];
    lines.push(
      `| \`${s.key}\` | ${names.join(', ') || '—'} | ${typeText(s)} | ${esc(s.defaultText)} | ${esc(s.description)} |`,
    );
  }
  return lines.join('\n');
}

