/**
 * File destinations: NDJSON / JSON Lines and Parquet, through the formats layer's writers.
 *
 * Idempotency: rows go to a temp file beside the target, renamed over it on `close()`, so a
 * retried attempt rewrites the whole file and a failed one leaves the previous file untouched.
 *
 * Deduplication (last wins, duplicates counted): within a batch always; across batches through
 * an in-memory map of key → row, for up to `maxTrackedKeys` keys (default 1,000,000). A key seen
 * again with different content supersedes the earlier row, which is dropped by a compaction pass
 * at `close()`. Keys beyond the bound are deduplicated within their batch only.
 *
 * Values: Parquet integers are INT64 and booleans BOOLEAN; decimals, timestamps and dates stay
 * text, so they are exact and keep microseconds. NDJSON keeps the typed values as they are
 * (integers and decimals as strings).
 */
import { randomBytes } from "node:crypto";
import { rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { mkdirSync } from "node:fs";
import type { QuarantinedRecord, TypedRow } from "../../formats/typed.js";
import { SluiceError } from "../../errors.js";
import { openReader, openWriter, type FileFormat, type ParquetColumnSpec, type RecordWriter } from "../../formats/index.js";
import { TextFileWriter } from "../../formats/io.js";
import {
  HASH_COLUMN,
  LOADED_AT_COLUMN,
  RUN_ID_COLUMN,
  checkTarget,
  decodeStaged,
  jsonText,
  prepareBatch,
  quarantineKey,
  type CheckedTarget,
} from "./common.js";
import type { StageChunk } from "../../formats/stage.js";
import type { Destination, DestinationTarget, WriteContext, WriteCounts } from "./types.js";

export const DEFAULT_MAX_TRACKED_KEYS = 1_000_000;

export interface FileDestinationOptions {
  /** Keys remembered across batches for deduplication (default 1,000,000). */
  maxTrackedKeys?: number;
}

interface Seen {
  hash: string;
  index: number;
}

export class FileDestination implements Destination {
  readonly kind = "file" as const;
  readonly display: string;
  readonly quarantinePath: string;
  private readonly format: FileFormat;
  private readonly maxKeys: number;
  private target: CheckedTarget | undefined;
  private writer: RecordWriter | undefined;
  private tmp: string | undefined;
  private qWriter: TextFileWriter | undefined;
  private qTmp: string | undefined;
  private readonly qSeen = new Set<string>();
  private keys = new Map<string, Seen>();
  private superseded = new Set<number>();
  private written = 0;
  private outNames: string[] = [];
  private closed = false;

  constructor(
    readonly path: string,
    opts: FileDestinationOptions = {},
  ) {
    this.format = /\.parquet$/i.test(path) ? "parquet" : "ndjson";
    this.display = path;
    this.quarantinePath = `${path}.quarantine.ndjson`;
    this.maxKeys = opts.maxTrackedKeys ?? DEFAULT_MAX_TRACKED_KEYS;
  }

  private tempName(): string {
    return join(dirname(this.path), `.${basename(this.path)}.sluice-tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
  }

  async prepare(target: DestinationTarget): Promise<void> {
    const t = checkTarget(target, this.display);
    if (this.closed) throw new SluiceError("INTERNAL", `Destination ${this.display} is closed.`, { retryable: false });
    await this.discardData();
    this.outNames = [...t.names, HASH_COLUMN, RUN_ID_COLUMN, LOADED_AT_COLUMN];
    try {
      mkdirSync(dirname(this.path), { recursive: true });
      this.tmp = this.tempName();
      this.writer = await openWriter(this.tmp, this.format, { columns: this.outNames, ...(this.format === "parquet" ? { schema: parquetSchema(t) } : {}) });
    } catch (err) {
      throw ioError(err, this.display, "creating the file");
    }
    this.target = t;
  }

  async writeStaged(chunk: StageChunk, ctx: WriteContext): Promise<WriteCounts> {
    const t = this.requireTarget();
    const { rows, hashes } = decodeStaged(t, chunk);
    return this.write(rows, ctx, hashes);
  }

  async write(rows: TypedRow[], ctx: WriteContext, knownHashes?: readonly string[]): Promise<WriteCounts> {
    const t = this.requireTarget();
    if (rows.length === 0) return { stored: 0, duplicate: 0 };
    const batch = prepareBatch(t, rows, this.display, knownHashes);
    const loadedAt = new Date().toISOString();
    const out: Record<string, unknown>[] = [];
    let stored = 0;
    const base = this.written;
    for (const i of batch.keep) {
      const key = batch.keys[i]!;
      const hash = batch.hashes[i]!;
      const seen = this.keys.get(key);
      if (seen && seen.hash === hash) continue; // already in the file, same content
      const index = base + out.length;
      if (seen) {
        this.superseded.add(seen.index);
        seen.hash = hash;
        seen.index = index;
      } else if (this.keys.size < this.maxKeys) this.keys.set(key, { hash, index });
      const v = batch.values[i]!;
      const row: Record<string, unknown> = {};
      for (let c = 0; c < t.names.length; c++) row[t.names[c]!] = v[c];
      row[HASH_COLUMN] = hash;
      row[RUN_ID_COLUMN] = ctx.runId;
      row[LOADED_AT_COLUMN] = loadedAt;
      out.push(row);
      stored++;
    }
    try {
      await this.writer!.write(out);
    } catch (err) {
      throw ioError(err, this.display, "writing");
    }
    this.written += out.length;
    return { stored, duplicate: rows.length - stored };
  }

  async writeQuarantine(records: QuarantinedRecord[], ctx: WriteContext): Promise<void> {
    if (records.length === 0) return;
    if (this.closed) throw new SluiceError("INTERNAL", `Destination ${this.display} is closed.`, { retryable: false });
    if (!this.qWriter) {
      this.qTmp = this.tempName();
      this.qWriter = new TextFileWriter(this.qTmp);
    }
    const at = new Date().toISOString();
    let text = "";
    for (const r of records) {
      const step = r.step || ctx.step;
      const k = quarantineKey(ctx.runId, step, r.source, r.line);
      if (this.qSeen.has(k)) continue;
      this.qSeen.add(k);
      text += `{"run_id":${jsonText(ctx.runId)},"step":${jsonText(step)},"source":${jsonText(r.source)},"line":${jsonText(r.line)},"reasons":${jsonText(r.reasons ?? [])},"record":${jsonText(r.record)},"quarantined_at":"${at}"}\n`;
    }
    await this.qWriter.write(text);
  }

  async count(): Promise<number> {
    return this.written - this.superseded.size;
  }

  /** Finish the file and move it into place (a compaction pass first if rows were superseded). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.writer || !this.tmp) {
      // Nothing prepared: only quarantined records (if any) to keep.
      if (this.qWriter && this.qTmp) {
        await this.qWriter.close();
        await rename(this.qTmp, this.quarantinePath);
        this.qWriter = undefined;
        this.qTmp = undefined;
      }
      return;
    }
    try {
      await this.writer.close();
      this.writer = undefined;
      let final = this.tmp;
      if (this.superseded.size > 0) final = await this.compact(this.tmp);
      await rename(final, this.path);
      if (final !== this.tmp) await rm(this.tmp, { force: true });
      this.tmp = undefined;
      if (this.qWriter && this.qTmp) {
        await this.qWriter.close();
        await rename(this.qTmp, this.quarantinePath);
        this.qWriter = undefined;
        this.qTmp = undefined;
      } else {
        // The file was rewritten whole; a quarantine file from an earlier attempt no longer describes it.
        await rm(this.quarantinePath, { force: true });
      }
    } catch (err) {
      await this.discard();
      throw ioError(err, this.display, "finishing the file");
    } finally {
      this.keys = new Map();
    }
  }

  private async compact(src: string): Promise<string> {
    const dst = this.tempName();
    const w = await openWriter(dst, this.format, { columns: this.outNames, ...(this.format === "parquet" ? { schema: parquetSchema(this.target!) } : {}) });
    let index = 0;
    try {
      for await (const batch of openReader(src, { format: this.format, batchSize: 10_000 })) {
        const keep: Record<string, unknown>[] = [];
        for (const row of batch.rows) {
          if (!this.superseded.has(index++)) keep.push(row);
        }
        if (keep.length > 0) await w.write(keep);
      }
    } finally {
      await w.close();
    }
    return dst;
  }

  /** Drop any unfinished temp files (a failed attempt leaves the previous file as it was). */
  private async discard(): Promise<void> {
    await this.discardData();
    await this.discardQuarantine();
  }

  private async discardData(): Promise<void> {
    if (this.writer) await this.writer.close().catch(() => undefined);
    this.writer = undefined;
    if (this.tmp) await rm(this.tmp, { force: true });
    this.tmp = undefined;
    this.keys = new Map();
    this.superseded = new Set();
    this.written = 0;
  }

  private async discardQuarantine(): Promise<void> {
    if (this.qWriter) await this.qWriter.close().catch(() => undefined);
    this.qWriter = undefined;
    if (this.qTmp) await rm(this.qTmp, { force: true });
    this.qTmp = undefined;
    this.qSeen.clear();
  }

  private requireTarget(): CheckedTarget {
    if (!this.target || !this.writer) {
      throw new SluiceError("INTERNAL", `Destination ${this.display}: prepare() must be called before writing${this.closed ? " (and it is closed)" : ""}.`, {
        retryable: false,
      });
    }
    return this.target;
  }
}

function ioError(err: unknown, where: string, doing: string): SluiceError {
  if (err instanceof SluiceError) return err;
  return new SluiceError("IO_ERROR", `Destination ${where} failed while ${doing}: ${(err as Error).message}`, { retryable: true, cause: err });
}

/**
 * The typed Parquet columns of a target (formats/parquet-write.ts): INT64, DECIMAL(38, s),
 * TIMESTAMP (UTC, µs), DATE, BOOLEAN and strings, plus the metadata columns; values are the
 * canonical typed text the batch plane carries.
 */
function parquetSchema(t: CheckedTarget): ParquetColumnSpec[] {
  return [
    ...t.columns.map((c): ParquetColumnSpec => ({ name: c.name, type: c.type, ...(c.scale !== undefined ? { scale: c.scale } : {}) })),
    { name: HASH_COLUMN, type: "string" },
    { name: RUN_ID_COLUMN, type: "string" },
    { name: LOADED_AT_COLUMN, type: "timestamp" },
  ];
}
