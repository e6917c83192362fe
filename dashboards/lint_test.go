package dashboards_test

// The dashboard and the deployment files are checked against what jmxdp
// really exports (metrics.Names()) and against the runbook
// (docs/operating.md), so that a renamed metric, a typo in a query or an
// alert without its runbook section fails here rather than on an
// operator's screen.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/metrics"
	"github.com/jmxdp/jmxdp/userspace/natsink"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// repo is a path in the repository (tests run in dashboards/).
func repo(elem ...string) string { return filepath.Join(append([]string{".."}, elem...)...) }

var (
	dashboardPath = repo("dashboards", "jmxdp.json")
	alertsPath    = repo("deploy", "prometheus", "alerts.yaml")
	alertTestPath = repo("deploy", "prometheus", "alerts_test.yaml")
	promCfgPath   = repo("deploy", "prometheus", "prometheus.example.yml")
	unitPath      = repo("deploy", "systemd", "jmxdp.service")
	daemonSetPath = repo("deploy", "kubernetes", "daemonset.yaml")
	operatingPath = repo("docs", "operating.md")
)

// runbookURL is where every alert's runbook_url points, plus "#" and the
// alert's name in lower case (its heading's anchor in docs/operating.md).
const runbookURL = "https://github.com/jmxdp/jmxdp/blob/main/docs/operating.md"

// requiredCaps are the capabilities `jmxdp run` needs, and all it gets,
// in the systemd unit and in the DaemonSet.
var requiredCaps = []string{"BPF", "IPC_LOCK", "NET_ADMIN", "NET_RAW", "PERFMON", "SYS_NICE"}

// metricsPort is metrics.addr's port in the deployment files.
const metricsPort = "9877"

var promql = parser.NewParser(parser.Options{})

// testInstance, testJob and testCluster stand for the $instance, $job and
// $cluster variables.
const (
	testInstance = "capture-1.example.net:9877"
	testJob      = "jmxdp-test-job"
	testCluster  = "eu-test-1"
)

// selectorVars are the variables every panel's selector must match by, as
// label=~"$label" (the node_exporter mixin's job and cluster, and the
// instance), and what each is replaced with.
var selectorVars = []struct{ label, value string }{
	{"job", testJob}, {"cluster", testCluster}, {"instance", testInstance},
}

// grafanaVars replaces Grafana's variables as Grafana would before a query
// reaches Prometheus. Longer names come first where one is a prefix of
// another.
var grafanaVars = strings.NewReplacer(
	"${__rate_interval}", "5m", "$__rate_interval", "5m",
	"${__interval_ms}", "60000", "$__interval_ms", "60000",
	"${__interval}", "1m", "$__interval", "1m",
	"${__range_s}", "21600", "$__range_s", "21600",
	"${__range}", "6h", "$__range", "6h",
	"${instance}", testInstance, "$instance", testInstance,
	"${job}", testJob, "$job", testJob,
	"${cluster}", testCluster, "$cluster", testCluster,
)

// dashboardRanges are the range selectors a dashboard query may use:
// Grafana's, never a fixed duration that breaks at other scrape intervals.
var dashboardRanges = []string{"$__rate_interval", "${__rate_interval}", "$__range", "${__range}"}

// knownMetrics is every metric name a query may select: jmxdp's families
// and Prometheus's own up.
func knownMetrics() map[string]bool {
	known := map[string]bool{"up": true}
	for _, n := range metrics.Names() {
		known[n] = true
	}
	for _, n := range natsink.Names() {
		known[n] = true
	}
	return known
}

// selectors parses a PromQL expression and returns its vector selectors.
func selectors(expr string) ([]*parser.VectorSelector, error) {
	node, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var out []*parser.VectorSelector
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out, nil
}

// checkSelectors reports selectors of unknown metrics, or selecting by
// something other than a name, and returns the names selected.
func checkSelectors(t *testing.T, where, expr string, sels []*parser.VectorSelector, known map[string]bool) []string {
	t.Helper()
	var names []string
	for _, vs := range sels {
		switch {
		case vs.Name == "":
			t.Errorf("%s: %s: selector %s names no metric", where, expr, vs)
		case !known[vs.Name]:
			t.Errorf("%s: %s: jmxdp exports no metric %q (metrics.Names())", where, expr, vs.Name)
		default:
			names = append(names, vs.Name)
		}
	}
	return names
}

// hasMatcher reports whether vs matches label name against value (as =
// or =~).
func hasMatcher(vs *parser.VectorSelector, name, value string) bool {
	return slices.ContainsFunc(vs.LabelMatchers, func(m *labels.Matcher) bool {
		return m.Name == name && m.Value == value && (m.Type == labels.MatchEqual || m.Type == labels.MatchRegexp)
	})
}

// ---------------------------------------------------------------- dashboard

