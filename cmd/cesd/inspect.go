package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/cesd/cesd/wallet"
	"github.com/cesd/cesd/wallet/certinfo"
)

// inspectReport is what `cesd inspect` shows, and its --json form. It holds
// no passwords by construction: schemas are names only.
type inspectReport struct {
	WalletDir            string             `json:"walletDir"`
	MountedSecret        bool               `json:"mountedSecret,omitempty"` // a fleet-mode Secret as the kubelet mounts it
	Generation           int64              `json:"generation"`
	WalletName           string             `json:"walletName"`
	CertificateStartDate time.Time          `json:"certificateStartDate"`
	CertificateEndDate   time.Time          `json:"certificateEndDate"`
	DaysLeft             int                `json:"daysLeft"`
	LastRotationDate     time.Time          `json:"lastRotationDate"`
	FetchedAt            time.Time          `json:"fetchedAt"`
	Files                []wallet.FileCheck `json:"files"`
	Certificates         []inspectCert      `json:"certificates"`
	CertificateErrors    map[string]string  `json:"certificateErrors,omitempty"`
	CertificatesSkipped  map[string]string  `json:"certificatesSkipped,omitempty"` // file -> why not read (e.g. needs wallet_password)
	Schemas              []string           `json:"schemas"`
	Problems             []string           `json:"problems"`
}

type inspectCert struct {
	certinfo.Cert
	DaysLeft int `json:"daysLeft"`
}

// cmdInspect reads a wallet folder (DIR, else wallet_dir) and reports on it. It exits 1 when the
// files do not match the manifest or a certificate has expired, so it can
// gate a deployment or a cron check.
func (c *cli) cmdInspect(_ context.Context, args []string) int {
	fs := c.flagSet("inspect", "[DIR] ")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	// wallet_dir is needed only without DIR: a fleet config (Secret-only
	// mode, an empty wallet_dir) still inspects a folder it is given.
	cfg, pos, err := c.loadConfig(fs, args, needs{})
	if err != nil {
		return c.fail(err)
	}
	// A folder given as an argument wins over wallet_dir, as ls users expect.
	switch len(pos) {
	case 0:
		if cfg.WalletDir == "" {
			return c.fail(&configError{Key: "wallet_dir", Msg: "required: name the folder to inspect, or set wallet_dir"})
		}
		if cfg.WalletDir, err = filepath.Abs(cfg.WalletDir); err != nil {
			return c.fail(&configError{Key: "wallet_dir", Msg: err.Error()})
		}
	case 1:
		if cfg.WalletDir, err = filepath.Abs(pos[0]); err != nil {
			return c.fail(&configError{Key: "arguments", Msg: err.Error()})
		}
	default:
		return c.fail(&configError{Key: "arguments", Msg: fmt.Sprintf("inspect takes at most one folder, got %q", pos)})
	}
	r, err := inspect(cfg.WalletDir, cfg.WalletPassword, time.Now())
	if err != nil {
		return c.fail(err)
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return c.fail(err)
		}
	} else {
		printReport(c.stdout, r)
	}
	if len(r.Problems) > 0 {
		return exitFail
	}
	return exitOK
}

