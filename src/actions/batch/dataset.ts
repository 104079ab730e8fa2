/**
 * Datasets pass between steps by reference: a small JSON manifest in the run's artifact area
 * naming the data files, their format, the schema once known, and the running accounting of
 * every input record (stored, quarantined or duplicate). Steps read the manifest named in
 * `${{ steps.X.outputs.dataset }}` and write a new one; data never sits in the state store.
 *
 * Each attempt writes into a fresh folder (`<artifacts>/<step>/`), cleared first, so a retried
 * or resumed step never sees a half-written output of an earlier attempt.
 */
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { SluiceError } from "../../errors.js";
import type { FileFormat } from "../../formats/types.js";
import type { RowHashKind } from "../../formats/stage.js";
import type { ActionContext } from "../types.js";
import type { Column, QuarantinedRecord } from "./model.js";
import { loadKeyring, type Keyring } from "../../crypto/keyring.js";
import type { EnvelopeContext } from "../../crypto/envelope.js";
import type { DecryptWith } from "../../formats/types.js";

export const DATASET_KIND = "sluice.dev/dataset-v1";

export interface DatasetPart {
  /** Absolute path of the data file. */
  path: string;
  /**
   * A file format; `stage`: typed rows between steps (formats/stage.ts); `unknown`: a collected
   * file whose extension names no format (the schema's `read.format` must say).
   */
  format: FileFormat | "stage" | "unknown";
  /** Where these records originally came from (file path, URL without credentials, table). */
  source: string;
  /** Records in this part when known (typed parts always; raw collected files: after parsing). */
  rows?: number;
  bytes?: number;
  sha256?: string;
  /** CSV reading options for raw parts. */
  csv?: { delimiter?: string; quote?: string; header?: boolean; columns?: string[]; encoding?: string };
  /** Reading options for raw parts beyond the CSV dialect (the text encoding). */
  read?: { encoding?: string };
  /**
   * Written by an earlier step (the parse step of the bulk workflow) in Sluice's own form: read
   * with the part's own format and options, never with a schema's `read:` options, which
   * describe the user's source files.
   */
  intermediate?: boolean;
  /**
   * The file is in the envelope format (crypto/envelope.ts): readers open it through a
   * decrypting stream (`partDecryption`), and its plaintext never touches the disk.
   */
  encrypted?: EncryptedPart;
}

/**
 * The dialect of the CSV parts the parse step writes for CSV/TSV sources (DatasetPart.intermediate):
 * RFC 4180 in UTF-8 with a header, whatever the source's own dialect and encoding.
 */
export const INTERMEDIATE_CSV = { delimiter: ",", quote: '"', header: true, encoding: "utf-8" } as const;

/** How a part was encrypted: the KEK's id and version, where the keyring is (a reference, never a key), the data key's context. */
export interface EncryptedPart {
  keyId: string;
  version: number;
  /** The step's `key`: a keyring file, or an `env:` / `file:` reference. */
  keyring: string;
  context: EnvelopeContext;
}

/** Record counts from the source to here; `rowsIn = rowsOut + rowsQuarantined + rowsDuplicate`. */
export interface Accounting {
  rowsIn: number;
  rowsQuarantined: number;
  rowsDuplicate: number;
}

/**
 * Files a dataset was read from, carried in `meta.ingest` from discovery to storage, which
 * records them in the ledger once their rows are committed.
 */
export interface IngestMeta {
  scope: string;
  files: { path: string; checksum: string; size: number }[];
}

export interface Dataset {
  kind: typeof DATASET_KIND;
  /** The step that produced it. */
  step: string;
  /** Typed once a conversion step has applied a schema; raw before. */
  typed: boolean;
  columns?: Column[];
  key?: string[];
  /**
   * The content hash of the staged rows (formats/stage.ts `RowHashKind`): `text` when they were
   * typed with a key, absent for `canonical`. A store step whose target has no key re-hashes
   * `text` rows, since there the hash is the row's identity.
   */
  hash?: RowHashKind;
  parts: DatasetPart[];
  /** Rows in `parts` (known for typed datasets). */
  rows?: number;
  /** Undefined until some step has read every record (raw collected files). */
  accounting?: Accounting;
  /** Quarantine files of this and every earlier step, in order. */
  quarantine: string[];
  /**
   * Rows of `parts` set aside by a later step without rewriting the data: a JSON file mapping a
   * part's path to the `_line`s left out. Readers skip them (see readParts).
   */
  exclude?: string;
  /** Anything a step wants the next ones to know (quality report, source descriptor). */
  meta?: Record<string, unknown>;
}