// dashQuery is one PromQL expression of the dashboard and where it is.
type dashQuery struct {
	where string
	expr  string
	// by: the variables (labels of selectorVars) that every selector of
	// the query must match by: all of them in panels and annotations; in a
	// variable's query, those of the variables before it.
	by []string
}

func loadDashboard(t *testing.T) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return dash
}

// walkPanels calls fn on every panel, rows and the panels of collapsed rows
// included.
func walkPanels(panels []any, fn func(p map[string]any)) {
	for _, p := range panels {
		pm, ok := p.(map[string]any)
		if !ok {
			continue
		}
		fn(pm)
		if sub, ok := pm["panels"].([]any); ok {
			walkPanels(sub, fn)
		}
	}
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

// variableExpr is the PromQL inside a Grafana Prometheus variable query,
// or "" when it has none (label_names(), metrics(), label_values(label)).
var (
	labelValuesRe = regexp.MustCompile(`^label_values\(\s*(.+)\s*,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)$`)
	queryResultRe = regexp.MustCompile(`^query_result\((.+)\)$`)
	noExprRe      = regexp.MustCompile(`^(label_names\(.*\)|metrics\(.*\)|label_values\(\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\))$`)
)

func variableExpr(q string) string {
	q = strings.TrimSpace(q)
	if m := labelValuesRe.FindStringSubmatch(q); m != nil {
		return m[1]
	}
	if m := queryResultRe.FindStringSubmatch(q); m != nil {
		return m[1]
	}
	if noExprRe.MatchString(q) {
		return ""
	}
	return q
}

// variableQuery is a variable's query, a string or (Grafana 10+) an object
// holding one.
func variableQuery(v map[string]any) string {
	switch q := v["query"].(type) {
	case string:
		return q
	case map[string]any:
		return str(q, "query")
	}
	return ""
}

func dashboardQueries(t *testing.T, dash map[string]any) []dashQuery {
	t.Helper()
	var qs []dashQuery
	panels, _ := dash["panels"].([]any)
	walkPanels(panels, func(p map[string]any) {
		targets, _ := p["targets"].([]any)
		for _, tg := range targets {
			tm, _ := tg.(map[string]any)
			if expr := str(tm, "expr"); expr != "" {
				qs = append(qs, dashQuery{fmt.Sprintf("panel %q target %s", str(p, "title"), str(tm, "refId")), expr, allVars()})
			}
		}
	})
	if ann, ok := dash["annotations"].(map[string]any); ok {
		list, _ := ann["list"].([]any)
		for _, a := range list {
			am, _ := a.(map[string]any)
			if expr := str(am, "expr"); expr != "" {
				qs = append(qs, dashQuery{fmt.Sprintf("annotation %q", str(am, "name")), expr, allVars()})
			}
		}
	}
	if tmpl, ok := dash["templating"].(map[string]any); ok {
		list, _ := tmpl["list"].([]any)
		for _, v := range list {
			vm, _ := v.(map[string]any)
			if str(vm, "type") != "query" {
				continue
			}
			var by []string
			for _, sv := range selectorVars {
				if sv.label == str(vm, "name") {
					break
				}
				by = append(by, sv.label)
			}
			if expr := variableExpr(variableQuery(vm)); expr != "" {
				qs = append(qs, dashQuery{fmt.Sprintf("variable %q", str(vm, "name")), expr, by})
			}
		}
	}
	return qs
}

func allVars() []string {
	var out []string
	for _, sv := range selectorVars {
		out = append(out, sv.label)
	}
	return out
}

// TestDashboardQueries parses every PromQL expression of the dashboard,
// checks that it selects only metrics jmxdp exports, each filtered by the
// job, cluster and instance variables, and that rates use Grafana's
// intervals.
func TestDashboardQueries(t *testing.T) {
	dash := loadDashboard(t)
	known := knownMetrics()
	qs := dashboardQueries(t, dash)
	if len(qs) < 20 {
		t.Fatalf("found only %d queries in %s", len(qs), dashboardPath)
	}
	rangeRe := regexp.MustCompile(`\[([^\]]*)\]`)
	used := map[string]bool{}
	for _, q := range qs {
		for _, m := range rangeRe.FindAllStringSubmatch(q.expr, -1) {
			if !slices.Contains(dashboardRanges, m[1]) {
				t.Errorf("%s: %s: range [%s]: use [$__rate_interval] (or [$__range] over the time range)", q.where, q.expr, m[1])
			}
		}
		expr := grafanaVars.Replace(q.expr)
		if i := strings.IndexByte(expr, '$'); i >= 0 {
			t.Errorf("%s: %s: unknown Grafana variable at %q", q.where, q.expr, expr[i:])
			continue
		}
		sels, err := selectors(expr)
		if err != nil {
			t.Errorf("%s: %s: %v", q.where, q.expr, err)
			continue
		}
		for _, n := range checkSelectors(t, q.where, q.expr, sels, known) {
			used[n] = true
		}
		for _, vs := range sels {
			for _, sv := range selectorVars {
				if slices.Contains(q.by, sv.label) && !hasMatcher(vs, sv.label, sv.value) {
					t.Errorf("%s: %s: %s is not filtered by %s=~\"$%s\"", q.where, q.expr, vs, sv.label, sv.label)
				}
			}
		}
	}
	var unused []string
	for n := range known {
		if !used[n] {
			unused = append(unused, n)
		}
	}
	slices.Sort(unused)
	t.Logf("%d queries; metrics not on the dashboard: %v", len(qs), unused)
}

// dashboardMustShow is what the data path counts that an operator must see
// on a panel of its own kind, not only in the catch-all "Frames by class":
// a metric, or a metric with a label value a matcher (= or =~) selects.
// Issue 15 (jumbo frames, IPv6 chains and fragments) and issue 19 (held
// and duplicated fragments, IPv4-embedding sources).
var dashboardMustShow = []struct{ metric, label, value string }{
	{"jmxdp_frames_total", "class", "frag_duplicate"},
	{"jmxdp_frames_total", "class", "frag_held"},
	{"jmxdp_frames_total", "class", "ipv6_ext_too_long"},
	{"jmxdp_untrusted_mapped_total", "", ""},
	{"jmxdp_reassembly_held_fragments_total", "", ""},
	{"jmxdp_xsk_multibuffer_frames_total", "", ""},
}

// TestDashboardShowsEveryNewClass: each of dashboardMustShow is selected by
// some panel query.
func TestDashboardShowsEveryNewClass(t *testing.T) {
	qs := dashboardQueries(t, loadDashboard(t))
	for _, want := range dashboardMustShow {
		found := false
		for _, q := range qs {
			sels, err := selectors(grafanaVars.Replace(q.expr))
			if err != nil {
				continue // TestDashboardQueries reports it
			}
			for _, vs := range sels {
				if vs.Name != want.metric {
					continue
				}
				if want.label == "" || slices.ContainsFunc(vs.LabelMatchers, func(m *labels.Matcher) bool {
					return m.Name == want.label && (m.Type == labels.MatchEqual || m.Type == labels.MatchRegexp) && m.Matches(want.value)
				}) {
					found = true
				}
			}
		}
		if !found {
			if want.label == "" {
				t.Errorf("no panel shows %s", want.metric)
			} else {
				t.Errorf("no panel shows %s{%s=%q}", want.metric, want.label, want.value)
			}
		}
	}
}

// TestDashboardStructure checks what makes the dashboard importable and
// usable on any Grafana with any Prometheus data source.
func TestDashboardStructure(t *testing.T) {
	dash := loadDashboard(t)
	if v, _ := dash["schemaVersion"].(float64); v < 36 {
		t.Errorf("schemaVersion %v: want 36 or later", dash["schemaVersion"])
	}
	for _, k := range []string{"uid", "title"} {
		if str(dash, k) == "" {
			t.Errorf("dashboard has no %s", k)
		}
	}
	if _, ok := dash["id"]; ok && dash["id"] != nil {
		t.Error("dashboard has an id: an exported dashboard must have none (or null) to import anywhere")
	}
	vars := map[string]map[string]any{}
	tmpl, _ := dash["templating"].(map[string]any)
	list, _ := tmpl["list"].([]any)
	for _, v := range list {
		vm, _ := v.(map[string]any)
		vars[str(vm, "name")] = vm
	}
	if ds := vars["datasource"]; ds == nil || str(ds, "type") != "datasource" || str(ds, "query") != "prometheus" {
		t.Errorf("no datasource variable of type datasource for prometheus: %v", ds)
	}
	// job, cluster and instance, in that order after the data source, each
	// from jmxdp_build_info and narrowed by those before it, as in the
	// node_exporter mixin. cluster is optional: All (.*) also matches
	// series without the label.
	order := []string{}
	for _, v := range list {
		order = append(order, str(v.(map[string]any), "name"))
	}
	if want := []string{"datasource", "job", "cluster", "instance"}; !slices.Equal(order, want) {
		t.Errorf("variables %v, want %v", order, want)
	}
	for name, want := range map[string]string{
		"job":      `label_values(jmxdp_build_info,job)`,
		"cluster":  `label_values(jmxdp_build_info{job=~"$job"},cluster)`,
		"instance": `label_values(jmxdp_build_info{job=~"$job",cluster=~"$cluster"},instance)`,
	} {
		v := vars[name]
		if v == nil || str(v, "type") != "query" {
			t.Errorf("no %s query variable: %v", name, v)
			continue
		}
		if q := strings.Join(strings.Fields(variableQuery(v)), ""); q != want {
			t.Errorf("%s variable queries %q, want %s", name, variableQuery(v), want)
		}
		if !usesDatasourceVar(v["datasource"]) {
			t.Errorf("%s variable's datasource is %v, want ${datasource}", name, v["datasource"])
		}
	}
	if c := vars["cluster"]; c != nil && (c["includeAll"] != true || str(c, "allValue") != ".*") {
		t.Errorf("cluster variable: includeAll %v, allValue %q; want true and .* (optional: All matches series without a cluster label)", c["includeAll"], str(c, "allValue"))
	}

	ids := map[float64]string{}
	panels, _ := dash["panels"].([]any)
	rows, leaves := 0, 0
	walkPanels(panels, func(p map[string]any) {
		title := str(p, "title")
		id, _ := p["id"].(float64)
		if prev, dup := ids[id]; dup || id == 0 {
			t.Errorf("panel %q: id %v missing or also used by %q", title, p["id"], prev)
		}
		ids[id] = title
		gp, _ := p["gridPos"].(map[string]any)
		x, _ := gp["x"].(float64)
		w, _ := gp["w"].(float64)
		h, _ := gp["h"].(float64)
		if w < 1 || h < 1 || x < 0 || x+w > 24 {
			t.Errorf("panel %q: gridPos %v outside the 24-column grid", title, gp)
		}
		if str(p, "type") == "row" {
			rows++
			return
		}
		leaves++
		if title == "" {
			t.Errorf("panel %v has no title", p["id"])
		}
		if !usesDatasourceVar(p["datasource"]) {
			t.Errorf("panel %q: datasource %v, want ${datasource}", title, p["datasource"])
		}
		targets, _ := p["targets"].([]any)
		if len(targets) == 0 {
			t.Errorf("panel %q has no query", title)
		}
		for _, tg := range targets {
			tm, _ := tg.(map[string]any)
			if ds, ok := tm["datasource"]; ok && !usesDatasourceVar(ds) {
				t.Errorf("panel %q target %s: datasource %v, want ${datasource}", title, str(tm, "refId"), ds)
			}
			if str(tm, "expr") == "" {
				t.Errorf("panel %q target %s has no expr", title, str(tm, "refId"))
			}
		}
	})
	if rows < 5 || leaves < 20 {
		t.Errorf("%d rows and %d panels: the dashboard looks truncated", rows, leaves)
	}
}

func usesDatasourceVar(ds any) bool {
	m, ok := ds.(map[string]any)
	if !ok {
		return false
	}
	uid := str(m, "uid")
	return (uid == "${datasource}" || uid == "$datasource") && str(m, "type") == "prometheus"
}

// ---------------------------------------------------------------- alerts

func loadRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.ParseFile(alertsPath, false, model.LegacyValidation, promql, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err) // names the file, line and rule
	}
	if groups == nil || len(groups.Groups) == 0 {
		t.Fatalf("%s: no rule groups", alertsPath)
	}
	return groups
}

