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

const (
	// maxJSONDepth bounds nesting; real payloads nest 3 deep.
	maxJSONDepth = 32
	// maxObjectKeys bounds the keys of any one object, so that a body of
	// tiny entries cannot cost more memory in maps than it costs in bytes.
	// Real payloads hold fewer than 20 files or schemas.
	maxObjectKeys = 1024
)

// Sane dates: CES started issuing wallets long after 2000; anything outside
// is a broken payload, not a date to write into a manifest.
var (
	minDate = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxDate = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// DecodeCredentials accepts the API chapter's {"wallets":{...}} and the
// top-level {"schemas":..,"wallet":..} that Oracle's decode script reads.
// A body that is an error message (CES answers 200 with {"msg":..}) is
// KindUpstream; anything else unusable is KindBadResponse. Errors are *Error
// with Op OpDecode and never quote secret values.
func DecodeCredentials(body []byte) (*Credentials, error) {
	creds, kind, detail, err := decodeCredentials(bytes.NewReader(body))
	if err != nil || kind != KindUnknown {
		return nil, &Error{Op: OpDecode, Kind: kind, Detail: detail, Err: err}
	}
	return creds, nil
}

// wireObj collects the fields of one credentials object as they stream by.
// Its first semantic error is kept, not returned, so that the walk goes on
// and a syntax error later in the body still takes precedence, as it would
// if the body were validated first.
type wireObj struct {
	walletName, walletPassword, comment *string
	dates                               [3]*string // start, end, last rotation, as literals
	schemas, wallet                     map[string]string
	hasWallet, hasSchemas               bool // the key is present, even as null
	walletNull                          bool
	err                                 string // first semantic problem
}

func (o *wireObj) fail(format string, a ...any) {
	if o.err == "" {
		o.err = fmt.Sprintf(format, a...)
	}
}

var dateFields = [3]string{"certificateStartDate", "certificateEndDate", "lastRotationDate"}

var wireFields = []string{"walletName", "certificateStartDate", "certificateEndDate",
	"lastRotationDate", "walletPassword", "comment", "schemas", "wallet"}

// decodeCredentials reads one JSON value from r in a single streaming pass:
// no copy of the body is held, each string is allocated once, and duplicate
// keys (which encoding/json would silently resolve to the last one, showing a
// validator one value and us another) are refused at every level.
func decodeCredentials(r io.Reader) (*Credentials, Kind, string, error) {
	bad := func(format string, a ...any) (*Credentials, Kind, string, error) {
		d := fmt.Sprintf(format, a...)
		return nil, KindBadResponse, d, errors.New(d)
	}
	s := &stream{dec: json.NewDecoder(r)}
	s.dec.UseNumber()
	top, upstream, err := s.topLevel()
	if err == nil {
		err = s.end()
	}
	if err != nil {
		return bad("invalid JSON: %s", sanitize(err.Error()))
	}
	if top == nil {
		return bad("%s", s.shapeErr)
	}
	var obj *wireObj
	switch {
	case s.nested && (top.hasWallet || top.hasSchemas):
		return bad(`ambiguous shape: both "wallets" and top-level "wallet"/"schemas"`)
	case s.nested:
		if s.nestedErr != "" {
			return bad("%s", s.nestedErr)
		}
		obj = s.inner
	case top.hasWallet || top.hasSchemas:
		if s.topCaseErr != "" {
			return bad("%s", s.topCaseErr)
		}
		obj = top
	default:
		if msg, ok := upstream.message(); ok {
			return nil, KindUpstream, msg, errors.New("CES answered 200 with an error body")
		}
		return bad(`neither {"wallets":{...}} nor top-level {"wallet":..,"schemas":..}`)
	}
	if obj.err != "" {
		return bad("%s", obj.err)
	}
	if !obj.hasWallet || obj.walletNull {
		return bad(`"wallet" is missing or null`)
	}
	c := &Credentials{
		WalletPassword: obj.walletPassword,
		Comment:        obj.comment,
		Schemas:        obj.schemas,
		Wallet:         obj.wallet,
	}
	if c.Schemas == nil {
		c.Schemas = map[string]string{}
	}
	if obj.walletName != nil {
		c.WalletName = *obj.walletName
	}
	for i, out := range []*time.Time{&c.CertificateStartDate, &c.CertificateEndDate, &c.LastRotationDate} {
		lit := obj.dates[i]
		if lit == nil {
			continue
		}
		ms, err := strconv.ParseInt(*lit, 10, 64)
		if err != nil {
			return bad("%s is not an integer of epoch milliseconds", dateFields[i])
		}
		t := time.UnixMilli(ms).UTC()
		if t.Before(minDate) || t.After(maxDate) {
			return bad("%s is out of range: %d ms is not between the years 2000 and 9999", dateFields[i], ms)
		}
		*out = t
	}
	return c, KindUnknown, "", nil
}

// upstreamFields are the string fields of a CES error body.
type upstreamFields struct {
	found bool
	parts map[string]string
}

var upstreamKeys = []string{"msg", "message", "error", "detail"}

func (u *upstreamFields) message() (string, bool) {
	if !u.found {
		return "", false
	}
	var parts []string
	for _, k := range upstreamKeys {
		if v := u.parts[k]; v != "" {
			parts = append(parts, v)
		}
	}
	if len(parts) == 0 {
		return "error body without a message", true
	}
	return sanitize(strings.Join(parts, ": ")), true
}

// stream walks the token stream. Syntax errors (including duplicate keys,
// depth and size limits) are returned; semantic ones are recorded.
type stream struct {
	dec        *json.Decoder
	depth      int
	nested     bool
	inner      *wireObj
	nestedErr  string
	topCaseErr string
	shapeErr   string
}

// topLevel reads the whole top-level value. It returns a nil object (and
// sets shapeErr) when the value is not an object.
func (s *stream) topLevel() (*wireObj, *upstreamFields, error) {
	tok, err := s.dec.Token()
	if err == io.EOF {
		return nil, nil, errors.New("empty body")
	}
	if err != nil {
		return nil, nil, err
	}
	if tok == nil {
		s.shapeErr = "credentials are JSON null"
		return nil, nil, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		s.shapeErr = "credentials must be a JSON object"
		return nil, nil, s.skipFrom(tok)
	}
	top := &wireObj{}
	up := &upstreamFields{parts: map[string]string{}}
	err = s.object(func(key string) error {
		if isWireField(key) {
			return s.field(top, key)
		}
		if f := caseVariant(key); f != "" && s.topCaseErr == "" {
			s.topCaseErr = fmt.Sprintf("unexpected key %q (field names are case-sensitive)", sanitize(key))
		}
		switch key {
		case "wallets":
			s.nested = true
			return s.walletsValue()
		case "msg", "message", "error", "detail":
			up.found = true
			tok, err := s.dec.Token()
			if err != nil {
				return err
			}
			if v, ok := tok.(string); ok {
				up.parts[key] = v
				return nil
			}
			return s.skipFrom(tok)
		}
		return s.skip()
	})
	return top, up, err
}

func (s *stream) walletsValue() error {
	tok, err := s.dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		s.nestedErr = `"wallets" is null`
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		s.nestedErr = `"wallets" must be a JSON object`
		return s.skipFrom(tok)
	}
	in := &wireObj{}
	s.inner = in
	return s.object(func(key string) error {
		if isWireField(key) {
			return s.field(in, key)
		}
		if caseVariant(key) != "" {
			in.fail("unexpected key %q (field names are case-sensitive)", sanitize(key))
		}
		return s.skip()
	})
}

