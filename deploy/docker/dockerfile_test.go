// Package docker_test checks the container image. The field test
// (container_test.go, build tag field) runs an image built offline from the
// Dockerfile's final stage under podman and runc; this file reads that
// stage, so the test image cannot drift from the Dockerfile.
package docker_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// distroless is the base the final stage must use, and what the offline
// test image copies of it: a passwd and group with nonroot (65532), CA
// certificates, no shell, and this image config.
const distroless = "gcr.io/distroless/static-debian12:nonroot"

var distrolessEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
}

// finalStage is what the Dockerfile's last stage says about the image.
type finalStage struct {
	Binary      string   // where COPY --from=build puts cesd
	User        string   // USER
	Expose      []string // EXPOSE
	Entrypoint  []string // ENTRYPOINT, exec form
	Cmd         []string // CMD, exec form
	Health      []string // HEALTHCHECK CMD, exec form
	HealthFlags []string // HEALTHCHECK options as podman run flags
}

// readFinalStage parses the final stage and refuses any instruction the
// offline test image does not mirror: adding one to the Dockerfile fails
// CI until the field test copies it too.
func readFinalStage(path string) (*finalStage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	last := -1
	for i, l := range lines {
		if strings.HasPrefix(strings.ToUpper(l), "FROM ") {
			last = i
		}
	}
	if last < 0 {
		return nil, fmt.Errorf("no FROM")
	}
	s := &finalStage{}
	for _, l := range lines[last:] {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			if rest != distroless {
				return nil, fmt.Errorf("final stage FROM %s: the test image mirrors %s only", rest, distroless)
			}
		case "COPY":
			f := strings.Fields(rest)
			if len(f) != 3 || f[0] != "--from=build" || f[1] != "/out/cesd" {
				return nil, fmt.Errorf("COPY %s: the test image copies only the cesd binary", rest)
			}
			s.Binary = f[2]
		case "USER":
			s.User = rest
		case "EXPOSE":
			s.Expose = append(s.Expose, strings.Fields(rest)...)
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &s.Entrypoint); err != nil {
				return nil, fmt.Errorf("ENTRYPOINT %s: want the exec form: %w", rest, err)
			}
		case "CMD":
			if err := json.Unmarshal([]byte(rest), &s.Cmd); err != nil {
				return nil, fmt.Errorf("CMD %s: want the exec form: %w", rest, err)
			}
		case "HEALTHCHECK":
			opts, cmd, ok := strings.Cut(rest, "CMD ")
			if !ok {
				return nil, fmt.Errorf("HEALTHCHECK %s: want CMD", rest)
			}
			if err := json.Unmarshal([]byte(cmd), &s.Health); err != nil {
				return nil, fmt.Errorf("HEALTHCHECK CMD %s: want the exec form: %w", cmd, err)
			}
			for _, o := range strings.Fields(opts) {
				k, v, ok := strings.Cut(strings.TrimPrefix(o, "--"), "=")
				switch {
				case !ok:
					return nil, fmt.Errorf("HEALTHCHECK option %s", o)
				case k == "interval" || k == "timeout" || k == "start-period" || k == "retries":
					s.HealthFlags = append(s.HealthFlags, "--health-"+k+"="+v)
				default:
					return nil, fmt.Errorf("HEALTHCHECK option %s: the test image does not mirror it", o)
				}
			}
		default:
			return nil, fmt.Errorf("final stage %s: the test image (deploy/docker/container_test.go) does not mirror it; add it there", instr)
		}
	}
	if s.Binary == "" || s.User == "" || len(s.Entrypoint) == 0 || len(s.Health) == 0 {
		return nil, fmt.Errorf("final stage lacks COPY, USER, ENTRYPOINT or HEALTHCHECK: %+v", s)
	}
	return s, nil
}

// TestDockerfileFinalStage runs wherever go test does: the final stage is
// one the field test can mirror, and it says what the manifests and docs
// rely on.
func TestDockerfileFinalStage(t *testing.T) {
	s, err := readFinalStage("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if s.User != "65532:65532" {
		t.Errorf("USER %s, want 65532:65532 (the manifests' runAsUser)", s.User)
	}
	if strings.Join(s.Entrypoint, " ") != "cesd" || strings.Join(s.Cmd, " ") != "run" {
		t.Errorf("ENTRYPOINT %q CMD %q, want cesd run (the manifests pass args only)", s.Entrypoint, s.Cmd)
	}
	if strings.Join(s.Health, " ") != "cesd healthcheck" {
		t.Errorf("HEALTHCHECK CMD %q, want cesd healthcheck (the manifests' startupProbe)", s.Health)
	}
	if s.Binary != "/usr/local/bin/cesd" {
		t.Errorf("cesd at %s: not on distroless's PATH %s", s.Binary, distrolessEnv[0])
	}
}
