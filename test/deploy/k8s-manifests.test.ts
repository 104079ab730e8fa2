/**
 * deploy/k8s: the kustomize base and its overlays render with the real kubectl, every object they
 * hold passes its schema (test/deploy/kube-schemas.ts), and so do the example WorkflowRun and the
 * workflows/*.yaml files, which are Workflow resources as they are. No API server is available
 * here: what only a server does (defaulting, pruning, RBAC enforcement) is not tested.
 */
import { describe, it, expect, beforeAll } from "vitest";
import { execFile, execFileSync } from "node:child_process";
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { parse, parseAllDocuments } from "yaml";
import { GENERATED_FILES } from "../../src/spec/generate.js";
import { objectChecker, objectName, type KubeObject } from "./kube-schemas.js";

const ROOT = join(import.meta.dirname, "..", "..");
const run = promisify(execFile);
const VERSION: string = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version;
const IMAGE = "ghcr.io/sluice-dev/sluice";
const BUILDS = ["deploy/k8s/base", "deploy/k8s/overlays/production", "deploy/k8s/overlays/local", "deploy/k8s/overlays/all-namespaces"] as const;
type Build = (typeof BUILDS)[number];

/** kubectl's client and kustomize versions, or undefined when there is no kubectl. */
function findKubectl(): { client: string; kustomize: string } | undefined {
  try {
    const v = JSON.parse(execFileSync("kubectl", ["version", "--client", "-o", "json"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }));
    return { client: v.clientVersion?.gitVersion ?? "?", kustomize: v.kustomizeVersion ?? "?" };
  } catch {
    return undefined;
  }
}
const kubectl = findKubectl();

function yamlDocuments(text: string, source: string): KubeObject[] {
  return parseAllDocuments(text).map((d) => {
    if (d.errors.length > 0) throw new Error(`${source}: ${d.errors[0]!.message}`);
    return d.toJS() as KubeObject;
  });
}

const committedCrds = () => [GENERATED_FILES.workflowCrd, GENERATED_FILES.workflowRunCrd].map((f) => parse(readFileSync(join(ROOT, f), "utf8")) as KubeObject);

/** The files of a folder ending in .yaml, as parsed objects with their file name. */
function yamlFiles(dir: string): { file: string; obj: KubeObject }[] {
  return readdirSync(join(ROOT, dir))
    .filter((n) => n.endsWith(".yaml"))
    .sort()
    .flatMap((n) => yamlDocuments(readFileSync(join(ROOT, dir, n), "utf8"), `${dir}/${n}`).map((obj) => ({ file: `${dir}/${n}`, obj })));
}

const deployments = (objects: KubeObject[]) => objects.filter((o) => o.kind === "Deployment");
const find = (objects: KubeObject[], kind: string, name: string) => {
  const o = objects.find((x) => x.kind === kind && x.metadata?.name === name);
  if (!o) throw new Error(`no ${kind}/${name} among ${objects.map(objectName).join(", ")}`);
  return o;
};
/** A memory quantity in MiB ("512Mi", "3Gi"). */
const mebibytes = (q: string) => {
  const m = /^(\d+)(Mi|Gi)$/.exec(q);
  if (!m) throw new Error(`unexpected memory quantity ${q}`);
  return Number(m[1]) * (m[2] === "Gi" ? 1024 : 1);
};
const container = (d: KubeObject) => d.spec.template.spec.containers[0];
/** The value after `--flag` in a container's args. */
const flag = (c: KubeObject, name: string) => {
  const i = (c.args as string[]).indexOf(name);
  return i >= 0 ? (c.args as string[])[i + 1] : undefined;
};

