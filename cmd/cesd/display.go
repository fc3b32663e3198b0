package main

import (
	"strconv"
	"unicode"
)

// shown makes a string that came from CES (or from the files it sent) safe
// for human output: as it is when every rune is printable, else quoted with
// Go escapes. A newline, a forged log line, an ANSI escape or a U+202E
// (right-to-left override: Cf, not printable) then cannot rewrite what an
// operator or a log collector sees. JSON output needs none of this.
func shown(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}

// shownAll applies shown to each string.
func shownAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = shown(s)
	}
	return out
}
