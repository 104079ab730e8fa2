/**
 * Reading and writing the typed datasets steps hand each other: stage parts (formats/stage.ts)
 * named by a dataset manifest, less the rows a quality step excluded.
 */
import { join } from "node:path";
import { openStageWriter, readStageChunks, readStageRows, type StageChunk, type StagedRow, type StageWriter } from "../../formats/stage.js";
import { SluiceError } from "../../errors.js";
import { readExclusions, type Dataset, type DatasetPart } from "./dataset.js";
import type { Column } from "./model.js";

function typedParts(ds: Dataset): DatasetPart[] {
  for (const p of ds.parts)
    if (p.format !== "stage")
      throw new SluiceError("BAD_INPUT", `dataset of step ${ds.step} is not typed (part ${p.path} is ${p.format}); convert it first`, { retryable: false });
  return ds.parts;
}

/** Every kept row of a typed dataset, decoded (only the `only` columns when given), batch by batch. */
export async function* readTypedRows(
  ds: Dataset,
  columns: readonly Column[],
  signal: AbortSignal,
  opts: { only?: readonly string[]; keepText?: boolean } = {},
): AsyncGenerator<{ part: DatasetPart; rows: StagedRow[] }> {
  const exclusions = await readExclusions(ds);
  for (const part of typedParts(ds)) {
    for await (const rows of readStageRows(part.path, columns, {
      exclude: exclusions.get(part.path),
      ...(opts.only ? { only: opts.only } : {}),
      keepText: opts.keepText ?? false,
    })) {
      if (signal.aborted) throw signal.reason;
      yield { part, rows };
    }
  }
}

/** Every kept row of a typed dataset as undecoded stage lines. */
export async function* readTypedChunks(ds: Dataset, columns: readonly Column[], signal: AbortSignal): AsyncGenerator<{ part: DatasetPart; chunk: StageChunk }> {
  const exclusions = await readExclusions(ds);
  for (const part of typedParts(ds)) {
    for await (const chunk of readStageChunks(part.path, columns, exclusions.get(part.path))) {
      if (signal.aborted) throw signal.reason;
      yield { part, chunk };
    }
  }
}

/** A typed output written as stage parts, one part per source, so sources stay known. */
export class TypedOutput {
  readonly parts: DatasetPart[] = [];
  rows = 0;
  private current?: { writer: StageWriter; part: DatasetPart };

  constructor(
    private readonly dir: string,
    private readonly columns: readonly Column[],
  ) {}

  private async partFor(source: string): Promise<{ writer: StageWriter; part: DatasetPart }> {
    if (this.current?.part.source !== source) {
      await this.closeCurrent();
      const path = join(this.dir, `part-${String(this.parts.length).padStart(4, "0")}.stage`);
      this.current = { writer: await openStageWriter(path, this.columns), part: { path, format: "stage", source, rows: 0 } };
    }
    return this.current;
  }

  /** Stage lines already in this output's layout (from another stage file with the same columns). */
  async writeLines(source: string, text: string, rows: number): Promise<void> {
    const c = await this.partFor(source);
    if (rows === 0) return;
    await c.writer.writeLines(text, rows);
    c.part.rows! += rows;
    this.rows += rows;
  }

  /** The same as bytes (whole stage lines, e.g. pieces of a chunk read with readTypedChunks). */
  async writeBytes(source: string, pieces: readonly Buffer[], rows: number): Promise<void> {
    const c = await this.partFor(source);
    if (rows === 0) return;
    await c.writer.writeBytes(pieces, rows);
    c.part.rows! += rows;
    this.rows += rows;
  }

  async close(): Promise<void> {
    await this.closeCurrent();
  }

  private async closeCurrent(): Promise<void> {
    if (!this.current) return;
    const res = await this.current.writer.close();
    this.parts.push({ ...this.current.part, bytes: res.bytes });
    this.current = undefined;
  }
}