describe("schema checks of Kubernetes objects (no kubectl needed)", () => {
  const check = objectChecker(committedCrds());
  const deployment = () =>
    structuredClone(
      find(
        yamlFiles("deploy/k8s/base").map((f) => f.obj),
        "Deployment",
        "sluice-worker",
      ),
    );
  const workflowRun = () => structuredClone(yamlFiles("deploy/k8s/examples")[0]!.obj);

  it("pass the base's Deployment and the example WorkflowRun as written", () => {
    expect(check(deployment())).toEqual([]);
    expect(check(workflowRun())).toEqual([]);
  });

  it("refuse a Deployment with a field of the wrong type, naming the field", () => {
    const d = deployment();
    d.spec.replicas = "three";
    expect(check(d)).toEqual(["spec.replicas: must be integer"]);
  });

  it("refuse a Deployment with an unknown field, as a server does under kubectl's strict validation", () => {
    const d = deployment();
    d.spec.template.spec.containers[0].imagePullPolcy = "Always";
    expect(check(d)).toEqual(["spec.template.spec.containers[0].imagePullPolcy: unknown field"]);
  });

  it("refuse a WorkflowRun without workflowRef, naming the field", () => {
    const r = workflowRun();
    delete r.spec.workflowRef;
    expect(check(r)).toEqual(["spec.workflowRef: required"]);
  });

  it("refuse a WorkflowRun with an unknown spec field, a wrong type, or two conditions of one type", () => {
    const r = workflowRun();
    r.spec.parms = {};
    r.spec.ttlSecondsAfterFinished = "1d";
    const condition = { type: "Ready", status: "True", lastTransitionTime: "2025-01-01T00:00:00Z", reason: "Started", message: "" };
    r.status = { conditions: [condition, { ...condition, status: "False" }] };
    expect(check(r)).toEqual([
      "spec.parms: unknown field",
      "spec.ttlSecondsAfterFinished: must be integer",
      'status.conditions: must pass "x-kubernetes-list-map-keys" keyword validation',
    ]);
  });

  it("refuse a kind with no schema, and a custom resource whose name is no DNS name", () => {
    expect(check({ apiVersion: "batch/v1", kind: "CronJob", metadata: { name: "x" } })).toEqual([
      "no schema for batch/v1/CronJob: add its kind to test/deploy/kube-schemas.ts, or its CRD to the manifests",
    ]);
    const r = workflowRun();
    r.metadata.name = "Standard_Ingestion";
    expect(check(r)).toEqual(['metadata.name: "Standard_Ingestion" is not a DNS subdomain name']);
  });
});

if (!kubectl && process.env.CI) {
  it("kubectl is installed (CI needs it to render deploy/k8s)", () => {
    throw new Error(
      "kubectl is not on PATH: .ci/run installs Debian's kubernetes-client when kubectl is missing, and that failed; see its 'ci: could not install' line",
    );
  });
} else if (!kubectl) {
  it.skip("deploy/k8s rendering: kubectl is not installed here, so these tests are skipped (in CI they fail instead)", () => {});
}

