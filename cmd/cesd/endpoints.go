package main

import (
	"context"
	"fmt"
	"net/url"
	"slices"

	"github.com/cesd/cesd/ces"

	"github.com/cesd/cesd/ces/endpoint"
)

// cmdEndpoints manages CES notification endpoints by hand: list, register
// URL, unregister URL.
func (c *cli) cmdEndpoints(ctx context.Context, args []string) int {
	fs := c.flagSet("endpoints", "list | register URL | unregister URL ")
	cfg, pos, err := c.loadConfig(fs, args, needs{ces: true})
	if err != nil {
		return c.fail(err)
	}
	verb, want := "", 0
	if len(pos) > 0 {
		verb = pos[0]
	}
	switch verb {
	case "list":
		want = 1
	case "register", "unregister":
		want = 2
	default:
		return c.fail(&configError{Key: "arguments", Msg: "want one of: list, register URL, unregister URL"})
	}
	if len(pos) != want {
		return c.fail(&configError{Key: "arguments", Msg: fmt.Sprintf("%s takes %d argument(s)", verb, want-1)})
	}
	if want == 2 {
		if u, err := url.Parse(pos[1]); err != nil || !slices.Contains([]string{"http", "https", "mailto"}, u.Scheme) {
			return c.fail(&configError{Key: "arguments", Msg: fmt.Sprintf("%q: CES accepts http, https and mailto endpoints", pos[1])})
		}
	}
	cc, err := cesConfig(cfg, nil)
	if err != nil {
		return c.fail(err)
	}
	client, err := ces.New(cc)
	if err != nil {
		return c.fail(err)
	}
	switch verb {
	case "list":
		eps, err := client.ListEndpoints(ctx)
		if err != nil {
			return c.fail(err)
		}
		for _, e := range eps {
			fmt.Fprintln(c.stdout, endpoint.Redacted(e))
		}
		if cfg.CallbackURL != "" && !slices.Contains(eps, cfg.CallbackURL) {
			fmt.Fprintf(c.stderr, "note: callback_url %s is not registered\n", endpoint.Redacted(cfg.CallbackURL))
		}
	case "register":
		if err := client.RegisterEndpoint(ctx, pos[1]); err != nil {
			return c.fail(err)
		}
		fmt.Fprintf(c.stdout, "registered %s\n", endpoint.Redacted(pos[1]))
	case "unregister":
		if err := client.UnregisterEndpoint(ctx, pos[1]); err != nil {
			return c.fail(err)
		}
		fmt.Fprintf(c.stdout, "unregistered %s\n", endpoint.Redacted(pos[1]))
	}
	return exitOK
}
