/**
 * Binding the app to a port. Without tokens the API is unauthenticated, so it is then reachable
 * from this machine only (127.0.0.1), whatever host was asked for: an open, unauthenticated
 * control plane on a network would let anyone run commands through exec steps.
 */
import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { serve } from "@hono/node-server";
import { SluiceError } from "../errors.js";
import { authEnabled, type AuthConfig } from "./auth.js";

export interface HttpServer {
  url: string;
  port: number;
  /** Stop accepting connections and wait for the requests in flight (at most `graceMs`, default 10 s). */
  close(graceMs?: number): Promise<void>;
}

export interface StartHttpServer {
  app: { fetch: (request: Request, ...rest: never[]) => Response | Promise<Response> };
  /** 0 picks a free port (tests). */
  port: number;
  /** Default 127.0.0.1; 0.0.0.0 only when asked for, and only with tokens configured. */
  host?: string;
  auth: AuthConfig;
  log?: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };
}

const LOOPBACK = "127.0.0.1";

export async function startHttpServer(opts: StartHttpServer): Promise<HttpServer> {
  let host = opts.host ?? LOOPBACK;
  if (!authEnabled(opts.auth)) {
    if (host !== LOOPBACK)
      opts.log?.warn(
        { asked: host, host: LOOPBACK },
        `no API tokens are configured, so authentication is off: listening on ${LOOPBACK} only, not ${host}; add auth.tokens to the server config to listen on ${host}`,
      );
    else opts.log?.info({ host }, "no API tokens are configured: authentication is off and the API listens on loopback only");
    host = LOOPBACK;
  }

  const server = serve({ fetch: opts.app.fetch as (request: Request) => Promise<Response>, port: opts.port, hostname: host }) as Server;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      server.off("listening", onListening);
      const why = err.code === "EADDRINUSE" ? "the port is in use" : err.code === "EACCES" ? "permission denied" : err.message;
      reject(new SluiceError("BAD_CONFIG", `cannot listen on ${host}:${opts.port}: ${why}`, { cause: err }));
    };
    const onListening = () => (server.off("error", onError), resolve());
    server.once("error", onError);
    server.once("listening", onListening);
  });

  const port = (server.address() as AddressInfo).port;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  opts.log?.info({ url }, "API listening");

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    close(graceMs = 10_000) {
      closing ??= new Promise<void>((resolve, reject) => {
        // close() stops accepting and resolves once every connection has ended. A keep-alive
        // connection whose request finishes stays open for the client to reuse, so idle ones are
        // closed as they appear; after the grace period the stragglers are cut.
        const idle = setInterval(() => server.closeIdleConnections(), 25);
        const timer = setTimeout(() => server.closeAllConnections(), graceMs);
        timer.unref();
        server.close((err) => (clearInterval(idle), clearTimeout(timer), err ? reject(err) : resolve()));
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}