describe.skipIf(!kubectl)("deploy/k8s rendered with kubectl kustomize", () => {
  const rendered = {} as Record<Build, { code: number; stderr: string; objects: KubeObject[] }>;
  beforeAll(async () => {
    for (const b of BUILDS) {
      try {
        const r = await run("kubectl", ["kustomize", b], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 });
        rendered[b] = { code: 0, stderr: r.stderr, objects: yamlDocuments(r.stdout, b) };
      } catch (err) {
        const e = err as { code?: number; stderr?: string };
        rendered[b] = { code: typeof e.code === "number" ? e.code : -1, stderr: e.stderr ?? String(err), objects: [] };
      }
    }
  });
  const objectsOf = (b: Build) => rendered[b].objects;
  const crdsOf = (b: Build) => objectsOf(b).filter((o) => o.kind === "CustomResourceDefinition");

  it.each(BUILDS)("%s renders: exit 0, nothing on stderr (no deprecation warnings)", (b) => {
    const versions = `kubectl ${kubectl!.client}, kustomize ${kubectl!.kustomize}; these manifests need kustomize v5`;
    expect(rendered[b].code, `${rendered[b].stderr} (${versions})`).toBe(0);
    expect(rendered[b].stderr, versions).toBe("");
    expect(objectsOf(b).length).toBeGreaterThan(0);
  });

  it.each(BUILDS)("every object of %s passes its schema", (b) => {
    const check = objectChecker(crdsOf(b));
    const problems = objectsOf(b).flatMap((o) => check(o).map((p) => `${objectName(o)}: ${p}`));
    expect(problems).toEqual([]);
    expect(objectsOf(b).map((o) => o.kind)).toEqual(
      expect.arrayContaining(["CustomResourceDefinition", "Deployment", "Service", "ConfigMap", "PersistentVolumeClaim", "Role"]),
    );
  });

  it("the base holds the generated CRDs and nothing that is not in its kustomization", () => {
    const crds = crdsOf("deploy/k8s/base");
    expect(crds.map((c) => c.metadata.name).sort()).toEqual(["workflowruns.sluice.dev", "workflows.sluice.dev"]);
    for (const crd of crds) {
      const generated = committedCrds().find((c) => c.metadata.name === crd.metadata.name)!;
      expect(crd.spec).toEqual(generated.spec);
      expect(crd.spec.versions.map((v: KubeObject) => v.subresources)).toEqual([{ status: {} }]);
    }
    expect(
      deployments(objectsOf("deploy/k8s/base"))
        .map((d) => d.metadata.name)
        .sort(),
    ).toEqual(["sluice-operator", "sluice-server", "sluice-worker"]);
  });

  it("the examples and every workflows/*.yaml pass the rendered CRDs' schemas", () => {
    const check = objectChecker(crdsOf("deploy/k8s/base"));
    const files = [...yamlFiles("deploy/k8s/examples"), ...yamlFiles("workflows")];
    expect(files.filter((f) => f.file.startsWith("workflows/")).length).toBe(readdirSync(join(ROOT, "workflows")).filter((n) => n.endsWith(".yaml")).length);
    expect(files.map((f) => `${f.file}: ${f.obj.kind}`)).toEqual(expect.arrayContaining(["deploy/k8s/examples/workflowrun.yaml: WorkflowRun"]));
    const problems = files.flatMap((f) => check(f.obj).map((p) => `${f.file}: ${p}`));
    expect(problems).toEqual([]);
  });

  it("the example WorkflowRun names a Workflow of workflows/ and only params that workflow declares", () => {
    const workflows = new Map(yamlFiles("workflows").map((f) => [f.obj.metadata.name, f.obj]));
    for (const { file, obj } of yamlFiles("deploy/k8s/examples").filter((f) => f.obj.kind === "WorkflowRun")) {
      const wf = workflows.get(obj.spec.workflowRef.name);
      expect(wf, `${file}: workflowRef.name ${obj.spec.workflowRef.name} is none of ${[...workflows.keys()].join(", ")}`).toBeDefined();
      expect(Object.keys(wf!.spec.params ?? {})).toEqual(expect.arrayContaining(Object.keys(obj.spec.params ?? {})));
    }
  });

  it("the operator's Role grants no wildcard, and the operator runs as its ServiceAccount in its own namespace", () => {
    for (const b of BUILDS) {
      const role = find(objectsOf(b), "Role", "sluice-operator");
      for (const rule of role.rules) {
        expect(rule.verbs).not.toContain("*");
        expect(rule.resources).not.toContain("*");
        expect(rule.apiGroups).not.toContain("*");
      }
      const op = find(objectsOf(b), "Deployment", "sluice-operator");
      expect(op.spec.replicas).toBe(1);
      expect(op.spec.template.spec.serviceAccountName).toBe("sluice-operator");
      expect(op.spec.template.spec.terminationGracePeriodSeconds).toBe(30);
      const c = container(op);
      const scope = b.endsWith("all-namespaces") ? ["--all-namespaces"] : ["--namespace", "$(POD_NAMESPACE)"];
      expect([...c.command, ...c.args]).toEqual(["sluice", "operator", ...scope]);
      expect(c.env.find((e: KubeObject) => e.name === "POD_NAMESPACE").valueFrom).toEqual({ fieldRef: { fieldPath: "metadata.namespace" } });
      const binding = find(objectsOf(b), "RoleBinding", "sluice-operator");
      expect(binding.subjects).toEqual([expect.objectContaining({ kind: "ServiceAccount", name: "sluice-operator" })]);
    }
  });

  it("probes point at /readyz and /healthz on the ports the processes are told to listen on, and so do the scrape annotations", () => {
    for (const b of BUILDS) {
      const objects = objectsOf(b);
      const portOf = (c: KubeObject, port: string | number) =>
        typeof port === "number" ? port : c.ports.find((p: KubeObject) => p.name === port)?.containerPort;
      const server = find(objects, "Deployment", "sluice-server");
      const s = container(server);
      expect(s.args.slice(0, 2)).toEqual(["serve", "--no-worker"]);
      expect(flag(s, "--host")).toBe("0.0.0.0");
      expect(flag(s, "--config")).toBe("/etc/sluice/server.yaml");
      expect(s.readinessProbe.httpGet.path).toBe("/readyz");
      expect(s.livenessProbe.httpGet.path).toBe("/healthz");
      expect(portOf(s, s.readinessProbe.httpGet.port)).toBe(Number(flag(s, "--port")));
      expect(portOf(s, s.livenessProbe.httpGet.port)).toBe(Number(flag(s, "--port")));
      expect(server.spec.template.metadata.annotations).toEqual({
        "prometheus.io/scrape": "true",
        "prometheus.io/port": flag(s, "--port"),
        "prometheus.io/path": "/metrics",
      });

      const worker = find(objects, "Deployment", "sluice-worker");
      const w = container(worker);
      expect(w.args[0]).toBe("worker");
      expect(flag(w, "--metrics-host")).toBe("0.0.0.0");
      expect(w.livenessProbe.httpGet.path).toBe("/healthz");
      expect(portOf(w, w.livenessProbe.httpGet.port)).toBe(Number(flag(w, "--metrics-port")));
      expect(worker.spec.template.metadata.annotations).toEqual({
        "prometheus.io/scrape": "true",
        "prometheus.io/port": flag(w, "--metrics-port"),
        "prometheus.io/path": "/metrics",
      });

      const op = container(find(objects, "Deployment", "sluice-operator"));
      expect([op.readinessProbe, op.livenessProbe, op.ports]).toEqual([undefined, undefined, undefined]);

      const service = find(objects, "Service", "sluice");
      expect(service.spec.selector).toEqual(server.spec.selector.matchLabels);
      expect(service.spec.ports.map((p: KubeObject) => portOf(s, p.targetPort))).toEqual([Number(flag(s, "--port"))]);
    }
  });

  it("the server and worker flags are ones `sluice serve` and `sluice worker` accept", async () => {
    for (const d of ["sluice-server", "sluice-worker"]) {
      const c = container(find(objectsOf("deploy/k8s/base"), "Deployment", d));
      const help = (await run(process.execPath, [join(ROOT, "bin", "sluice.js"), c.args[0], "--help"], { cwd: ROOT })).stdout;
      for (const f of (c.args as string[]).filter((a) => a.startsWith("--"))) expect(help, `${d}: sluice ${c.args[0]} ${f}`).toContain(`${f} `);
    }
  });

  it("every secret comes from the Secret `sluice`, which no manifest holds", () => {
    for (const b of BUILDS) {
      const objects = objectsOf(b);
      expect(objects.filter((o) => o.kind === "Secret")).toEqual([]);
      const refs = deployments(objects).flatMap((d) =>
        d.spec.template.spec.containers.flatMap((c: KubeObject) => (c.env ?? []).map((e: KubeObject) => e.valueFrom?.secretKeyRef).filter(Boolean)),
      );
      expect(refs.length).toBeGreaterThan(0);
      for (const ref of refs) expect(ref.name).toBe("sluice");
      const keys = [...new Set(refs.map((r: KubeObject) => r.key))].sort();
      // The keys the README's `kubectl create secret generic sluice` command gives.
      expect(keys).toEqual(["admin-token", "ci-token", "database-url", "ops-webhook-url", "viewer-token"]);
      for (const d of deployments(objects)) for (const v of d.spec.template.spec.volumes ?? []) expect(v.secret).toBeUndefined();
    }
  });

  it("every volume, ConfigMap and claim a pod names is in the same build, and every container is hardened and bounded", () => {
    for (const b of BUILDS) {
      const objects = objectsOf(b);
      for (const d of deployments(objects)) {
        const pod = d.spec.template.spec;
        expect(d.spec.template.metadata.labels, objectName(d)).toEqual(expect.objectContaining(d.spec.selector.matchLabels));
        expect(pod.securityContext.runAsNonRoot, objectName(d)).toBe(true);
        const volumes = new Set((pod.volumes ?? []).map((v: KubeObject) => v.name));
        for (const v of pod.volumes ?? []) {
          if (v.configMap) find(objects, "ConfigMap", v.configMap.name);
          if (v.persistentVolumeClaim) find(objects, "PersistentVolumeClaim", v.persistentVolumeClaim.claimName);
        }
        for (const c of pod.containers) {
          const at = `${objectName(d)} ${c.name}`;
          expect(c.image, at).toBe(`${IMAGE}:${b.endsWith("local") ? "dev" : VERSION}`);
          expect(c.securityContext, at).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } });
          expect(c.resources.requests.cpu, at).toBeDefined();
          expect(c.resources.requests.memory, at).toBeDefined();
          expect(c.resources.limits.memory, at).toBeDefined();
          for (const m of c.volumeMounts ?? []) expect(volumes.has(m.name), `${at}: mount ${m.name}`).toBe(true);
          for (const e of c.envFrom ?? []) find(objects, "ConfigMap", e.configMapRef.name);
          // With a read-only root, whatever the process writes needs a volume: /tmp at least.
          expect(
            (c.volumeMounts ?? []).map((m: KubeObject) => m.mountPath),
            at,
          ).toContain("/tmp");
        }
      }
      // serve refuses to start without its --workflows directory: the pod mounts one.
      const s = container(find(objects, "Deployment", "sluice-server"));
      const dir = s.volumeMounts.find((m: KubeObject) => m.mountPath === flag(s, "--workflows"));
      expect(dir, "the --workflows directory is a mount").toBeDefined();
    }
  });

  it("production: namespace sluice, 2 servers and 3 workers spread and covered by disruption budgets, more memory", () => {
    const objects = objectsOf("deploy/k8s/overlays/production");
    for (const o of objects) expect(o.metadata.namespace, objectName(o)).toBe(o.kind === "CustomResourceDefinition" ? undefined : "sluice");
    expect(find(objects, "RoleBinding", "sluice-operator").subjects[0].namespace).toBe("sluice");
    const server = find(objects, "Deployment", "sluice-server");
    const worker = find(objects, "Deployment", "sluice-worker");
    expect([server.spec.replicas, worker.spec.replicas]).toEqual([2, 3]);
    expect(server.spec.template.spec.topologySpreadConstraints[0].labelSelector.matchLabels).toEqual(server.spec.selector.matchLabels);
    for (const d of [server, worker]) {
      const pdbs = objects.filter(
        (o) => o.kind === "PodDisruptionBudget" && JSON.stringify(o.spec.selector.matchLabels) === JSON.stringify(d.spec.selector.matchLabels),
      );
      expect(pdbs.length, `one PodDisruptionBudget selects ${objectName(d)}'s pods`).toBe(1);
    }
    const base = objectsOf("deploy/k8s/base");
    const memory = (objs: KubeObject[], name: string) => mebibytes(container(find(objs, "Deployment", name)).resources.limits.memory);
    for (const name of ["sluice-server", "sluice-worker"]) expect(memory(objects, name)).toBeGreaterThan(memory(base, name));
  });

  it("all-namespaces: the operator watches every namespace under a ClusterRole of exactly the Role's rules", () => {
    const objects = objectsOf("deploy/k8s/overlays/all-namespaces");
    expect(container(find(objects, "Deployment", "sluice-operator")).args).toEqual(["operator", "--all-namespaces"]);
    expect(find(objects, "ClusterRole", "sluice-operator").rules).toEqual(find(objectsOf("deploy/k8s/base"), "Role", "sluice-operator").rules);
    const binding = find(objects, "ClusterRoleBinding", "sluice-operator");
    expect(binding.roleRef).toMatchObject({ kind: "ClusterRole", name: "sluice-operator" });
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: "sluice-operator", namespace: "sluice" }]);
  });

  it("local: a ReadWriteOnce volume, as kind's and k3d's provisioners offer", () => {
    expect(find(objectsOf("deploy/k8s/overlays/local"), "PersistentVolumeClaim", "sluice-home").spec.accessModes).toEqual(["ReadWriteOnce"]);
  });
});

describe("the README's deploy/ paths", () => {
  it("name files and folders that exist", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const paths = [...new Set([...readme.matchAll(/`(deploy\/[^`\s]+)`/g)].map((m) => m[1]!))];
    expect(paths.length).toBeGreaterThan(3);
    expect(paths.filter((p) => !existsSync(join(ROOT, p)))).toEqual([]);
  });
});