// object reads the keys and values of an object whose '{' was just read,
// calling each for every key; each must consume exactly the value.
func (s *stream) object(each func(key string) error) error {
	s.depth++
	if s.depth > maxJSONDepth {
		return errors.New("JSON nested too deeply")
	}
	keys := map[string]struct{}{}
	for {
		tok, err := s.dec.Token()
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); ok && d == '}' {
			s.depth--
			return nil
		}
		k, _ := tok.(string)
		if _, dup := keys[k]; dup {
			return fmt.Errorf("duplicate key %q", k)
		}
		if len(keys) >= maxObjectKeys {
			return fmt.Errorf("an object has more than %d keys", maxObjectKeys)
		}
		keys[k] = struct{}{}
		if err := each(k); err != nil {
			return err
		}
	}
}

// skip consumes one value.
func (s *stream) skip() error {
	tok, err := s.dec.Token()
	if err != nil {
		return err
	}
	return s.skipFrom(tok)
}

// skipFrom consumes the rest of a value whose first token is tok, still
// refusing duplicate keys and excessive depth inside it.
func (s *stream) skipFrom(tok json.Token) error {
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if d == '{' {
		return s.object(func(string) error { return s.skip() })
	}
	s.depth++
	if s.depth > maxJSONDepth {
		return errors.New("JSON nested too deeply")
	}
	for s.dec.More() {
		if err := s.skip(); err != nil {
			return err
		}
	}
	if _, err := s.dec.Token(); err != nil { // ']'
		return err
	}
	s.depth--
	return nil
}

