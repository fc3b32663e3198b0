package refresh

import (
	"errors"
	"strings"

	"github.com/cesd/cesd/ces"
)

// Stage names a step of one refresh. The local stages are also values of
// the kind label of cesd_refresh_errors_total.
type Stage string

// The stages of Run, in order.
const (
	StageFetch    Stage = "fetch"    // the CES call; its errors are *ces.Error
	StageDecode   Stage = "decode"   // names, sizes, base64 or the zip
	StageValidate Stage = "validate" // the payload as a whole (wallet.Payload.Validate)
	StageDerive   Stage = "derive"   // ewallet.pem and sqlnet.ora
	StageExpired  Stage = "expired"  // an expired wallet refused while a valid one is live
	StageWrite    Stage = "write"    // the generation on disk (and, in fleet mode, in the Secret)
)

// Stages lists every stage in the order Run takes them.
func Stages() []Stage {
	return []Stage{StageFetch, StageDecode, StageValidate, StageDerive, StageExpired, StageWrite}
}

// Error is every error Run returns: the stage that failed and why.
type Error struct {
	Stage Stage
	Err   error
}

func (e *Error) Error() string { return string(e.Stage) + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// KindOther is the kind of an error that is neither a CES error nor a
// refresh stage's.
const KindOther = "other"

// Kind is the kind label of cesd_refresh_errors_total for err: the CES
// error kind in snake_case ("rate_limited") when CES or IAM failed, else
// the local stage that failed, else KindOther.
func Kind(err error) string {
	if k, ok := ces.KindOf(err); ok {
		return snake(k.String())
	}
	var e *Error
	if errors.As(err, &e) && e.Stage != StageFetch {
		return string(e.Stage)
	}
	return KindOther
}

// Kinds lists every value Kind can return, so that each series can exist
// from the start.
func Kinds() []string {
	var out []string
	for k := ces.KindUnknown; ; k++ {
		s := snake(k.String())
		if k != ces.KindUnknown && s == snake(ces.KindUnknown.String()) {
			break // past the last kind
		}
		out = append(out, s)
	}
	for _, s := range Stages() {
		if s != StageFetch {
			out = append(out, string(s))
		}
	}
	return append(out, KindOther)
}

func snake(s string) string { return strings.ReplaceAll(s, " ", "_") }