// TestAlertRules checks every rule's expression against jmxdp's metrics,
// and that every alert carries what an operator needs: a severity, a
// summary, a description and a runbook_url whose anchor is a section of
// docs/operating.md.
func TestAlertRules(t *testing.T) {
	groups := loadRules(t)
	known := knownMetrics()
	anchors := markdownAnchors(t, operatingPath)
	severities := []string{"critical", "warning", "info"}
	seen := map[string]bool{}
	alerts := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			name := r.Alert
			if name == "" {
				name = r.Record
			}
			where := fmt.Sprintf("group %s rule %s", g.Name, name)
			sels, err := selectors(r.Expr)
			if err != nil {
				t.Errorf("%s: %s: %v", where, r.Expr, err)
			}
			checkSelectors(t, where, r.Expr, sels, known)
			// The generator's default selector is on every selector (up
			// without it would alert on every target Prometheus scrapes).
			for _, vs := range sels {
				if !hasMatcher(vs, "job", "jmxdp") {
					t.Errorf("%s: %s lacks the target selector job=\"jmxdp\" (write <<sel>> in alerts.yaml.tmpl)", where, vs)
				}
			}
			if r.Alert == "" {
				continue
			}
			alerts++
			if seen[name] {
				t.Errorf("%s: alert defined twice", where)
			}
			seen[name] = true
			if !strings.HasPrefix(name, "Jmxdp") {
				t.Errorf("%s: alert names start with Jmxdp", where)
			}
			if r.For <= 0 {
				t.Errorf("%s: no for: a single bad evaluation would page", where)
			}
			if !slices.Contains(severities, r.Labels["severity"]) {
				t.Errorf("%s: severity %q, want one of %v", where, r.Labels["severity"], severities)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", where, a)
				}
			}
			u, err := url.Parse(r.Annotations["runbook_url"])
			if err != nil {
				t.Errorf("%s: runbook_url: %v", where, err)
				continue
			}
			want := runbookURL + "#" + strings.ToLower(name)
			if u.String() != want {
				t.Errorf("%s: runbook_url %s, want %s", where, u, want)
			}
			if !anchors[u.Fragment] {
				t.Errorf("%s: runbook_url anchor #%s is not a heading of %s (add a section \"### %s\")", where, u.Fragment, operatingPath, name)
			}
		}
	}
	if alerts < 10 {
		t.Errorf("%d alerts: the rule file looks truncated", alerts)
	}

	// Every alert runbook section in operating.md belongs to an alert that
	// exists: none is left behind when an alert is renamed or removed.
	for _, h := range markdownHeadings(t, operatingPath) {
		if h.level == 3 && strings.HasPrefix(h.text, "Jmxdp") && !seen[h.text] {
			t.Errorf("%s: runbook section %q has no alert in %s", operatingPath, h.text, alertsPath)
		}
	}
}

