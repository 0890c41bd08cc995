package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestEverySettingIsDocumented: docs/configuration.md has a row for every
// setting vipd reads, with its default, and no row for one it does not.
func TestEverySettingIsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{} // variable → default column
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Za-z0-9_]+)` \\| ([^|]*) \\|").FindAllStringSubmatch(string(b), -1) {
		rows[m[1]] = strings.TrimSpace(m[2])
	}
	known := map[string]bool{}
	for _, s := range Settings {
		known[s.Env] = true
		def, ok := rows[s.Env]
		switch {
		case !ok:
			t.Errorf("setting %s is not in docs/configuration.md: add a row | `%s` | `%s` | %s |", s.Env, s.Env, s.Default, s.Help)
		case s.Default != "" && !strings.Contains(def, "`"+s.Default+"`"):
			t.Errorf("docs/configuration.md gives %s the default %s; the code's is %q", s.Env, def, s.Default)
		}
	}
	for env := range rows {
		if !known[env] {
			t.Errorf("docs/configuration.md documents %s, which vipd does not read", env)
		}
	}
}
