// Where a record's end-to-end time goes in the Sluice pipeline (SLUICE_BENCH_PROFILE=1 in
// bench/stream/run.mjs). Wraps the built-in stream stages of a registry, without changing them:
//
//   pickupAgeMs     broker publish time → the source hands the record to the pipeline (per record):
//                   delivery by the server, the connector's buffer, waiting for the loop to call next()
//   pickupToWriteMs source hand-over → the sink is called (per batch): transforms, waiting for a
//                   free in-flight slot
//   writeMs         the sink call → its commit resolved (per batch): waiting behind earlier writes
//                   (the sink serialises them), dead letters, the upsert transaction
//   ackMs           the pipeline's ack of a batch (the confirmed ack round trip; after the commit,
//                   so outside end-to-end, but it holds an in-flight slot)
//   batchSize       records per batch as the source hands them over
//
// The wrappers add a few timer reads per batch; the headline figures come from unprofiled runs.

export function instrument(registry) {
  const p = { pickupAgeMs: [], pickupToWriteMs: [], writeMs: [], ackMs: [], batchSize: [] };
  const source = registry.get("agent", "stream-manager", "establish_stream_connection");
  const sink = registry.get("service", "base-data-storage", "store_streaming_data");
  registry.register({
    ...source,
    stream: async (input, ctx) => {
      const st = await source.stream(input, ctx);
      const next = st.stage.next.bind(st.stage);
      st.stage.next = async (max, wait, signal) => {
        const b = await next(max, wait, signal);
        const now = Date.now();
        const n = b.records.length + b.rejected.length;
        if (n === 0) return b;
        p.batchSize.push(n);
        for (const r of b.records) if (r.publishedAt !== undefined) p.pickupAgeMs.push(now - r.publishedAt);
        for (const r of b.rejected) if (r.record.publishedAt !== undefined) p.pickupAgeMs.push(now - r.record.publishedAt);
        const ack = b.ack;
        b.ack = async () => {
          const t = performance.now();
          await ack();
          p.ackMs.push(performance.now() - t);
        };
        b.benchPickedAt = performance.now();
        return b;
      };
      return st;
    },
  });
  registry.register({
    ...sink,
    stream: async (input, ctx) => {
      const st = await sink.stream(input, ctx);
      const write = st.stage.write.bind(st.stage);
      st.stage.write = (batch) => {
        const t = performance.now();
        if (batch.benchPickedAt !== undefined) p.pickupToWriteMs.push(t - batch.benchPickedAt);
        const w = write(batch);
        w.then(
          () => p.writeMs.push(performance.now() - t),
          () => undefined,
        );
        return w;
      };
      return st;
    },
  });
  return p;
}
