// ml-cost-exporter as a monitoring mixin (the kube-prometheus convention): prometheusAlerts,
// prometheusRules and grafanaDashboards, built from generated copies of the repository's own rule files and
// dashboards (files.libsonnet, rules/, dashboards/: everything it imports is in this directory, so
// jsonnet-bundler can vendor it alone). A rule group holding any alert is an alert group, kept
// whole so that its alerts are evaluated after the recording rules they read, as in the files.
local files = import 'files.libsonnet';
local promql = import 'lib/promql.libsonnet';

local defaultRunbookBase = 'https://github.com/ml-cost-exporter/ml-cost-exporter/blob/main/';
local defaultGrafana = 'http://localhost:3000';
local groups = std.flattenArrays([f.groups for f in files.ruleFiles]);
local hasAlert(group) = std.length([r for r in group.rules if std.objectHas(r, 'alert')]) > 0;
local replacePrefix(s, old, new) = if std.startsWith(s, old) then new + s[std.length(old):] else s;

(import 'config.libsonnet') + {
  local config = self._config,

  local expr(e) = promql.withMatchers(e, config.selector, promql.exporterSeries),

  local alert(a) = a {
    expr: expr(a.expr),
    [if std.objectHas(config.alertFor, a.alert) then 'for']: config.alertFor[a.alert],
    labels+: config.alertLabels + (
      if std.objectHas(config.alertSeverity, a.alert) then { severity: config.alertSeverity[a.alert] } else {}
    ),
    annotations+: {
      runbook_url: replacePrefix(a.annotations.runbook_url, defaultRunbookBase, config.runbookURLBase),
      dashboard_url: replacePrefix(a.annotations.dashboard_url, defaultGrafana, config.grafanaURL),
    },
  },

  local renderRule(r) =
    if std.objectHas(r, 'alert') then alert(r) else r { expr: expr(r.expr) },

  local render(group) = group {
    rules: [renderRule(r) for r in group.rules if !(std.objectHas(r, 'alert') && std.member(config.disabledAlerts, r.alert))],
  },

  // Without showMultiCluster the cluster variable is hidden (it still selects All), as kubernetes-mixin does.
  local dashboard(d) =
    if config.showMultiCluster then d
    else d { templating+: { list: [if v.name == 'cluster' then v { hide: 2 } else v for v in super.list] } },

  prometheusAlerts+:: { groups+: [render(g) for g in groups if hasAlert(g)] },
  prometheusRules+:: { groups+: [render(g) for g in groups if !hasAlert(g)] },
  grafanaDashboards+:: { [name]: dashboard(files.dashboards[name]) for name in std.objectFields(files.dashboards) },
}