// TestPromtool runs Prometheus's own checks on the rules and the example
// configuration (Debian: apt-get install prometheus).
func TestPromtool(t *testing.T) {
	promtool := testenv.Tool(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", alertsPath},
		// rule_files in the config are relative to it: this checks the rules
		// again, as Prometheus would load them.
		{"check", "config", promCfgPath},
		// Every alert against series it must and must not fire on
		// (TestAlertTestsCoverEveryAlert checks that each has both).
		{"test", "rules", alertTestPath},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestAlertTestsCoverEveryAlert checks that alerts_test.yaml has, for
// every alert of alerts.yaml, a case where it fires and one where it does
// not, and no case for an alert that does not exist.
func TestAlertTestsCoverEveryAlert(t *testing.T) {
	raw, err := os.ReadFile(alertTestPath)
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			Name       string `yaml:"name"`
			AlertTests []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(raw, &tests); err != nil {
		t.Fatalf("%s: %v", alertTestPath, err)
	}
	if !slices.Contains(tests.RuleFiles, filepath.Base(alertsPath)) {
		t.Errorf("%s: rule_files %v does not load %s", alertTestPath, tests.RuleFiles, filepath.Base(alertsPath))
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tg := range tests.Tests {
		for _, at := range tg.AlertTests {
			if len(at.ExpAlerts) > 0 {
				fires[at.Alertname] = true
			} else {
				quiet[at.Alertname] = true
			}
		}
	}
	alerts := map[string]bool{}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts[r.Alert] = true
			if !fires[r.Alert] {
				t.Errorf("%s: no case where %s fires", alertTestPath, r.Alert)
			}
			if !quiet[r.Alert] {
				t.Errorf("%s: no case where %s does not fire", alertTestPath, r.Alert)
			}
		}
	}
	for name := range fires {
		if !alerts[name] {
			t.Errorf("%s: a case for %s, which is not an alert of %s", alertTestPath, name, alertsPath)
		}
	}
	for name := range quiet {
		if !alerts[name] {
			t.Errorf("%s: a case for %s, which is not an alert of %s", alertTestPath, name, alertsPath)
		}
	}
}

// TestPrometheusExampleConfig checks that the example configuration loads
// the rule file and scrapes jmxdp under the job name the alerts select.
func TestPrometheusExampleConfig(t *testing.T) {
	raw, err := os.ReadFile(promCfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("%s: %v", promCfgPath, err)
	}
	loads := false
	for _, f := range cfg.RuleFiles {
		p := filepath.Join(filepath.Dir(promCfgPath), f)
		if _, err := os.Stat(p); err != nil {
			t.Errorf("rule_files: %v", err)
		}
		if filepath.Clean(p) == filepath.Clean(alertsPath) {
			loads = true
		}
	}
	if !loads {
		t.Errorf("rule_files %v do not load %s", cfg.RuleFiles, alertsPath)
	}
	found := false
	for _, sc := range cfg.ScrapeConfigs {
		if sc.JobName != "jmxdp" {
			continue
		}
		found = true
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("job jmxdp: metrics_path %s", sc.MetricsPath)
		}
		for _, s := range sc.StaticConfigs {
			for _, target := range s.Targets {
				if _, port, err := net.SplitHostPort(target); err != nil || port != metricsPort {
					t.Errorf("job jmxdp: target %q is not host:%s", target, metricsPort)
				}
			}
		}
	}
	if !found {
		t.Error(`no scrape job "jmxdp": the alerts select up{job="jmxdp"}`)
	}
}

