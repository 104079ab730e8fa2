/**
 * `sluice publish BROKER URL --subject S`: feed a stream with the trades sample (the same
 * deterministic records and defects as `sluice sample trades`, one JSON object per message) at
 * a steady rate, to try the real-time workflow or measure it. Prints what it sent.
 */
import { SluiceError } from "../errors.js";
import { BROKER_KINDS, openStreamPublisher } from "../connectors/streams/index.js";
import { emptyTradeSummary, tradeRecords } from "../samples/trades.js";

export interface PublishFlags {
  subject?: string;
  count: string;
  rate: string;
  badShare?: string;
  seed?: string;
  idPrefix?: string;
}

export async function publishCommand(broker: string, url: string, o: PublishFlags): Promise<number> {
  if (!(BROKER_KINDS as readonly string[]).includes(broker)) throw new SluiceError("USAGE", `unknown broker "${broker}"; one of ${BROKER_KINDS.join(", ")}`);
  const count = positive("--count", o.count);
  const rate = positive("--rate", o.rate);
  const publisher = await openStreamPublisher({ broker, url, subject: o.subject });
  const summary = emptyTradeSummary();
  const started = performance.now();
  let sent = 0;
  try {
    for await (const record of tradeRecords(
      {
        rows: count,
        badShare: o.badShare === undefined ? undefined : Number(o.badShare),
        seed: o.seed === undefined ? undefined : Number(o.seed),
        idPrefix: o.idPrefix,
      },
      summary,
    )) {
      await publisher.publish(JSON.stringify(record));
      sent++;
      // A steady rate: wait until this message is due, in steps of at least a millisecond.
      const due = started + (sent / rate) * 1000;
      const wait = due - performance.now();
      if (wait >= 1) await new Promise((r) => setTimeout(r, wait));
      if (sent % 10_000 === 0) process.stderr.write(`sluice: published ${sent.toLocaleString("en-US")}\n`);
    }
    await publisher.flush();
  } finally {
    await publisher.close();
  }
  const secs = (performance.now() - started) / 1000;
  process.stdout.write(`published ${sent} records (${summary.good} good, ${summary.bad} defective) in ${secs.toFixed(1)} s, ${Math.round(sent / secs)}/s\n`);
  return 0;
}

function positive(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new SluiceError("USAGE", `${flag} takes a positive number, not "${v}"`);
  return n;
}