func inspect(dir, password string, now time.Time) (*inspectReport, error) {
	c, err := wallet.Inspect(dir)
	if err != nil {
		return nil, err
	}
	m := c.Manifest
	r := &inspectReport{
		WalletDir:            dir,
		MountedSecret:        c.Mounted,
		Generation:           m.Generation,
		WalletName:           m.WalletName,
		CertificateStartDate: m.CertificateStartDate,
		CertificateEndDate:   m.CertificateEndDate,
		DaysLeft:             daysLeft(m.CertificateEndDate, now),
		LastRotationDate:     m.LastRotationDate,
		FetchedAt:            m.FetchedAt,
		Files:                c.Files,
		Schemas:              m.Schemas,
		Problems:             append([]string{}, c.Problems...),
	}
	if !m.CertificateEndDate.IsZero() && m.CertificateEndDate.Before(now) {
		r.Problems = append(r.Problems, "the wallet's certificateEndDate has passed")
	}
	cr := certinfo.Read(c.Dir, password)
	for _, ct := range cr.Certs {
		r.Certificates = append(r.Certificates, inspectCert{Cert: ct, DaysLeft: daysLeft(ct.NotAfter, now)})
		if ct.NotAfter.Before(now) {
			r.Problems = append(r.Problems, fmt.Sprintf("certificate %s/%s (%s) expired %s", shown(ct.File), shown(ct.Alias), shown(ct.Subject), ct.NotAfter.Format(time.RFC3339)))
		}
	}
	if len(cr.Skipped) > 0 {
		r.CertificatesSkipped = cr.Skipped
	}
	for f, e := range cr.Errors {
		if r.CertificateErrors == nil {
			r.CertificateErrors = map[string]string{}
		}
		r.CertificateErrors[f] = e.Error()
	}
	return r, nil
}

// daysLeft counts whole days, truncated toward zero; whether something has
// expired is decided on the timestamps, not on this number.
func daysLeft(t, now time.Time) int { return int(t.Sub(now).Hours() / 24) }

func printReport(w io.Writer, r *inspectReport) {
	day := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04 MST")
	}
	fmt.Fprintf(w, "wallet folder   %s\n", shown(r.WalletDir))
	if r.MountedSecret {
		fmt.Fprintf(w, "                a mounted Kubernetes Secret (fleet mode); schema files are schemas.<NAME>\n")
	}
	fmt.Fprintf(w, "generation      %d\n", r.Generation)
	fmt.Fprintf(w, "wallet name     %s\n", shown(r.WalletName))
	if r.CertificateEndDate.IsZero() {
		fmt.Fprintf(w, "valid           not stated (a wallet_only fetch gets no dates from CES)\n")
	} else {
		fmt.Fprintf(w, "valid           %s  to  %s  (%d days left)\n", day(r.CertificateStartDate), day(r.CertificateEndDate), r.DaysLeft)
	}
	fmt.Fprintf(w, "last rotation   %s\n", day(r.LastRotationDate))
	fmt.Fprintf(w, "fetched at      %s\n", day(r.FetchedAt))
	where := "schemas/"
	if r.MountedSecret {
		where = "schemas.<NAME>"
	}
	fmt.Fprintf(w, "schemas         %v  (passwords in credentials.json and %s, not shown)\n\n", shownAll(r.Schemas), where)

	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tSIZE\tSHA256\tMANIFEST")
	for _, f := range r.Files {
		state := "ok"
		if !f.Matches {
			state = "MISMATCH"
		}
		if f.Derived {
			state += " (derived)"
		}
		if f.SentAs != "" {
			state += " (sent as " + shown(f.SentAs) + ")"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", shown(f.Name), f.Size, f.SHA256[:16]+"…", state)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CERTIFICATE FILE\tALIAS\tSUBJECT\tISSUER\tNOT AFTER\tDAYS LEFT")
	for _, c := range r.Certificates {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", shown(c.File), shown(c.Alias), shown(c.Subject), shown(c.Issuer), day(c.NotAfter), c.DaysLeft)
	}
	tw.Flush()
	for f, e := range r.CertificateErrors {
		fmt.Fprintf(w, "cannot read certificates in %s: %s\n", shown(f), shown(e))
	}
	for f, why := range r.CertificatesSkipped {
		fmt.Fprintf(w, "certificates in %s not read: %s\n", f, why)
	}
	if len(r.Problems) == 0 {
		fmt.Fprintln(w, "\nOK: files match the manifest and no certificate has expired.")
		return
	}
	fmt.Fprintln(w, "\nPROBLEMS:")
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  - %s\n", shown(p))
	}
}