// ---------------------------------------------------------------- Kubernetes

type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Template struct {
			Metadata struct {
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	HostNetwork                   bool `yaml:"hostNetwork"`
	TerminationGracePeriodSeconds int  `yaml:"terminationGracePeriodSeconds"`
	Containers                    []struct {
		Name  string   `yaml:"name"`
		Image string   `yaml:"image"`
		Args  []string `yaml:"args"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		ReadinessProbe  probe `yaml:"readinessProbe"`
		LivenessProbe   probe `yaml:"livenessProbe"`
		SecurityContext struct {
			Privileged   bool `yaml:"privileged"`
			Capabilities struct {
				Add  []string `yaml:"add"`
				Drop []string `yaml:"drop"`
			} `yaml:"capabilities"`
		} `yaml:"securityContext"`
		VolumeMounts []struct {
			Name             string `yaml:"name"`
			MountPath        string `yaml:"mountPath"`
			MountPropagation string `yaml:"mountPropagation"`
		} `yaml:"volumeMounts"`
	} `yaml:"containers"`
	Volumes []struct {
		Name     string `yaml:"name"`
		HostPath *struct {
			Path string `yaml:"path"`
		} `yaml:"hostPath"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
	} `yaml:"volumes"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

// TestKubernetesDaemonSet parses every document of the manifest and checks
// what jmxdp needs from its pod: the host's network and bpffs, an output
// directory on the node, the capabilities, the probes on the metrics port,
// and a config that jmxdp itself accepts.
func TestKubernetesDaemonSet(t *testing.T) {
	f, err := os.Open(daemonSetPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	objs := map[string]k8sObject{}
	dec := yaml.NewDecoder(f)
	for {
		var o k8sObject
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", daemonSetPath, err)
		}
		if o.Kind == "" || o.APIVersion == "" || o.Metadata.Name == "" {
			t.Errorf("%s: a document without kind, apiVersion or name: %+v", daemonSetPath, o)
		}
		objs[o.Kind] = o
	}
	ds, ok := objs["DaemonSet"]
	if !ok {
		t.Fatalf("%s: no DaemonSet", daemonSetPath)
	}
	cm, ok := objs["ConfigMap"]
	if !ok {
		t.Fatalf("%s: no ConfigMap", daemonSetPath)
	}

	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork {
		t.Error("hostNetwork is false: XDP and AF_XDP need the node's NIC")
	}
	if limit := stopLimit(t); time.Duration(pod.TerminationGracePeriodSeconds)*time.Second != limit {
		t.Errorf("terminationGracePeriodSeconds %d: docs/operating.md's stop limit is %v", pod.TerminationGracePeriodSeconds, limit)
	}
	ann := ds.Spec.Template.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != metricsPort {
		t.Errorf("pod annotations %v: want prometheus.io/scrape \"true\" and prometheus.io/port %q", ann, metricsPort)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	portNames := map[string]bool{}
	hasPort := false
	for _, p := range c.Ports {
		if fmt.Sprint(p.ContainerPort) == metricsPort {
			hasPort = true
			portNames[p.Name] = true
		}
	}
	if !hasPort {
		t.Errorf("no containerPort %s", metricsPort)
	}
	for _, pr := range []struct {
		name, path string
		p          probe
	}{{"readinessProbe", "/readyz", c.ReadinessProbe}, {"livenessProbe", "/healthz", c.LivenessProbe}} {
		port := fmt.Sprint(pr.p.HTTPGet.Port)
		if pr.p.HTTPGet.Path != pr.path || (port != metricsPort && !portNames[port]) {
			t.Errorf("%s: GET %s on %s, want %s on %s", pr.name, pr.p.HTTPGet.Path, port, pr.path, metricsPort)
		}
	}
	sc := c.SecurityContext
	var added []string
	for _, cp := range sc.Capabilities.Add {
		added = append(added, strings.TrimPrefix(cp, "CAP_"))
	}
	slices.Sort(added)
	if !slices.Equal(added, requiredCaps) {
		t.Errorf("capabilities added %v, want exactly %v", added, requiredCaps)
	}
	if !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("capabilities dropped %v: drop ALL first", sc.Capabilities.Drop)
	}

	hostPaths := map[string]string{}
	configMaps := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
		if v.ConfigMap != nil {
			configMaps[v.Name] = v.ConfigMap.Name
		}
	}
	mounts := map[string]string{} // mount path -> volume
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
		if hostPaths[m.Name] == "/sys/fs/bpf" {
			switch m.MountPropagation {
			case "HostToContainer":
			case "Bidirectional":
				if !sc.Privileged {
					t.Error("bpffs mount: Bidirectional propagation needs a privileged container")
				}
			default:
				t.Errorf("bpffs mount propagation %q: want HostToContainer (or Bidirectional)", m.MountPropagation)
			}
		}
	}
	if hostPaths[mounts["/sys/fs/bpf"]] != "/sys/fs/bpf" {
		t.Error("the node's /sys/fs/bpf is not mounted at /sys/fs/bpf: pinned maps would not outlive the pod")
	}

	// The ConfigMap's config is one jmxdp accepts, and agrees with the pod.
	var cfgFile, cfgDir string
	for dir, vol := range mounts {
		if configMaps[vol] == cm.Metadata.Name {
			cfgDir = dir
		}
	}
	for i, a := range c.Args {
		if a == "--config" && i+1 < len(c.Args) {
			cfgFile = c.Args[i+1]
		}
	}
	if cfgDir == "" || filepath.Dir(cfgFile) != cfgDir {
		t.Fatalf("args %v: --config %q is not in the ConfigMap's mount %q", c.Args, cfgFile, cfgDir)
	}
	data, ok := cm.Data[filepath.Base(cfgFile)]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s", cm.Metadata.Name, filepath.Base(cfgFile))
	}
	cfg, err := config.Parse([]byte(data), "daemonset.yaml:"+filepath.Base(cfgFile))
	if err != nil {
		t.Fatalf("the ConfigMap's config: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the ConfigMap's config: %v", err)
	}
	if _, port, err := net.SplitHostPort(cfg.Metrics.Addr); err != nil || port != metricsPort {
		t.Errorf("metrics.addr %q: the probes and Prometheus use port %s", cfg.Metrics.Addr, metricsPort)
	} else if host, _, _ := net.SplitHostPort(cfg.Metrics.Addr); host == "127.0.0.1" || host == "::1" || host == "localhost" {
		t.Errorf("metrics.addr %q: the kubelet's probes cannot reach a loopback address", cfg.Metrics.Addr)
	}
	onHost := func(what, path string) {
		for dir, vol := range mounts {
			if _, isHost := hostPaths[vol]; isHost && (path == dir || strings.HasPrefix(path, dir+"/")) {
				return
			}
		}
		t.Errorf("%s %s is not on a hostPath volume: it would not outlive the pod", what, path)
	}
	onHost("output.dir", cfg.Output.Dir)
	onHost("capture.pin_dir", cfg.Capture.PinDir)
}

// ---------------------------------------------------------------- systemd

// unitFile is a systemd unit: section -> key -> values, in order.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not key=value in a section: %q", path, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// words is every space-separated word of a key's values.
func (u unitFile) words(section, key string) []string {
	var out []string
	for _, v := range u[section][key] {
		out = append(out, strings.Fields(v)...)
	}
	return out
}

// TestSystemdUnit checks the unit's privileges and sandbox, and has
// systemd-analyze verify it where systemd is installed.
func TestSystemdUnit(t *testing.T) {
	u := parseUnit(t, unitPath)
	svc := u["Service"]
	if svc == nil {
		t.Fatal("no [Service] section")
	}
	start := u.words("Service", "ExecStart")
	if len(start) < 2 || start[0] != "/usr/local/bin/jmxdp" || start[1] != "run" || !slices.Contains(start, "--config") {
		t.Errorf("ExecStart %v, want /usr/local/bin/jmxdp run --config FILE", start)
	}
	var caps []string
	for _, c := range u.words("Service", "CapabilityBoundingSet") {
		caps = append(caps, strings.TrimPrefix(c, "CAP_"))
	}
	slices.Sort(caps)
	if !slices.Equal(caps, requiredCaps) {
		t.Errorf("CapabilityBoundingSet %v, want exactly %v", caps, requiredCaps)
	}
	for key, want := range map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"StateDirectory": "jmxdp", "StateDirectoryMode": "0700", "UMask": "0077", "LimitMEMLOCK": "infinity",
		"KillSignal": "SIGTERM", "Restart": "on-failure",
	} {
		if got := svc[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%v, want %s", key, got, want)
		}
	}
	rw := u.words("Service", "ReadWritePaths")
	for _, p := range []string{"/var/lib/jmxdp", "/sys/fs/bpf"} {
		if !slices.Contains(rw, p) {
			t.Errorf("ReadWritePaths %v lacks %s", rw, p)
		}
	}
	af := u.words("Service", "RestrictAddressFamilies")
	for _, fam := range []string{"AF_XDP", "AF_NETLINK", "AF_INET", "AF_INET6", "AF_UNIX"} {
		if !slices.Contains(af, fam) {
			t.Errorf("RestrictAddressFamilies %v lacks %s", af, fam)
		}
	}
	if got, limit := svc["TimeoutStopSec"], stopLimit(t); len(got) != 1 || got[0] != fmt.Sprintf("%ds", int(limit.Seconds())) {
		t.Errorf("TimeoutStopSec=%v: docs/operating.md's stop limit is %v", got, limit)
	}

	// systemd-analyze (Debian's systemd package; .ci/run installs it)
	// checks what the parser above does not.
	analyze := testenv.Tool(t, "systemd-analyze")
	// verify wants ExecStart's binary to exist: point it at this test's.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tmp := filepath.Join(dir, "jmxdp.service")
	if err := os.WriteFile(tmp, bytes.ReplaceAll(raw, []byte("/usr/local/bin/jmxdp"), []byte(self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", tmp).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// ---------------------------------------------------------------- docs

type heading struct {
	level int
	text  string
}

// markdownHeadings returns the ATX headings of a Markdown file, outside
// code blocks.
func markdownHeadings(t *testing.T, path string) []heading {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []heading
	fence := false
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "```") {
			fence = !fence
			continue
		}
		if fence || !strings.HasPrefix(line, "#") {
			continue
		}
		level := len(line) - len(strings.TrimLeft(line, "#"))
		if level > 6 || len(line) == level || line[level] != ' ' {
			continue
		}
		out = append(out, heading{level, strings.TrimSpace(strings.TrimRight(strings.TrimSpace(line[level:]), "#"))})
	}
	return out
}

