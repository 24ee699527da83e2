// Validates custom resources (JSON on stdin, a list) against the prometheus-operator and KEDA CRD schemas,
// compiled by the @kubernetes-models packages installed in the directory given as the first argument.
// Prints one line per object: "ok <kind> <name>" or "invalid <kind> <name>: <errors>".
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = join(process.argv[2], "node_modules", "@kubernetes-models");
const models = {
  PodMonitor: ["prometheus-operator", "monitoring.coreos.com/v1/PodMonitor.js"],
  PrometheusRule: ["prometheus-operator", "monitoring.coreos.com/v1/PrometheusRule.js"],
  ScaledObject: ["keda", "keda.sh/v1alpha1/ScaledObject.js"],
};
const objects = JSON.parse(readFileSync(0, "utf8"));
for (const object of objects) {
  const [pkg, path] = models[object.kind] ?? [];
  if (!pkg) {
    console.log(`invalid ${object.kind} ${object.metadata?.name}: no schema for this kind`);
    continue;
  }
  const module = await import(pathToFileURL(join(modules, pkg, path)).href);
  try {
    new module[object.kind](object).validate();
    console.log(`ok ${object.kind} ${object.metadata.name}`);
  } catch (error) {
    console.log(`invalid ${object.kind} ${object.metadata?.name}: ${error.message.replace(/\n/g, " ")}`);
  }
}
