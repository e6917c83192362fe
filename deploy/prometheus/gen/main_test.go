package main

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/jmxdp/jmxdp/userspace/testenv"
)

const (
	tmplPath  = "../alerts.yaml.tmpl"
	rulesPath = "../alerts.yaml"
)

func readTemplate(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(tmplPath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCommittedRules: alerts.yaml is the template's output for the default
// selector, so an edit of either alone fails here.
func TestCommittedRules(t *testing.T) {
	want, err := Render(readTemplate(t), DefaultSelector)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not the output of %s for %s: edit the template and run `make alerts`", rulesPath, tmplPath, DefaultSelector)
	}
}

// TestSelector renders the rules for another selector: every series
// selector of every rule, and every query of an annotation, carries all of
// its matchers, no job="jmxdp" is left, and promtool accepts the result.
func TestSelector(t *testing.T) {
	for _, sel := range []string{`job="capture",cluster="eu-1"`, ` {job=~"jmxdp-.*", env!="lab"} `} {
		out, err := Render(readTemplate(t), sel)
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		clean, _ := checkSelector(sel)
		wantMs, err := promql.ParseMetricSelector("{" + clean + "}")
		if err != nil {
			t.Fatal(err)
		}
		if _, rules, _ := bytes.Cut(out, []byte("\ngroups:")); bytes.Contains(rules, []byte(`job="jmxdp"`)) {
			t.Errorf("%s: job=\"jmxdp\" left in the rules", sel)
		}
		groups, errs := rulefmt.Parse(out, false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler))
		if len(errs) > 0 {
			t.Fatalf("%s: %v", sel, errs)
		}
		n := 0
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				exprs := []string{r.Expr}
				// Queries inside annotations: {{ query (printf `EXPR` ...) }}.
				for _, a := range r.Annotations {
					for _, part := range strings.Split(a, "printf `")[1:] {
						q, _, _ := strings.Cut(part, "`")
						exprs = append(exprs, strings.ReplaceAll(q, "%q", `"x"`))
					}
				}
				for _, e := range exprs {
					node, err := promql.ParseExpr(e)
					if err != nil {
						t.Errorf("%s: %s: %v", r.Alert, e, err)
						continue
					}
					parser.Inspect(node, func(nd parser.Node, _ []parser.Node) error {
						vs, ok := nd.(*parser.VectorSelector)
						if !ok {
							return nil
						}
						n++
						for _, w := range wantMs {
							if !hasMatcher(vs.LabelMatchers, w) {
								t.Errorf("%s: %s lacks %s", r.Alert, vs, w)
							}
						}
						return nil
					})
				}
			}
		}
		if n < 20 {
			t.Errorf("%s: only %d selectors checked", sel, n)
		}
		if promtool, err := exec.LookPath("promtool"); err == nil {
			f := filepath.Join(t.TempDir(), "alerts.yaml")
			if err := os.WriteFile(f, out, 0o600); err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command(promtool, "check", "rules", f).CombinedOutput(); err != nil {
				t.Errorf("%s: promtool check rules: %v\n%s", sel, err, b)
			}
		} else {
			testenv.SkipOrFail(t, "promtool not installed (apt-get install prometheus)")
		}
	}
}

func hasMatcher(ms []*labels.Matcher, w *labels.Matcher) bool {
	for _, m := range ms {
		if m.Name == w.Name && m.Type == w.Type && m.Value == w.Value {
			return true
		}
	}
	return false
}

// TestBadSelector: a selector that would not pick jmxdp's targets, or
// does not parse, is refused with the reason.
func TestBadSelector(t *testing.T) {
	for sel, want := range map[string]string{
		"":                           "selector is empty",
		"  {} ":                      "selector is empty",
		`job=jmxdp`:                  `selector "job=jmxdp"`,
		`job="a"}`:                   `selector`,
		`__name__="up"`:              "selects by metric name",
		`job="a",cluster="b`:         `selector`,
		`job="a"} or vector(1) or {`: `selector`,
	} {
		_, err := Render(readTemplate(t), sel)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("selector %q: error %v, want one containing %q", sel, err, want)
		}
	}
}

// TestRun writes the file that `make alerts` asks for.
func TestRun(t *testing.T) {
	out := filepath.Join(t.TempDir(), "alerts.yaml")
	if err := run(tmplPath, `job="x"`, out, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`up{job="x"} == 0`)) || !bytes.HasPrefix(b, []byte("# Code generated")) {
		t.Errorf("output:\n%s", b[:min(len(b), 400)])
	}
	var stdout bytes.Buffer
	if err := run(tmplPath, DefaultSelector, "-", &stdout); err != nil {
		t.Fatal(err)
	}
	committed, _ := os.ReadFile(rulesPath)
	if !bytes.Equal(stdout.Bytes(), committed) {
		t.Error("-o - does not print the committed rules for the default selector")
	}
	if err := run("nonesuch.tmpl", DefaultSelector, "-", &stdout); err == nil {
		t.Error("a missing template is no error")
	}
}
