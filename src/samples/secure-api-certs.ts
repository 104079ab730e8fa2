/**
 * The certificates of the demo secure API (secure-api.ts), made with the `openssl` command line
 * at start: no network, nothing checked in, nothing that outlives its folder.
 *
 * `openssl ca` rather than `openssl x509 -req -days N`: the tests need certificates that are
 * already expired and ones that expire in exactly three days, and only `ca` takes explicit
 * `-startdate` / `-enddate` on every OpenSSL 3.x (x509's -not_before arrived in 3.4). Each CA
 * keeps its small database (index, serial) in a hidden folder beside its key.
 *
 * Keys are ECDSA P-256: generated in milliseconds, accepted by every TLS 1.2 and 1.3 stack.
 */
import { execFile } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { SluiceError } from "../errors.js";

const run = promisify(execFile);

/** Paths of every file made, all PEM. */
export interface SecureApiCerts {
  dir: string;
  /** The CA that issued the server and the good client certificates: what a client trusts (caFile / tls.ca). */
  ca: string;
  serverCert: string;
  serverKey: string;
  /** The client certificate the API accepts, valid for `clientDays`. */
  clientCert: string;
  clientKey: string;
  /** A second good client certificate of the same CA (a token bound to the first is refused with it). */
  secondClientCert: string;
  secondClientKey: string;
  /** A client certificate of the same CA whose validity ended yesterday. */
  expiredCert: string;
  expiredKey: string;
  /** A CA the API does not trust, and a client certificate it issued. */
  otherCa: string;
  otherClientCert: string;
  otherClientKey: string;
}

export interface CertOptions {
  /** Days the server certificate stays valid from now (default 30; tests of expiry warnings use 3, of expiry -1). */
  serverDays?: number;
  /** Days the client certificates stay valid (default 365). */
  clientDays?: number;
  /** Names in the server certificate (default IP 127.0.0.1 and DNS localhost). */
  serverNames?: string[];
}

const DAY = 86_400_000;

/** Make a fresh set of certificates in `dir` (created; files of an earlier set are overwritten). */
export async function makeCertificates(dir: string, opts: CertOptions = {}): Promise<SecureApiCerts> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const now = Date.now();
  const p = (name: string) => join(dir, name);
  const certs: SecureApiCerts = {
    dir,
    ca: p("ca.pem"),
    serverCert: p("server.pem"),
    serverKey: p("server.key"),
    clientCert: p("client.pem"),
    clientKey: p("client.key"),
    secondClientCert: p("client2.pem"),
    secondClientKey: p("client2.key"),
    expiredCert: p("expired-client.pem"),
    expiredKey: p("expired-client.key"),
    otherCa: p("other-ca.pem"),
    otherClientCert: p("other-client.pem"),
    otherClientKey: p("other-client.key"),
  };
  const names = opts.serverNames ?? ["IP:127.0.0.1", "DNS:localhost"];
  await writeFile(
    p("extensions.cnf"),
    [
      "[server]",
      `subjectAltName=${names.join(",")}`,
      "keyUsage=critical,digitalSignature",
      "extendedKeyUsage=serverAuth",
      "[client]",
      "keyUsage=critical,digitalSignature",
      "extendedKeyUsage=clientAuth",
      "",
    ].join("\n"),
  );
  await makeCa(dir, "ca", "/O=Sluice Demo/CN=Sluice Demo CA");
  await makeCa(dir, "other-ca", "/O=Somebody Else/CN=Other CA");
  const serverDays = opts.serverDays ?? 30;
  const clientDays = opts.clientDays ?? 365;
  // A negative serverDays makes a server certificate that has already expired (tests of that refusal).
  const serverEnd = now + serverDays * DAY;
  await issue(dir, "ca", "server", "/O=Sluice Demo/CN=127.0.0.1", "server", Math.min(now - 3_600_000, serverEnd - 30 * DAY), serverEnd);
  await issue(dir, "ca", "client", "/O=Sluice Demo/CN=sluice-client", "client", now - 3_600_000, now + clientDays * DAY);
  await issue(dir, "ca", "client2", "/O=Sluice Demo/CN=sluice-client-2", "client", now - 3_600_000, now + clientDays * DAY);
  await issue(dir, "ca", "expired-client", "/O=Sluice Demo/CN=sluice-client-expired", "client", now - 30 * DAY, now - DAY);
  await issue(dir, "other-ca", "other-client", "/O=Somebody Else/CN=sluice-client", "client", now - 3_600_000, now + clientDays * DAY);
  return certs;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  try {
    await run("openssl", args, { cwd: dir });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === "ENOENT") throw new SluiceError("BAD_CONFIG", "the demo secure API needs the openssl command line, which is not on PATH.");
    throw new SluiceError("ACTION_FAILED", `openssl ${args[0]} failed while making the demo certificates: ${(e.stderr ?? e.message).trim().split("\n")[0]}`, {
      retryable: false,
    });
  }
}

async function makeCa(dir: string, name: string, subject: string): Promise<void> {
  const db = join(dir, `.${name}`);
  await mkdir(db, { recursive: true });
  await writeFile(join(db, "index.txt"), "");
  await writeFile(join(db, "serial"), `${Date.now().toString(16).padStart(16, "0")}\n`);
  await writeFile(
    join(db, "ca.cnf"),
    [
      "[ca]",
      "default_ca = demo",
      "[demo]",
      `database = ${join(db, "index.txt")}`,
      `new_certs_dir = ${db}`,
      `serial = ${join(db, "serial")}`,
      "default_md = sha256",
      "policy = any",
      "unique_subject = no",
      "[any]",
      "commonName = supplied",
      "organizationName = optional",
      "",
    ].join("\n"),
  );
  await openssl(dir, [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.pem`,
    "-days",
    "3650",
    "-subj",
    subject,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
}

async function issue(dir: string, ca: string, name: string, subject: string, profile: "server" | "client", from: number, to: number): Promise<void> {
  await openssl(dir, [
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
    "-subj",
    subject,
  ]);
  await openssl(dir, [
    "ca",
    "-batch",
    "-notext",
    "-config",
    join(dir, `.${ca}`, "ca.cnf"),
    "-cert",
    `${ca}.pem`,
    "-keyfile",
    `${ca}.key`,
    "-in",
    `${name}.csr`,
    "-out",
    `${name}.pem`,
    "-startdate",
    asn1Time(from),
    "-enddate",
    asn1Time(to),
    "-extfile",
    "extensions.cnf",
    "-extensions",
    profile,
  ]);
}

/** YYYYMMDDHHMMSSZ, the GeneralizedTime `openssl ca` takes. */
function asn1Time(ms: number): string {
  return `${new Date(ms).toISOString().replace(/[-:T]/g, "").slice(0, 14)}Z`;
}
