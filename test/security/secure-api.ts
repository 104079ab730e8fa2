/**
 * A local HTTPS API of accounts for the secure-ingestion tests: certificates made with openssl at
 * test time (a CA and two server certificates it signed), bearer-token auth, Link-header pages of
 * records with names, e-mails, phones, IBANs, card numbers and free-text notes. Hooks a test turns
 * on: a redirect at a page, a certificate swap at a page, a TLS 1.3 → 1.2 downgrade at a page.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

export interface Certs {
  caFile: string;
  server: { key: string; cert: string };
  other: { key: string; cert: string };
}

/** A CA and two server certificates for 127.0.0.1 / localhost, signed by it (EC P-256, two days). */
export function makeCerts(dir: string): Certs {
  const run = (args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  run([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-subj",
    "/CN=Sluice Test CA",
    "-days",
    "2",
  ]);
  writeFileSync(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  const leaf = (name: string) => {
    run([
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
      "/CN=localhost",
    ]);
    run([
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      "2",
      "-extfile",
      "ext.cnf",
    ]);
    return { key: readFileSync(join(dir, `${name}.key`), "utf8"), cert: readFileSync(join(dir, `${name}.pem`), "utf8") };
  };
  return { caFile: join(dir, "ca.pem"), server: leaf("server"), other: leaf("other") };
}

/** A Luhn-valid card number from its first digits. */
export function luhn(prefix: string): string {
  let sum = 0;
  const digits = [...prefix].map(Number);
  for (let i = 0; i < digits.length; i++) {
    let d = digits[digits.length - 1 - i]!;
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return prefix + String((10 - (sum % 10)) % 10);
}

/** A valid GB IBAN from a 14-digit sort code + account number. */
export function gbIban(digits14: string): string {
  const bban = `WEST${digits14}`;
  const rearranged = `${bban}GB00`.replace(/[A-Z]/g, (c) => String(c.charCodeAt(0) - 55));
  let r = 0;
  for (const ch of rearranged) r = (r * 10 + Number(ch)) % 97;
  return `GB${String(98 - r).padStart(2, "0")}${bban}`;
}

export interface Account {
  id: string;
  name: string;
  email: string;
  phone: string;
  iban: string;
  card: string;
  notes: string;
  balance: string;
}

/** `n` accounts; `card` of account 1 and a note of account 2 may be given (a sentinel). */
export function accounts(n: number, opts: { card?: string; noteCard?: string } = {}): Account[] {
  const out: Account[] = [];
  for (let i = 1; i <= n; i++) {
    const num = String(10_000_000 + i * 7919).slice(-8);
    out.push({
      id: `A${String(i).padStart(4, "0")}`,
      name: ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov"][i % 5]!,
      email: `user${i}@example.com`,
      phone: `+1 202-555-${String(100 + i).padStart(4, "0")}`,
      iban: gbIban(`601613${num}`),
      card: i === 1 && opts.card ? opts.card : luhn(`4${String(100_000_000_000_00 + i * 104_729).slice(0, 14)}`),
      notes: i === 2 && opts.noteCard ? `customer called about card ${opts.noteCard} yesterday` : `prefers e-mail contact, account ${i}`,
      balance: `${i * 10}.25`,
    });
  }
  return out;
}

export interface ApiOptions {
  token: string;
  records: Account[];
  pageSize?: number;
  /** Answer this page with a 302 to another path. */
  redirectAt?: number;
  /** From this page on, serve the other certificate (every answer closes its connection). */
  swapCertAt?: number;
  /** From this page on, allow TLS 1.2 at most. */
  downgradeAt?: number;
  /** Answer the first request with HTTP 500 and a body that quotes the bearer token (as careless APIs do). */
  failFirst?: boolean;
}

export interface Api {
  url: string;
  server: Server;
  requests: number;
  close(): Promise<void>;
}

export async function startApi(certs: Certs, opts: ApiOptions): Promise<Api> {
  const size = opts.pageSize ?? 10;
  const state = { requests: 0 };
  const server = createServer({ key: certs.server.key, cert: certs.server.cert }, (req, res) => {
    state.requests++;
    const u = new URL(req.url ?? "/", "https://127.0.0.1");
    if (req.headers.authorization !== `Bearer ${opts.token}`) {
      res.writeHead(401, { "content-type": "application/json" }).end('{"error":"unauthorized"}');
      return;
    }
    if (opts.failFirst && state.requests === 1) {
      res.writeHead(500, { "content-type": "application/json" }).end(JSON.stringify({ error: `backend down; your token ${opts.token} was logged` }));
      return;
    }
    const page = Number(u.searchParams.get("page") ?? 1);
    if (opts.redirectAt === page && u.pathname !== "/elsewhere") {
      res.writeHead(302, { location: `/elsewhere?page=${page}` }).end();
      return;
    }
    const rows = opts.records.slice((page - 1) * size, page * size);
    const more = page * size < opts.records.length;
    const next = page + 1;
    // Switch what the NEXT connection sees, and close this one, so the next page reconnects.
    if (opts.swapCertAt === next) server.setSecureContext({ key: certs.other.key, cert: certs.other.cert });
    if (opts.downgradeAt === next) server.setSecureContext({ key: certs.server.key, cert: certs.server.cert, maxVersion: "TLSv1.2" });
    const close = opts.swapCertAt !== undefined || opts.downgradeAt !== undefined;
    res.writeHead(200, {
      "content-type": "application/json",
      ...(more ? { link: `<${u.pathname}?page=${next}>; rel="next"` } : {}),
      ...(close ? { connection: "close" } : {}),
    });
    res.end(JSON.stringify(rows));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `https://127.0.0.1:${port}/api/v1/accounts`,
    server,
    get requests() {
      return state.requests;
    },
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}