/** A fresh, empty folder for this step's output (earlier attempts' files removed). */
export async function stepFolder(ctx: Pick<ActionContext, "artifactsDir" | "step">): Promise<string> {
  const dir = join(ctx.artifactsDir, ctx.step);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  return dir;
}

/**
 * A JSON document an earlier step wrote and named in its outputs (a dataset manifest, a failure
 * analysis …), parsed; BAD_INPUT in one sentence naming `what` it should be and `hint` (where such
 * a path comes from) when it cannot be read or is not JSON.
 */
export async function readStepDocument(ref: string, what: string, hint: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(resolve(ref), "utf8");
  } catch (err) {
    throw new SluiceError("BAD_INPUT", `${what} ${ref} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); ${hint}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new SluiceError("BAD_INPUT", `${what} ${ref} is not JSON; ${hint}`);
  }
}

export async function readDataset(ref: string): Promise<Dataset> {
  const ds = (await readStepDocument(ref, "dataset", "pass the dataset output of an earlier step")) as Dataset | null;
  if (ds?.kind !== DATASET_KIND) throw new SluiceError("BAD_INPUT", `${ref} is not a Sluice dataset manifest`);
  return ds;
}

/** Write the manifest atomically and return its path: the value of the step's `dataset` output. */
export async function writeDataset(dir: string, ds: Omit<Dataset, "kind">): Promise<string> {
  const path = join(dir, "dataset.json");
  await writeFile(`${path}.tmp`, JSON.stringify({ kind: DATASET_KIND, ...ds }, null, 2));
  await rename(`${path}.tmp`, path);
  return path;
}

export function requireTyped(ds: Dataset, ref: string, action: string): asserts ds is Dataset & { columns: Column[]; accounting: Accounting } {
  if (!ds.typed || !ds.columns || !ds.accounting)
    throw new SluiceError("BAD_INPUT", `${action} needs a typed dataset; ${ref} comes from step ${ds.step} and has no schema yet (convert it first)`);
}

/**
 * Quarantined records of one step, appended as NDJSON: `{ source, line, step, reasons, record }`.
 * Opened lazily: a step that rejects nothing leaves no file.
 */
export interface QuarantineSink {
  readonly path: string;
  readonly count: number;
  add(rec: QuarantinedRecord): void;
  close(): Promise<void>;
}

export function quarantineSink(dir: string): QuarantineSink {
  const path = join(dir, "quarantine.ndjson");
  let out: WriteStream | undefined;
  let count = 0;
  return {
    path,
    get count() {
      return count;
    },
    add(rec) {
      out ??= createWriteStream(path);
      out.write(JSON.stringify(rec) + "\n");
      count++;
    },
    close: () => new Promise<void>((res, rej) => (out ? (out.once("error", rej), out.end(res)) : res())),
  };
}

/** Read a quarantine file back (for `sluice quarantine` and for storing next to the destination). */
export async function* readQuarantine(path: string): AsyncGenerator<QuarantinedRecord[]> {
  const { readNdjson } = await import("../../formats/ndjson.js");
  for await (const batch of readNdjson(path, { batchSize: 5_000 })) yield batch.rows as unknown as QuarantinedRecord[];
}

export function checkAccounting(a: Accounting, rowsOut: number, where: string): void {
  if (a.rowsIn !== rowsOut + a.rowsQuarantined + a.rowsDuplicate)
    throw new SluiceError(
      "ACCOUNTING_MISMATCH",
      `${where}: ${a.rowsIn} rows in but ${rowsOut} out + ${a.rowsQuarantined} quarantined + ${a.rowsDuplicate} duplicate; records were lost`,
      { retryable: false },
    );
}

/** Part path → lines left out, as stored in a dataset's `exclude` file. */
export type Exclusions = Record<string, number[]>;

export async function readExclusions(ds: Dataset): Promise<Map<string, Set<number>>> {
  if (!ds.exclude) return new Map();
  const data = JSON.parse(await readFile(ds.exclude, "utf8")) as Exclusions;
  return new Map(Object.entries(data).map(([part, lines]) => [part, new Set(lines)]));
}

/** Keyrings by reference, loaded once per process: every page of a dataset names the same one. */
const keyrings = new Map<string, Keyring>();

/** The reader option that decrypts an encrypted part (undefined for a plain one). */
export function partDecryption(part: Pick<DatasetPart, "encrypted">): DecryptWith | undefined {
  const e = part.encrypted;
  if (!e) return undefined;
  let ring = keyrings.get(e.keyring);
  if (!ring) keyrings.set(e.keyring, (ring = loadKeyring(e.keyring)));
  return { keyring: ring, expect: e.context };
}
