// Settings of the ml-cost-exporter mixin; override any of them with `mixin { _config+:: {...} }`.
// The defaults render the rule files and dashboards exactly as they are in the repository.
{
  _config+:: {
    // Label matchers added to every selector of an exporter series (mlcost_*, inference_cost_per_1k_usd)
    // in alert and recording expressions, e.g. 'job="ml-cost-exporter"'. Empty: by metric name only.
    selector: '',
    // Where runbooks and dashboards live: the prefixes of runbook_url and dashboard_url are replaced.
    runbookURLBase: 'https://github.com/ml-cost-exporter/ml-cost-exporter/blob/main/',
    grafanaURL: 'http://localhost:3000',
    // Per-alert thresholds: the `for` duration and the severity, by alert name, e.g.
    // {MLCostCollectorFailing: '30m'} and {MLCostGPUIdleHigh: 'warning'}.
    alertFor: {},
    alertSeverity: {},
    // Labels added to every alert (e.g. {team: 'finops'} for routing), and alerts left out by name.
    alertLabels: {},
    disabledAlerts: [],
    // Show the dashboards' cluster variable (kubernetes-mixin's setting). The queries select `cluster=~"$cluster"`
    // either way; with one cluster and no cluster label, hiding it leaves All selected.
    showMultiCluster: true,
  },
}
