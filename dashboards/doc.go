// Package dashboards holds jmxdp's Grafana dashboard, jmxdp.json. It has no
// code: its test (lint_test.go) checks the dashboard and the deployment
// files under deploy/ (Prometheus alert rules and scrape configuration, the
// systemd unit, the Kubernetes DaemonSet) against the metrics jmxdp
// exports (userspace/metrics) and the runbook in docs/operating.md.
//
// Import jmxdp.json in Grafana (Dashboards, New, Import) and pick a
// Prometheus data source; docs/operating.md explains each row.
package dashboards
