package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// docRow is a row of the settings table in docs/configuration.md.
var docRow = regexp.MustCompile("(?m)^\\| `([A-Za-z0-9_]+)` \\| ([^|]*) \\| (.*) \\|$")

// TestEverySettingIsDocumented: docs/configuration.md has a row for every
// setting vipd reads, with its default and, as its meaning, the setting's
// Help (what vipd manager --help prints), and no row for one it does not.
// VIPD_WRITE_DOCS=1 writes the meanings from Help into the page.
func TestEverySettingIsDocumented(t *testing.T) {
	const page = "../../docs/configuration.md"
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	help := map[string]string{}
	for _, s := range Settings {
		help[s.Env] = s.Help
	}
	if os.Getenv("VIPD_WRITE_DOCS") == "1" {
		b = docRow.ReplaceAllFunc(b, func(row []byte) []byte {
			m := docRow.FindSubmatch(row)
			if h, ok := help[string(m[1])]; ok {
				return []byte("| `" + string(m[1]) + "` | " + string(m[2]) + " | " + h + " |")
			}
			return row
		})
		if err := os.WriteFile(page, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	type row struct{ def, meaning string }
	rows := map[string]row{}
	for _, m := range docRow.FindAllStringSubmatch(string(b), -1) {
		rows[m[1]] = row{strings.TrimSpace(m[2]), strings.TrimSpace(m[3])}
	}
	for _, s := range Settings {
		r, ok := rows[s.Env]
		switch {
		case !ok:
			t.Errorf("setting %s is not in docs/configuration.md: add a row | `%s` | `%s` | %s |", s.Env, s.Env, s.Default, s.Help)
			continue
		case s.Default != "" && !strings.Contains(r.def, "`"+s.Default+"`"):
			t.Errorf("docs/configuration.md gives %s the default %s; the code's is %q", s.Env, r.def, s.Default)
		}
		if r.meaning != s.Help {
			t.Errorf("docs/configuration.md says of %s:\n\t%s\nbut vipd manager --help says:\n\t%s\nchange the Help in internal/config/config.go and run VIPD_WRITE_DOCS=1 go test ./internal/config", s.Env, r.meaning, s.Help)
		}
	}
	for env := range rows {
		if help[env] == "" {
			t.Errorf("docs/configuration.md documents %s, which vipd does not read", env)
		}
	}
}
