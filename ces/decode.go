package ces

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Credentials is one fetch-credentials payload. Schemas and WalletPassword
// are secrets: String and GoString redact them so a stray %v cannot leak.
type Credentials struct {
	WalletName           string
	CertificateStartDate time.Time // from epoch ms, UTC; zero if absent
	CertificateEndDate   time.Time
	LastRotationDate     time.Time
	WalletPassword       *string // nil when CES sends null
	Comment              *string
	Schemas              map[string]string // user -> password (secret)
	Wallet               map[string]string // file name -> base64, as sent
}

// String lists names and dates only.
func (c Credentials) String() string {
	users := make([]string, 0, len(c.Schemas))
	for u := range c.Schemas {
		users = append(users, u)
	}
	files := make([]string, 0, len(c.Wallet))
	for f := range c.Wallet {
		files = append(files, f)
	}
	sort.Strings(users)
	sort.Strings(files)
	return fmt.Sprintf("Credentials{WalletName:%q Start:%s End:%s LastRotation:%s Schemas:%v Files:%v WalletPassword:[REDACTED]}",
		c.WalletName, c.CertificateStartDate.Format(time.RFC3339), c.CertificateEndDate.Format(time.RFC3339),
		c.LastRotationDate.Format(time.RFC3339), users, files)
}

// GoString keeps %#v from dumping passwords.
func (c Credentials) GoString() string { return c.String() }

// wire is the field set shared by both JSON shapes. Map values are pointers
// so a null password is rejected instead of silently becoming "".
type wire struct {
	WalletName           *string            `json:"walletName"`
	CertificateStartDate *json.Number       `json:"certificateStartDate"`
	CertificateEndDate   *json.Number       `json:"certificateEndDate"`
	LastRotationDate     *json.Number       `json:"lastRotationDate"`
	WalletPassword       *string            `json:"walletPassword"`
	Comment              *string            `json:"comment"`
	Schemas              map[string]*string `json:"schemas"`
	Wallet               map[string]*string `json:"wallet"`
}

// maxJSONDepth bounds the duplicate-key walker; real payloads nest 3 deep.
const maxJSONDepth = 32

// DecodeCredentials accepts the API chapter's {"wallets":{...}} and the
// top-level {"schemas":..,"wallet":..} that Oracle's decode script reads.
// A body that is an error message (CES answers 200 with {"msg":..}) is
// KindUpstream; anything else unusable is KindBadResponse. Errors are *Error
// with Op OpDecode and never quote secret values.
func DecodeCredentials(body []byte) (*Credentials, error) {
	creds, kind, detail, err := decodeCredentials(body)
	if err != nil || kind != KindUnknown {
		return nil, &Error{Op: OpDecode, Kind: kind, Detail: detail, Err: err}
	}
	return creds, nil
}

func decodeCredentials(body []byte) (*Credentials, Kind, string, error) {
	bad := func(format string, a ...any) (*Credentials, Kind, string, error) {
		d := fmt.Sprintf(format, a...)
		return nil, KindBadResponse, d, errors.New(d)
	}
	if err := checkJSON(body); err != nil {
		return bad("invalid JSON: %s", sanitize(err.Error()))
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return bad("credentials must be a JSON object")
	}
	if top == nil {
		return bad("credentials are JSON null")
	}
	inner, nested := top["wallets"]
	_, hasWallet := top["wallet"]
	_, hasSchemas := top["schemas"]
	var obj []byte
	switch {
	case nested && (hasWallet || hasSchemas):
		return bad(`ambiguous shape: both "wallets" and top-level "wallet"/"schemas"`)
	case nested:
		if isNull(inner) {
			return bad(`"wallets" is null`)
		}
		if !isObject(inner) {
			return bad(`"wallets" must be a JSON object`)
		}
		obj = inner
	case hasWallet || hasSchemas:
		obj = body
	default:
		if msg, ok := upstreamMessage(top); ok {
			return nil, KindUpstream, msg, errors.New("CES answered 200 with an error body")
		}
		return bad(`neither {"wallets":{...}} nor top-level {"wallet":..,"schemas":..}`)
	}

	if err := exactFieldNames(obj); err != nil {
		return bad("%s", err)
	}
	var w wire
	if err := json.Unmarshal(obj, &w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			// te.Value is not used: for numbers it holds the literal.
			return bad("field %q has the wrong type (want %s)", sanitize(te.Field), te.Type)
		}
		// Other decode errors can quote the offending value, which may be a password.
		return bad("cannot decode credentials: a field has an invalid value")
	}
	if w.Wallet == nil {
		return bad(`"wallet" is missing or null`)
	}
	c := &Credentials{
		WalletPassword: w.WalletPassword,
		Comment:        w.Comment,
		Schemas:        make(map[string]string, len(w.Schemas)),
		Wallet:         make(map[string]string, len(w.Wallet)),
	}
	if w.WalletName != nil {
		c.WalletName = *w.WalletName
	}
	for name, v := range w.Wallet {
		if v == nil {
			return bad("wallet file %q is null", sanitize(name))
		}
		c.Wallet[name] = *v
	}
	for user, v := range w.Schemas {
		if v == nil {
			return bad("password of schema %q is null", sanitize(user))
		}
		c.Schemas[user] = *v
	}
	for _, d := range []struct {
		name string
		in   *json.Number
		out  *time.Time
	}{
		{"certificateStartDate", w.CertificateStartDate, &c.CertificateStartDate},
		{"certificateEndDate", w.CertificateEndDate, &c.CertificateEndDate},
		{"lastRotationDate", w.LastRotationDate, &c.LastRotationDate},
	} {
		if d.in == nil {
			continue
		}
		ms, err := strconv.ParseInt(d.in.String(), 10, 64)
		if err != nil {
			return bad("%s is not an integer of epoch milliseconds", d.name)
		}
		*d.out = time.UnixMilli(ms).UTC()
	}
	return c, KindUnknown, "", nil
}