// end requires the body to hold nothing after the value.
func (s *stream) end() error {
	if _, err := s.dec.Token(); err != io.EOF {
		if err != nil {
			return err
		}
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// field reads the value of wire field key into o.
func (s *stream) field(o *wireObj, key string) error {
	switch key {
	case "wallet", "schemas":
		return s.stringMap(o, key)
	case "walletName", "walletPassword", "comment":
		tok, err := s.dec.Token()
		if err != nil {
			return err
		}
		var dst **string
		switch key {
		case "walletName":
			dst = &o.walletName
		case "walletPassword":
			dst = &o.walletPassword
		default:
			dst = &o.comment
		}
		switch v := tok.(type) {
		case nil:
		case string:
			*dst = &v
		default:
			o.fail("field %q has the wrong type (want string)", key)
			return s.skipFrom(tok)
		}
		return nil
	}
	i := 0
	for i < len(dateFields) && dateFields[i] != key {
		i++
	}
	tok, err := s.dec.Token()
	if err != nil {
		return err
	}
	switch v := tok.(type) {
	case nil:
	case json.Number:
		lit := v.String()
		o.dates[i] = &lit
	case string:
		// encoding/json accepts a quoted number for a json.Number; so do we.
		o.dates[i] = &v
	default:
		o.fail("field %q has the wrong type (want number)", key)
		return s.skipFrom(tok)
	}
	return nil
}

// stringMap reads "wallet" or "schemas": null or an object of strings.
func (s *stream) stringMap(o *wireObj, key string) error {
	if key == "wallet" {
		o.hasWallet = true
	} else {
		o.hasSchemas = true
	}
	tok, err := s.dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		if key == "wallet" {
			o.walletNull = true
		}
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		o.fail("field %q has the wrong type (want object)", key)
		return s.skipFrom(tok)
	}
	m := map[string]string{}
	if key == "wallet" {
		o.wallet = m
	} else {
		o.schemas = m
	}
	return s.object(func(name string) error {
		tok, err := s.dec.Token()
		if err != nil {
			return err
		}
		switch v := tok.(type) {
		case string:
			m[name] = v
			return nil
		case nil:
			if key == "wallet" {
				o.fail("wallet file %q is null", sanitize(name))
			} else {
				o.fail("password of schema %q is null", sanitize(name))
			}
			return nil
		}
		o.fail("field %q has the wrong type (want string)", sanitize(key+"."+name))
		return s.skipFrom(tok)
	})
}

func isWireField(k string) bool {
	for _, f := range wireFields {
		if k == f {
			return true
		}
	}
	return false
}

// caseVariant returns the field k differs from only in case: encoding/json
// would match it case-insensitively, which reopens the duplicate-key hole.
func caseVariant(k string) string {
	for _, f := range wireFields {
		if k != f && strings.EqualFold(k, f) {
			return f
		}
	}
	return ""
}

// upstreamMessage recognises the error bodies CES sends with HTTP 200, e.g.
// {"msg":"Internal error. Cannot connect to upstream service","detail":"..."}.
func upstreamMessage(top map[string]json.RawMessage) (string, bool) {
	u := upstreamFields{parts: map[string]string{}}
	for _, k := range upstreamKeys {
		raw, ok := top[k]
		if !ok {
			continue
		}
		u.found = true
		var s string
		if json.Unmarshal(raw, &s) == nil {
			u.parts[k] = s
		}
	}
	return u.message()
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
