/**
 * RBAC as the API server's authorizer applies it, for checking a Role against the requests the
 * operator made (the fake API server's request log): which requests would be forbidden.
 */
import { parseAllDocuments } from "yaml";
import type { KubeRequest } from "./fake-apiserver.js";

/** A rule of a Role or ClusterRole (rbac.authorization.k8s.io/v1 PolicyRule, resource rules only). */
export interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  resourceNames?: string[];
}

/**
 * The requests no rule grants, each once (in the order first seen). Using RBAC Authorization:
 * rules are additive (a request passes when one rule grants it); a rule names API groups ("" the
 * core group), resources and verbs, "*" standing for all; a subresource is granted only as
 * `resource/subresource` (or `*` / `*` + `/subresource`), never by its resource alone; with
 * resourceNames, only requests for those names.
 *
 * `namespace`: the Role's namespace. A Role grants only inside its namespace, so with it given a
 * request in another namespace or across all of them (a cluster-wide list or watch, which needs a
 * ClusterRole) is reported too, with its namespace (none for cluster-wide); without it, only the
 * rules' groups, resources and verbs are checked.
 */
export function roleCovers(rules: PolicyRule[], requests: KubeRequest[], opts: { namespace?: string } = {}): KubeRequest[] {
  const scoped = opts.namespace !== undefined;
  const missing = new Map<string, KubeRequest>();
  for (const r of requests) {
    const inScope = !scoped || r.namespace === opts.namespace;
    if (inScope && rules.some((rule) => grants(rule, r))) continue;
    const k = `${r.verb} ${r.apiGroup}/${resourceOf(r)}${scoped ? ` in ${r.namespace ?? "all namespaces"}` : ""}`;
    if (missing.has(k)) continue;
    missing.set(k, {
      verb: r.verb,
      apiGroup: r.apiGroup,
      resource: r.resource,
      ...(r.subresource ? { subresource: r.subresource } : {}),
      ...(scoped && r.namespace !== undefined ? { namespace: r.namespace } : {}),
    });
  }
  return [...missing.values()];
}

const resourceOf = (r: KubeRequest) => (r.subresource ? `${r.resource}/${r.subresource}` : r.resource);

function grants(rule: PolicyRule, r: KubeRequest): boolean {
  const groups = rule.apiGroups ?? [];
  if (!groups.includes("*") && !groups.includes(r.apiGroup)) return false;
  if (!rule.verbs.includes("*") && !rule.verbs.includes(r.verb)) return false;
  const resources = rule.resources ?? [];
  const wanted = resourceOf(r);
  const resourceOk = resources.some((x) => x === "*" || x === wanted || (r.subresource !== undefined && x === `*/${r.subresource}`));
  if (!resourceOk) return false;
  const names = rule.resourceNames ?? [];
  return names.length === 0 || (r.name !== undefined && names.includes(r.name));
}

/** The rules of the Role named `name` (the first Role when left out) in a multi-document YAML text. */
export function roleRules(yamlText: string, name?: string): PolicyRule[] {
  for (const doc of parseAllDocuments(yamlText)) {
    const o = doc.toJS() as { kind?: string; metadata?: { name?: string }; rules?: PolicyRule[] } | null;
    if (o?.kind === "Role" && (name === undefined || o.metadata?.name === name)) return o.rules ?? [];
  }
  throw new Error(`no Role${name === undefined ? "" : ` named ${name}`} in the YAML`);
}
