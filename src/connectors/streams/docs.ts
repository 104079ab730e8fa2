/**
 * The README's broker table, written from the registry: one row per descriptor (kind, what the
 * source reads, URL, the fields it reads, delivery, acknowledgement), so the table cannot say
 * what the code does not. `npm run gen` rewrites it between the markers; a test fails when the
 * committed README differs from what this writes.
 */
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { BROKERS } from "./registry.js";
import type { BrokerDescriptor } from "./types.js";

export const README_MARKERS = {
  begin: "<!-- brokers:begin — generated from src/connectors/streams/registry.ts by `npm run gen`; edit the descriptors, not this table -->",
  end: "<!-- brokers:end -->",
} as const;

/** The table, in Markdown. */
export function brokerTable(): string {
  const rows = BROKERS.map((b) => [`\`${b.kind}\``, `${b.title}: ${b.description}`, urlOf(b), fieldsOf(b), b.delivery, b.ack]);
  const lines = [
    "| `broker:` | source | `url` | fields | delivery | acknowledgement |",
    "|---|---|---|---|---|---|",
    ...rows.map((cells) => `| ${cells.map(cell).join(" | ")} |`),
  ];
  return lines.join("\n");
}

/** `readme` with the text between the markers replaced by the table; throws when a marker is missing. */
export function withBrokerTable(readme: string): string {
  const begin = readme.indexOf(README_MARKERS.begin);
  const end = readme.indexOf(README_MARKERS.end);
  if (begin < 0 || end < begin) throw new Error(`README.md has no broker table markers (${README_MARKERS.begin} … ${README_MARKERS.end}).`);
  return `${readme.slice(0, begin + README_MARKERS.begin.length)}\n${brokerTable()}\n${readme.slice(end)}`;
}

function urlOf(b: BrokerDescriptor): string {
  return b.config.shape.url.description ?? "";
}

/** Every field but `url`: `subject` its meaning; … */
function fieldsOf(b: BrokerDescriptor): string {
  const shape = b.config.shape as Record<string, { description?: string } | undefined>;
  const names = Object.keys(shape).filter((n) => n !== "url");
  return names.length === 0 ? "none" : names.map((n) => `\`${n}\` ${shape[n]?.description ?? ""}`.trim()).join("; ");
}

/** A table cell: pipes escaped, line breaks flattened. */
function cell(text: string): string {
  return text.replace(/\|/g, "\\|").replace(/\s*\n\s*/g, " ");
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const readme = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "README.md");
  await writeFile(readme, withBrokerTable(await readFile(readme, "utf8")));
  process.stdout.write("wrote the broker table of README.md\n");
}
