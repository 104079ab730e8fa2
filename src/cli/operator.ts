/**
 * `sluice operator`: the Kubernetes operator. Watches Workflow and WorkflowRun resources in the
 * given namespaces (or all), keeps the registry in the store in step with the Workflows, starts
 * and cancels runs for the WorkflowRuns and writes their status. It executes nothing itself:
 * `sluice serve` / `sluice worker` processes on the same store run what it queues. One operator
 * leads at a time (a lease in the store); SIGTERM hands over at once.
 */
import { newOwnerId } from "../engine/ids.js";
import { SluiceError } from "../errors.js";
import { realClock } from "../operator/clock.js";
import { startOperator, type Operator } from "../operator/controller.js";
import { kubeApiFromConfig, loadKubeConfig } from "../operator/kube-client.js";
import { startLeaderElection } from "../operator/leader.js";
import { parseDuration } from "../spec/duration.js";
import { openStore } from "../store/index.js";
import { loadActions } from "./context.js";
import { messageFirst, serviceLogger } from "./service.js";

export interface OperatorFlags {
  namespace?: string[];
  allNamespaces?: boolean;
  mirrorRuns?: boolean;
  mirrorTtl: string;
  poll: string;
  leaseTtl: string;
  actions?: string[];
}

export async function operatorCommand(o: OperatorFlags): Promise<number> {
  const pollMs = durationFlag("--poll", o.poll);
  const leaseTtlMs = durationFlag("--lease-ttl", o.leaseTtl);
  const mirrorTtlMs = durationFlag("--mirror-ttl", o.mirrorTtl);
  if (o.allNamespaces && o.namespace?.length) throw new SluiceError("BAD_INPUT", "give --namespace or --all-namespaces, not both");

  const kc = loadKubeConfig();
  const namespaces = o.allNamespaces ? null : o.namespace?.length ? o.namespace : [kc.getContextObject(kc.getCurrentContext())?.namespace ?? "default"];
  const api = kubeApiFromConfig(kc);
  const owner = newOwnerId();
  const logger = serviceLogger("operator", owner);
  const log = messageFirst(logger);
  const actions = await loadActions(o.actions);
  const store = await openStore();

  let op: Operator | undefined;
  const leadership = startLeaderElection({
    store,
    owner,
    clock: realClock,
    ttlMs: leaseTtlMs,
    log,
    onElected: () => {
      op = startOperator({
        api,
        store,
        actions,
        namespaces,
        log,
        pollMs,
        mirror: o.mirrorRuns ? { ttlSeconds: Math.round(mirrorTtlMs / 1000) } : null,
      });
    },
    onDeposed: async () => {
      const running = op;
      op = undefined;
      await running?.stop();
    },
  });
  const where = namespaces ? `namespace${namespaces.length > 1 ? "s" : ""} ${namespaces.join(", ")}` : "all namespaces";
  logger.info({ namespaces: namespaces ?? "(all)", store: store.dialect, server: kc.getCurrentCluster()?.server }, "operator started");
  process.stderr.write(`sluice: operator ${owner} watching ${where} on ${kc.getCurrentCluster()?.server ?? "the cluster"}, ${store.dialect} store\n`);

  await new Promise<void>((resolveStop) => {
    process.once("SIGTERM", () => resolveStop());
    process.once("SIGINT", () => resolveStop());
  });
  logger.info({}, "shutting down: reconciling stops, the lease is released");
  await leadership.stop();
  await store.close();
  logger.info({}, "stopped");
  logger.flush();
  return 0;
}

function durationFlag(flag: string, text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0) throw new SluiceError("BAD_INPUT", `${flag} "${text}" is not a duration: use a number and a unit, like 2s, 30s or 24h`);
  return ms;
}