// slug is GitHub's anchor for a heading: lower case, punctuation other
// than - and _ removed, spaces as -.
func slug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

var htmlAnchorRe = regexp.MustCompile(`<a\s+(?:id|name)="([^"]+)"`)

// markdownAnchors is every anchor of a Markdown file as GitHub renders it:
// heading slugs (-1, -2 for repeats) and explicit <a id> / <a name>.
func markdownAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	anchors := map[string]bool{}
	count := map[string]int{}
	for _, h := range markdownHeadings(t, path) {
		s := slug(h.text)
		if n := count[s]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			anchors[s] = true
		}
		count[s]++
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range htmlAnchorRe.FindAllStringSubmatch(string(raw), -1) {
		anchors[m[1]] = true
	}
	return anchors
}

var mdLinkRe = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestOperatingLinks checks that the relative links of docs/operating.md
// lead to files that exist and to anchors that exist in them.
func TestOperatingLinks(t *testing.T) {
	raw, err := os.ReadFile(operatingPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mdLinkRe.FindAllStringSubmatch(string(raw), -1) {
		link := m[1]
		if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
			continue
		}
		file, frag, _ := strings.Cut(link, "#")
		target := operatingPath
		if file != "" {
			target = filepath.Join(filepath.Dir(operatingPath), file)
			if _, err := os.Stat(target); err != nil {
				t.Errorf("link %s: %v", link, err)
				continue
			}
		}
		if frag != "" && strings.HasSuffix(target, ".md") && !markdownAnchors(t, target)[frag] {
			t.Errorf("link %s: no anchor #%s in %s", link, frag, target)
		}
	}
}

