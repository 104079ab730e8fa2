/**
 * Schema checks for Kubernetes objects, as close to what `kubectl apply` meets on an API server
 * as is possible without one:
 * - built-in kinds against the Kubernetes OpenAPI schemas (kubernetes-models' `validate()`);
 * - their unknown fields, which those schemas let through but a server refuses under kubectl's
 *   default `--validate=strict`, found by walking @kubernetes/client-node's type maps;
 * - Sluice's own kinds against their CRDs' openAPIV3Schema (ajv), closed to unknown fields where
 *   the schema does not preserve them, for the same reason; their metadata against ObjectMeta.
 * A kind with no schema here is a problem too, so that no object goes unchecked.
 */
import * as k8s from "@kubernetes/client-node";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { CustomResourceDefinition } from "kubernetes-models/apiextensions.k8s.io/v1";
import { Deployment } from "kubernetes-models/apps/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { ClusterRole, ClusterRoleBinding, Role, RoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1";
import { ConfigMap, Namespace, PersistentVolumeClaim, Service, ServiceAccount } from "kubernetes-models/v1";

export type KubeObject = Record<string, any>;

interface Model {
  validate(): void;
}

/** The built-in kinds the manifests use: their kubernetes-models class and client-node type. */
const BUILTIN: Record<string, { model: new (data: any) => Model; type: string }> = {
  "v1/ConfigMap": { model: ConfigMap, type: "V1ConfigMap" },
  "v1/Namespace": { model: Namespace, type: "V1Namespace" },
  "v1/PersistentVolumeClaim": { model: PersistentVolumeClaim, type: "V1PersistentVolumeClaim" },
  "v1/Service": { model: Service, type: "V1Service" },
  "v1/ServiceAccount": { model: ServiceAccount, type: "V1ServiceAccount" },
  "apps/v1/Deployment": { model: Deployment, type: "V1Deployment" },
  "policy/v1/PodDisruptionBudget": { model: PodDisruptionBudget, type: "V1PodDisruptionBudget" },
  "rbac.authorization.k8s.io/v1/Role": { model: Role, type: "V1Role" },
  "rbac.authorization.k8s.io/v1/RoleBinding": { model: RoleBinding, type: "V1RoleBinding" },
  "rbac.authorization.k8s.io/v1/ClusterRole": { model: ClusterRole, type: "V1ClusterRole" },
  "rbac.authorization.k8s.io/v1/ClusterRoleBinding": { model: ClusterRoleBinding, type: "V1ClusterRoleBinding" },
  "apiextensions.k8s.io/v1/CustomResourceDefinition": { model: CustomResourceDefinition, type: "V1CustomResourceDefinition" },
};

/** The extension keywords of Kubernetes structural schemas; any other unknown keyword stays an error. */
const KUBE_KEYWORDS = [
  "x-kubernetes-preserve-unknown-fields",
  "x-kubernetes-list-type",
  "x-kubernetes-int-or-string",
  "x-kubernetes-embedded-resource",
  "x-kubernetes-map-type",
  "x-kubernetes-validations",
];

/** `kind/name` as messages name an object. */
export function objectName(obj: KubeObject): string {
  return `${obj?.kind ?? "?"}/${obj?.metadata?.name ?? "?"}`;
}

/** `/spec/template/spec/containers/0/name` → `spec.template.spec.containers[0].name`. */
function fieldPath(pointer: string): string {
  return pointer
    .split("/")
    .slice(1)
    .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"))
    .reduce((out, p) => (/^\d+$/.test(p) ? `${out}[${p}]` : out ? `${out}.${p}` : p), "");
}

function ajvProblems(errors: ErrorObject[] | null | undefined): string[] {
  return (errors ?? []).map((e) => {
    const field =
      e.keyword === "required"
        ? `${e.instancePath}/${e.params.missingProperty}`
        : e.keyword === "additionalProperties"
          ? `${e.instancePath}/${e.params.additionalProperty}`
          : e.instancePath;
    const message = e.keyword === "required" ? "required" : e.keyword === "additionalProperties" ? "unknown field" : e.message;
    return `${fieldPath(field) || "(root)"}: ${message}`;
  });
}

function modelProblems(model: Model): string[] {
  try {
    model.validate();
    return [];
  } catch (err) {
    const errors = (err as { errors?: ErrorObject[] }).errors;
    return errors ? ajvProblems(errors) : [(err as Error).message];
  }
}

