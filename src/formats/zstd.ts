/**
 * ZSTD (@bokuweb/zstd-wasm), loaded once per process for the Parquet writer and the Arrow reader.
 *
 * WHY one place: the library's `init()` re-instantiates its WebAssembly module on every call and
 * resolves at once the second time, so two callers initialising it (Arrow input converted to
 * Parquet) left calls running against a half-started instance ("Failed to compress with code
 * -10"). A module that someone else already started is detected and left alone.
 */
import { compress, decompress, init } from "@bokuweb/zstd-wasm";

let ready: Promise<void> | undefined;

/** Resolves when `compress` and `decompress` below can be called (synchronously). */
export function loadZstd(): Promise<void> {
  return (ready ??= (async () => {
    try {
      compress(new Uint8Array(1), 1);
      return; // already started by another user of the library
    } catch {
      await init();
    }
  })());
}

export { compress as zstdCompress, decompress as zstdDecompress };