// stopLimit checks the stop-time arithmetic in docs/operating.md ("Stop and
// start time") against the defaults it quotes, and returns its stop limit,
// which TimeoutStopSec and terminationGracePeriodSeconds must be.
func stopLimit(t *testing.T) time.Duration {
	t.Helper()
	raw, err := os.ReadFile(operatingPath)
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(raw), "\n### Stop and start time\n")
	if !ok {
		t.Fatal("docs/operating.md: no \"Stop and start time\" section")
	}
	if i := strings.Index(sec, "\n#"); i >= 0 {
		sec = sec[:i]
	}
	// The lines "name = ... = value" of its arithmetic: the value after the
	// last "=".
	vals := map[string]string{}
	for _, line := range strings.Split(sec, "\n") {
		name, rest, ok := strings.Cut(line, " = ")
		if !ok || strings.HasPrefix(line, " ") {
			continue
		}
		parts := strings.Split(rest, "=")
		vals[strings.TrimSpace(name)] = strings.TrimSpace(parts[len(parts)-1])
	}
	num := func(name, unit string) float64 {
		t.Helper()
		v, ok := vals[name]
		if !ok {
			t.Fatalf("docs/operating.md: no %q line in the stop arithmetic (%v)", name, vals)
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(v, unit)), 64)
		if err != nil {
			t.Fatalf("docs/operating.md: %s = %q: %v", name, v, err)
		}
		return f
	}
	def := config.Default()
	streams := num("streams", "")
	if want := float64(def.Capture.MaxStreamMemory / writer.StreamBytes); streams != want {
		t.Errorf("docs: %v streams at stop, the default max_stream_memory / StreamBytes is %v", streams, want)
	}
	if !strings.Contains(sec, fmt.Sprintf("= %d / %d =", def.Capture.MaxStreamMemory, writer.StreamBytes)) {
		t.Errorf("docs: the streams line does not quote max_stream_memory %d / StreamBytes %d", def.Capture.MaxStreamMemory, writer.StreamBytes)
	}
	// The time a file: "close = streams × N µs".
	_, perFile, _ := strings.Cut(sec, "streams × ")
	us, err := strconv.ParseFloat(strings.Fields(perFile)[0], 64)
	if err != nil {
		t.Fatalf("docs: close line: %v", err)
	}
	closeS := num("close", "s")
	if want := math.Round(streams * us / 1e6); closeS != want {
		t.Errorf("docs: close %v s, %v streams × %v µs is %v s", closeS, streams, us, want)
	}
	handoff := num("hand-off wait", "s")
	if want := def.Output.OnCompleteTimeout.Seconds(); handoff != want {
		t.Errorf("docs: hand-off wait %v s, output.on_complete_timeout's default is %v s", handoff, want)
	}
	rest := num("rest", "s")
	if bound := num("stop bound", "s"); bound != closeS+handoff+rest {
		t.Errorf("docs: stop bound %v s, the sum is %v s", bound, closeS+handoff+rest)
	}
	limit := num("stop limit", "s")
	if want := math.Ceil((2*closeS+handoff+rest)/30) * 30; limit != want {
		t.Errorf("docs: stop limit %v s, 2 × close + hand-off wait + rest rounded up to 30 s is %v s", limit, want)
	}
	return time.Duration(limit) * time.Second
}
