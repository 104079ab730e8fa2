/**
 * The `sluice` command line. Each command parses its arguments, calls the core, prints the result.
 * Exit codes: 0 success, 1 the work failed (invalid file, failed run), 2 usage error.
 * Command modules load on first use, so `sluice status` does not pay for the data plane's imports.
 */
import { Command, CommanderError, Option } from "commander";
import { SluiceError } from "../errors.js";
import type { SampleFlags } from "./sample.js";

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    process.exitCode = report(err);
  }
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function buildProgram(): Command {
  const program = new Command("sluice")
    .description("Durable data-ingestion workflows from YAML files.")
    .version(process.env.npm_package_version ?? "0.1.0")
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ outputError: () => undefined });

  const actionsOption = () =>
    new Option("--actions <module>", "load extra actions from a JavaScript module (repeatable; also SLUICE_ACTIONS, comma-separated)").argParser(collect);

  program
    .command("validate")
    .description("check workflow files; print FILE:LINE:COL: message for every problem")
    .argument("<file...>", "workflow files")
    .addOption(actionsOption())
    .action(async (files: string[], o: { actions?: string[] }) => {
      process.exitCode = await (await import("./validate.js")).validateCommand(files, o);
    });

  program
    .command("run")
    .description("run a workflow in the foreground until it ends")
    .argument("<file>", "workflow file")
    .option("-p, --param <key=value>", "set a workflow parameter (repeatable)", collect)
    .option("--json", "print the finished run as one JSON document on stdout")
    .addOption(actionsOption())
    .action(async (file: string, o: { param?: string[]; json?: boolean; actions?: string[] }) => {
      process.exitCode = await (await import("./run.js")).runCommand(file, o);
    });

  program
    .command("resume")
    .description("continue a run whose process stopped; completed steps are not run again")
    .argument("<run>", "run id")
    .option("--wait", "if a live process holds the run, wait for its lease to be released or expire, then resume")
    .option("--json", "print the finished run as one JSON document on stdout")
    .addOption(actionsOption())
    .action(async (id: string, o: { json?: boolean; wait?: boolean; actions?: string[] }) => {
      process.exitCode = await (await import("./run.js")).resumeCommand(id, o);
    });

  program
    .command("serve")
    .description("run the service: workflows from a directory, cron and event triggers, a worker, the HTTP API and /metrics")
    .option("--port <n>", "HTTP port (default 8080, or server.port in the config)")
    .option("--host <addr>", "address to listen on (default 127.0.0.1; others only with API tokens configured)")
    .option("--workflows <dir>", "directory of workflow files, reloaded on change", "workflows")
    .option("--config <file>", "server config: auth tokens, alert webhooks (also SLUICE_CONFIG)")
    .option("--no-worker", "API and triggers only; `sluice worker` processes execute the runs")
    .option("--watch <dir[:event]>", "announce new stable files in a directory (default event bulk_files_available; repeatable)", collect)
    .option("--grace <seconds>", "on SIGTERM, how long running attempts may take to finish", "30")
    .option("--max-runs <n>", "runs this process executes at once (default 16)")
    .addOption(actionsOption())
    .action(async (o) => {
      process.exitCode = await (await import("./serve.js")).serveCommand(o);
    });

  program
    .command("worker")
    .description("execute queued runs from the shared store (a fleet member; use with SLUICE_DATABASE_URL)")
    .option("--config <file>", "alert webhooks (also SLUICE_CONFIG)")
    .option("--max-runs <n>", "runs this worker executes at once (default 16)")
    .option("--grace <seconds>", "on SIGTERM, how long running attempts may take to finish", "30")
    .option("--metrics-port <n>", "serve /metrics and /healthz on port <n>")
    .option("--metrics-host <addr>", "address for --metrics-port (default 127.0.0.1)")
    .addOption(actionsOption())
    .action(async (o) => {
      process.exitCode = await (await import("./worker.js")).workerCommand(o);
    });

  program
    .command("operator")
    .description("the Kubernetes operator: Workflow resources into the registry, WorkflowRuns into runs, status back (kubectl get workflows,workflowruns)")
    .option("--namespace <ns>", "a namespace to watch (repeatable; default the kubeconfig context's, in a pod its own)", collect)
    .option("--all-namespaces", "watch every namespace (needs a ClusterRole)")
    .option("--mirror-runs", "show runs started by cron and events as WorkflowRuns too")
    .option("--mirror-ttl <duration>", "delete mirrored WorkflowRuns this long after their run ended", "24h")
    .option("--poll <duration>", "how often an active run's WorkflowRun status is refreshed", "2s")
    .option("--lease-ttl <duration>", "leader lease: a dead operator's successor takes over after this long", "15s")
    .addOption(actionsOption())
    .action(async (o) => {
      process.exitCode = await (await import("./operator.js")).operatorCommand(o);
    });

  const serverOption = () => new Option("--server <url>", "the Sluice server (default SLUICE_URL or http://127.0.0.1:8080)");

  program
    .command("apply")
    .description("add or update a workflow in the registry (refused with validate's messages when invalid)")
    .argument("<file>", "workflow file")
    .addOption(serverOption())
    .addOption(actionsOption())
    .action(async (file: string, o) => {
      process.exitCode = await (await import("./remote.js")).applyCommand(file, o);
    });

  program
    .command("rollback")
    .description("make an earlier version of a workflow current again")
    .argument("<workflow>", "workflow name")
    .option("--to <version>", "the version (default: the one before the current)")
    .addOption(serverOption())
    .action(async (name: string, o) => {
      process.exitCode = await (await import("./remote.js")).rollbackCommand(name, o);
    });

  program
    .command("emit")
    .description("emit an event: every workflow with a trigger naming it starts")
    .argument("<event>", "event name")
    .option("--data <json>", "payload, available to runs as ${{ event.data.* }}")
    .addOption(serverOption())
    .action(async (event: string, o) => {
      process.exitCode = await (await import("./remote.js")).emitCommand(event, o);
    });

  program
    .command("publish")
    .description("feed a stream with the trades sample (one JSON record per message), at a steady rate")
    // Not listed here: the list is the stream registry's, and loading it would slow every command.
    .argument("<broker>", "the broker kind, e.g. nats (an unknown one is refused with the list)")
    .argument("<url>", "the broker, e.g. nats://127.0.0.1:4222")
    .option("--subject <name>", "subject, stream key, topic or routing key (default: the broker's own default)")
    .option("--count <n>", "records to send", "10000")
    .option("--rate <n>", "records per second", "1000")
    .option("--bad-share <f>", "fraction of defective records (default 0.01)")
    .option("--seed <n>", "PRNG seed (default 42)")
    .option("--id-prefix <p>", "trade_id prefix (default T-)")
    .action(async (broker: string, url: string, o) => {
      process.exitCode = await (await import("./publish.js")).publishCommand(broker, url, o);
    });

  program
    .command("runs")
    .description("list recent runs")
    .option("-w, --workflow <name>", "only runs of this workflow")
    .option("-s, --status <status>", "only runs with this status")
    .option("-n, --limit <n>", "how many", "20")
    .option("--json", "print JSON")
    .action(async (o: { workflow?: string; status?: string; limit: string; json?: boolean }) => {
      process.exitCode = await (await import("./status.js")).runsCommand(o);
    });

  program
    .command("status")
    .description("show a run with its steps and attempts")
    .argument("<run>", "run id")
    .option("--json", "print JSON")
    .action(async (id: string, o: { json?: boolean }) => {
      process.exitCode = await (await import("./status.js")).statusCommand(id, o);
    });

  program
    .command("cancel")
    .description("cancel a pending or running run")
    .argument("<run>", "run id")
    .action(async (id: string) => {
      process.exitCode = await (await import("./cancel.js")).cancelCommand(id);
    });

  program
    .command("quarantine")
    .description("list the records a run quarantined, with source, line and reasons")
    .argument("<run>", "run id")
    .option("-n, --limit <n>", "how many to show", "100")
    .option("--json", "print JSON")
    .action(async (id: string, o: { json?: boolean; limit: string }) => {
      process.exitCode = await (await import("./quarantine.js")).quarantineCommand(id, o);
    });

  const inferOptions = (c: Command) =>
    c
      .option("--format <format>", "the source's format when its extension does not say (csv, tsv, ndjson, json, parquet, arrow)")
      .option("--encoding <name>", "the text encoding instead of detecting it (utf-8, utf-16le, latin1, windows-1252, …)")
      .option("--delimiter <char>", "the CSV delimiter instead of detecting it")
      .option("--header", "the first CSV record names the columns")
      .option("--no-header", "the CSV file has no header row (columns are column1, column2, …)")
      .option("--key <columns>", "key columns, comma-separated: rows are upserted on them")
      .option("--sample <rows>", "records sampled from the start of each file (default 20000)")
      .option("--print-schema <file>", "also write the schema as an editable file");

  inferOptions(
    program
      .command("ingest")
      .description("ingest a file, directory, glob, URL or table with the standard workflow, inferring the schema when none is given")
      .argument("<source>", "a file, directory, glob, http(s):// URL or postgres:// URL (?table=NAME)"),
  )
    .option("--to <destination>", "sqlite:PATH, a postgres:// URL, env:NAME, or a .parquet/.ndjson file (default the embedded warehouse)")
    .option("--table <name>", "the table (default: from the source's name)")
    .option("--schema <file>", "a schema file instead of inferring one")
    .option("--infer", "infer the schema from the source (the default without --schema)")
    .option("--json", "print the finished run as one JSON document on stdout")
    .addOption(actionsOption())
    .action(async (source: string, o) => {
      process.exitCode = await (await import("./ingest.js")).ingestCommand(source, o);
    });

  inferOptions(
    program
      .command("infer")
      .description("print the schema Sluice infers for a source: columns, types, formats, null markers, encoding, delimiter")
      .argument("<source>", "a file, directory, glob, http(s):// URL or postgres:// URL (?table=NAME)"),
  )
    .option("--json", "print the inference (schema and what was seen per column) as JSON")
    .action(async (source: string, o) => {
      process.exitCode = await (await import("./ingest.js")).inferCommand(source, o);
    });

  program
    .command("convert")
    .description("convert a data file between CSV, TSV, NDJSON, JSON and Parquet (Arrow IPC / Feather as input)")
    .argument("<input>", "input file")
    .argument("<output>", "output file")
    .option("--from <format>", "input format: csv, tsv, ndjson, json, parquet, arrow (default: from the extension)")
    .option("--to <format>", "output format: csv, tsv, ndjson, json, parquet (default: from the extension)")
    .option("--schema <file>", "type values to a target schema (YAML/JSON with columns:), as a conversion step does; Parquet output gets typed columns")
    .option("--rejects <file>", "write every rejected record to FILE as NDJSON { file, line, reason, raw }")
    .action(async (input: string, output: string, o: { from?: string; to?: string; schema?: string; rejects?: string }) => {
      process.exitCode = await (await import("./convert.js")).convertCommand(input, output, o);
    });

  program
    .command("sample")
    .description(
      "write a deterministic sample data file (trades, with a share of bad rows), or serve a flaky trades API (flaky-api) or a demo mTLS + OAuth2 + TOTP API (secure-api)",
    )
    .argument("<kind>", "which sample: trades, flaky-api, secure-api")
    .argument("[output]", "trades: output file (.csv, .ndjson or .json)")
    .option("--rows <n>", "records to write, bad ones included (default 10000)")
    .option("--seed <n>", "PRNG seed; the same seed writes the same bytes (default 42)")
    .option("--bad-share <f>", "fraction of defective records (default 0.01)")
    .option("--duplicate-share <f>", "fraction of exact repeats of earlier good records (default 0)")
    .option("--id-prefix <p>", "trade_id prefix (default T-)")
    .option("--start-at <iso>", "timestamp of the first trade (default 2026-11-02T09:30:00Z)")
    .option("--port <n>", "flaky-api, secure-api: port on 127.0.0.1 (default: a free one)")
    .option("--plan <plan>", 'flaky-api: failure plan, e.g. "fail status=503 pages=4-" (JSON, or @FILE)')
    .option("--as-of <iso>", "flaky-api: updated_at of the newest record (default: the start of this UTC hour)")
    .option("--dir <dir>", "secure-api: folder for the generated CA, certificates and secret files")
    .action(async (kind: string, output: string | undefined, o: SampleFlags) => {
      process.exitCode = await (await import("./sample.js")).sampleCommand(kind, output, o);
    });

  const audit = program.command("audit").description("the tamper-evident audit trail: verify it, sign a checkpoint, list entries, a record of processing");
  audit
    .command("verify")
    .description("check the hash chain and the signed checkpoints; exit 1 naming the first entry or checkpoint that does not hold")
    .option("--public-key <file>", "trust this Ed25519 public key (PEM; repeatable) instead of the one beside this home's signing key", collect)
    .option("--json", "print the verdict as JSON")
    .action(async (o: { publicKey?: string[]; json?: boolean }) => {
      process.exitCode = await (await import("./audit.js")).auditVerifyCommand(o);
    });
  audit
    .command("checkpoint")
    .description("sign the log's current head with this home's key (created on first use) and store the checkpoint")
    .option("--run <id>", "the run the checkpoint closes")
    .action(async (o: { run?: string }) => {
      process.exitCode = await (await import("./audit.js")).auditCheckpointCommand(o);
    });
  audit
    .command("list")
    .description("print audit entries, newest last")
    .option("--run <id>", "only entries of this run")
    .option("-n, --limit <n>", "how many (the newest)", "50")
    .option("--json", "print JSON")
    .action(async (o: { run?: string; limit: string; json?: boolean }) => {
      process.exitCode = await (await import("./audit.js")).auditListCommand(o);
    });

  audit
    .command("report")
    .description("a GDPR Art. 30-style record of processing for a workflow, from its runs: purposes, categories, recipients, retention, measures")
    .requiredOption("--workflow <name>", "the workflow's name (metadata.name)")
    .option("--json", "print JSON")
    .action(async (o: { workflow: string; json?: boolean }) => {
      process.exitCode = await (await import("./audit-report.js")).auditReportCommand(o);
    });

  const keys = program.command("keys").description("the keyring of key-encryption keys (default $SLUICE_KEYRING or $SLUICE_HOME/keyring.json)");
  const keyringOption = () => new Option("--keyring <file>", "the keyring file");
  keys
    .command("init")
    .description("create a keyring with one new random key (refused when the file exists)")
    .addOption(keyringOption())
    .option("--id <id>", "the key id (default: default)")
    .action(async (o) => {
      process.exitCode = await (await import("./keys.js")).keysInitCommand(o);
    });
  keys
    .command("rotate")
    .description("add a new version of the current key (or of --id) and make it current; old versions keep decrypting")
    .addOption(keyringOption())
    .option("--id <id>", "the key id to add a version to (default: the current key's)")
    .action(async (o) => {
      process.exitCode = await (await import("./keys.js")).keysRotateCommand(o);
    });
  keys
    .command("list")
    .description("list key ids, versions, status and fingerprints (never the keys)")
    .addOption(keyringOption())
    .option("--json", "print JSON")
    .action(async (o) => {
      process.exitCode = await (await import("./keys.js")).keysListCommand(o);
    });
  keys
    .command("rewrap")
    .description("re-encrypt every encrypted cell of a table under the current key version, in batches; resumable (run it again after a kill)")
    .addOption(keyringOption())
    .requiredOption("--destination <spec>", "sqlite:PATH, postgres:// URL, or env:/file: reference to one")
    .requiredOption("--table <name>", "the table store_with_encryption wrote")
    .option("--batch <rows>", "rows per transaction (default 500)")
    .option("--pause <ms>", "wait between batches, to spare a busy database (default 0)")
    .action(async (o) => {
      process.exitCode = await (await import("./keys.js")).keysRewrapCommand(o);
    });
  keys
    .command("retire <id:version>")
    .description("drop a key version from the keyring; refused while any encrypted cell still uses it")
    .addOption(keyringOption())
    .requiredOption("--destination <spec>", "the destination whose tables are scanned for cells under the version")
    .option("--table <name>", "scan only this table (default: every table)")
    .action(async (version: string, o) => {
      process.exitCode = await (await import("./keys.js")).keysRetireCommand(o, version);
    });

  program
    .command("decrypt")
    .description("print rows of a table stored with field-level encryption, its cells in clear (JSON lines); every read is audited")
    .requiredOption("--destination <spec>", "sqlite:PATH, postgres:// URL, or env:/file: reference to one")
    .requiredOption("--table <name>", "the table store_with_encryption wrote")
    .option("--where <column=value>", "only rows whose column has this value")
    .option("--keyring <spec>", "the keyring: a file, or env:NAME / file:PATH holding one key (default $SLUICE_KEYRING or $SLUICE_HOME/keyring.json)")
    .option("--limit <rows>", "most rows printed (default 1000)")
    .action(async (o) => {
      process.exitCode = await (await import("./decrypt.js")).decryptCommand(o);
    });

  return program;
}

/** Print an error as one sentence (a stack only with SLUICE_DEBUG=1) and choose the exit code. */
function report(err: unknown): number {
  if (err instanceof CommanderError) {
    if (err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.code === "commander.help") return 0;
    process.stderr.write(`sluice: ${err.message.replace(/^error: /, "")}\n`);
    return 2;
  }
  const debug = process.env.SLUICE_DEBUG === "1";
  if (err instanceof SluiceError) {
    process.stderr.write(`sluice: ${err.message}\n`);
    if (debug && err.stack) process.stderr.write(`${err.stack}\n`);
    return err.code === "USAGE" ? 2 : 1;
  }
  const e = err as Error;
  process.stderr.write(`sluice: ${e?.message ?? String(err)}\n`);
  if (debug && e?.stack) process.stderr.write(`${e.stack}\n`);
  else process.stderr.write("sluice: this looks like a bug; run again with SLUICE_DEBUG=1 for details\n");
  return 1;
}