/** Fields that client-node's type for `type` does not have, at any depth its type maps reach. */
function unknownFields(value: unknown, type: string, path: string, out: string[]): void {
  if (value === null || value === undefined) return;
  const list = /^Array<(.+)>$/.exec(type);
  if (list) {
    if (Array.isArray(value)) value.forEach((v, i) => unknownFields(v, list[1]!, `${path}[${i}]`, out));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    if (typeof value === "object") for (const [k, v] of Object.entries(value)) unknownFields(v, map[1]!, `${path}.${k}`, out);
    return;
  }
  // Primitives, IntOrString, `any` and the like have no type map: the OpenAPI check covers them.
  const model = (k8s as unknown as Record<string, { getAttributeTypeMap?: () => { baseName: string; type: string }[] }>)[type];
  if (!model?.getAttributeTypeMap || typeof value !== "object" || Array.isArray(value)) return;
  const attributes = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value)) {
    const at = path ? `${path}.${k}` : k;
    const t = attributes.get(k);
    if (t === undefined) out.push(`${at}: unknown field`);
    else unknownFields(v, t, at, out);
  }
}

/** RFC 1123 subdomain, as the API server requires of most object names. */
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function metadataProblems(metadata: unknown): string[] {
  if (!metadata || typeof metadata !== "object") return ["metadata: required"];
  const out = modelProblems(new ConfigMap({ metadata } as any));
  unknownFields(metadata, "V1ObjectMeta", "metadata", out);
  const name = (metadata as { name?: unknown }).name;
  if (typeof name !== "string" || !DNS_SUBDOMAIN.test(name)) out.push(`metadata.name: ${JSON.stringify(name)} is not a DNS subdomain name`);
  return out;
}

/**
 * A Kubernetes structural schema as the API server applies it to a create with strict field
 * validation: an object schema with properties and no x-kubernetes-preserve-unknown-fields
 * refuses other fields.
 */
function closed(schema: KubeObject): KubeObject {
  if (Array.isArray(schema)) return schema.map(closed);
  if (!schema || typeof schema !== "object") return schema;
  const out: KubeObject = Object.fromEntries(
    Object.entries(schema).map(([k, v]) => [
      k,
      k === "properties"
        ? Object.fromEntries(Object.entries(v as KubeObject).map(([pk, pv]) => [pk, closed(pv as KubeObject)]))
        : k === "enum" || k === "default"
          ? v
          : closed(v as KubeObject),
    ]),
  );
  if (out.properties && !out["x-kubernetes-preserve-unknown-fields"] && out.additionalProperties === undefined) out.additionalProperties = false;
  return out;
}

function crValidators(crds: KubeObject[]): Map<string, ValidateFunction> {
  const ajv = new Ajv({ allErrors: true, strict: true });
  for (const keyword of KUBE_KEYWORDS) ajv.addKeyword(keyword);
  // A list of type map holds one item per key: two conditions of one type are refused.
  ajv.addKeyword({
    keyword: "x-kubernetes-list-map-keys",
    type: "array",
    errors: false,
    validate: (keys: string[], items: KubeObject[]) => new Set(items.map((item) => JSON.stringify(keys.map((k) => item?.[k])))).size === items.length,
  });
  const out = new Map<string, ValidateFunction>();
  for (const crd of crds)
    for (const v of crd.spec.versions) out.set(`${crd.spec.group}/${v.name}/${crd.spec.names.kind}`, ajv.compile(closed(v.schema.openAPIV3Schema)));
  return out;
}

/**
 * A checker of objects against the built-in schemas and the given CRDs: the problems of one
 * object, each as `field: message`; none when it passes.
 */
export function objectChecker(crds: KubeObject[]): (obj: KubeObject) => string[] {
  const custom = crValidators(crds);
  return (obj) => {
    const key = `${obj?.apiVersion}/${obj?.kind}`;
    const builtin = BUILTIN[key];
    if (builtin) {
      const out = modelProblems(new builtin.model(obj));
      unknownFields(obj, builtin.type, "", out);
      if (!DNS_SUBDOMAIN.test(obj.metadata?.name ?? "")) out.push(`metadata.name: ${JSON.stringify(obj.metadata?.name)} is not a DNS subdomain name`);
      return out;
    }
    const validate = custom.get(key);
    if (validate) {
      const out = validate(obj) ? [] : ajvProblems(validate.errors);
      return [...out, ...metadataProblems(obj.metadata)];
    }
    return [`no schema for ${key}: add its kind to test/deploy/kube-schemas.ts, or its CRD to the manifests`];
  };
}