var wireFields = []string{"walletName", "certificateStartDate", "certificateEndDate",
	"lastRotationDate", "walletPassword", "comment", "schemas", "wallet"}

// exactFieldNames rejects keys that differ from a field name only in case:
// encoding/json would match them case-insensitively, which reopens the
// duplicate-key hole that checkJSON closes.
func exactFieldNames(obj []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return errors.New("credentials must be a JSON object")
	}
	for k := range m {
		for _, f := range wireFields {
			if k != f && strings.EqualFold(k, f) {
				return fmt.Errorf("unexpected key %q (field names are case-sensitive)", sanitize(k))
			}
		}
	}
	return nil
}

// upstreamMessage recognises the error bodies CES sends with HTTP 200, e.g.
// {"msg":"Internal error. Cannot connect to upstream service","detail":"..."}.
func upstreamMessage(top map[string]json.RawMessage) (string, bool) {
	var parts []string
	found := false
	for _, k := range []string{"msg", "message", "error", "detail"} {
		raw, ok := top[k]
		if !ok {
			continue
		}
		found = true
		var s string
		if json.Unmarshal(raw, &s) == nil && s != "" {
			parts = append(parts, s)
		}
	}
	if !found {
		return "", false
	}
	if len(parts) == 0 {
		return "error body without a message", true
	}
	return sanitize(strings.Join(parts, ": ")), true
}

// upstreamBody reports whether a 2xx body of a call that expects no
// particular payload (register/unregister) is in fact an error. It is
// conservative: CES may answer success with a {"msg":...} of its own.
func upstreamBody(body []byte) (string, bool) {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil || top == nil {
		return "", false
	}
	if _, ok := top["error"]; ok {
		return upstreamMessage(top)
	}
	msg, ok := upstreamMessage(top)
	if !ok {
		return "", false
	}
	l := strings.ToLower(msg)
	for _, w := range []string{"error", "exception", "cannot", "fail", "refused", "unavailable"} {
		if strings.Contains(l, w) {
			return msg, true
		}
	}
	return "", false
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

func isObject(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && t[0] == '{'
}

// checkJSON validates body as a single JSON value and rejects duplicate keys
// in any object: encoding/json keeps the last duplicate, so a hostile payload
// could otherwise show one value to a validator and another to us.
func checkJSON(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	type frame struct {
		obj     bool
		wantKey bool
		keys    map[string]struct{}
	}
	var stack []frame
	started := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			switch {
			case !started:
				return errors.New("empty body")
			case len(stack) > 0:
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		if err != nil {
			return err
		}
		if len(stack) == 0 && started {
			return errors.New("trailing data after the JSON value")
		}
		started = true
		var top *frame
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			continue
		}
		if top != nil && top.obj {
			if top.wantKey {
				k, _ := tok.(string)
				if _, dup := top.keys[k]; dup {
					return fmt.Errorf("duplicate key %q", k)
				}
				top.keys[k] = struct{}{}
				top.wantKey = false
				continue
			}
			top.wantKey = true // this token starts the value; the next one is a key
		}
		if d, ok := tok.(json.Delim); ok {
			if len(stack) >= maxJSONDepth {
				return errors.New("JSON nested too deeply")
			}
			f := frame{obj: d == '{', wantKey: d == '{'}
			if f.obj {
				f.keys = map[string]struct{}{}
			}
			stack = append(stack, f)
		}
	}
}
