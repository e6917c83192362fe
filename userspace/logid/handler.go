package logid

import (
	"context"
	"fmt"
	"log/slog"
)

// Handler wraps h so that every record's message and attribute values go
// through n.Redact: a stream path or an error text carrying one, logged
// by any package, reaches the log with the stream's name instead of its
// ids. With a nil Namer (ids shown) it returns h itself.
func Handler(n *Namer, h slog.Handler) slog.Handler {
	if n == nil {
		return h
	}
	return &handler{n: n, h: h}
}

type handler struct {
	n *Namer
	h slog.Handler
}

func (r *handler) Enabled(ctx context.Context, l slog.Level) bool { return r.h.Enabled(ctx, l) }

func (r *handler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, r.n.Redact(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(r.attr(a))
		return true
	})
	return r.h.Handle(ctx, out)
}

func (r *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = r.attr(a)
	}
	return &handler{n: r.n, h: r.h.WithAttrs(red)}
}

func (r *handler) WithGroup(name string) slog.Handler {
	return &handler{n: r.n, h: r.h.WithGroup(name)}
}

// attr redacts a's value: strings, errors and anything printed with %v;
// groups member by member. Numbers and times carry no path.
func (r *handler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, r.n.Redact(v.String()))
	case slog.KindGroup:
		g := v.Group()
		red := make([]any, len(g))
		for i, m := range g {
			red[i] = r.attr(m)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		return slog.String(a.Key, r.n.Redact(fmt.Sprint(v.Any())))
	}
	return a
}
