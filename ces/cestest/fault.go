package cestest

import "time"

// Op names one kind of request the simulator serves (or, for OpCallback, makes).
type Op int

const (
	OpToken Op = iota
	OpFetchCredentials
	OpFetchWallet
	OpList
	OpRegister
	OpUnregister
	// OpCallback is the rotation POST the simulator sends to registered
	// endpoints. Faults: LoseCallbacks, and Latency before each POST.
	OpCallback
	numOps
)

// String matches the operation names used by the ces client's errors.
func (o Op) String() string {
	switch o {
	case OpToken:
		return "token"
	case OpFetchCredentials:
		return "fetch-credentials"
	case OpFetchWallet:
		return "fetch-wallet"
	case OpList:
		return "list-endpoints"
	case OpRegister:
		return "register-endpoint"
	case OpUnregister:
		return "unregister-endpoint"
	case OpCallback:
		return "callback"
	}
	return "unknown"
}

// FaultKind says how a faulted request misbehaves.
type FaultKind int

const (
	NoFault FaultKind = iota
	// Status401 answers 401 (on OpToken: {"error":"invalid_client"}, a wrong secret).
	Status401
	Status403
	Status404
	// Status429 answers 429, with Retry-After in whole seconds when Fault.RetryAfter > 0.
	Status429
	Status500
	Status503
	// OK200Error answers HTTP 200 with CES's upstream-error body instead of data.
	OK200Error
	// Hang never answers: it blocks until the client gives up or the Server closes.
	Hang
	// Truncated sends the first half of the normal body. By default the
	// Content-Length still announces the full body, so the client sees an
	// unexpected EOF; with Fault.HonestLength it announces the cut length.
	Truncated
	// BadJSON sends a syntactically broken JSON body (a corrupt zip on OpFetchWallet).
	BadJSON
	// BadBase64 makes one wallet value (cwallet.sso) not base64. OpFetchCredentials only.
	BadBase64
	// HostileName adds a wallet file named Fault.Name (default "../../etc/passwd").
	// OpFetchCredentials and OpFetchWallet.
	HostileName
	// EmptyWallet sends "wallet":{} (an empty zip on OpFetchWallet).
	EmptyWallet
	// LoseCallbacks makes Rotate skip its POSTs, like a callback CES accepted and
	// never delivered. Set it on OpCallback.
	LoseCallbacks
	// Latency only delays (by Fault.Latency); the answer is normal.
	Latency
	// Oversized makes a valid answer about Fault.Size bytes longer: on
	// OpFetchCredentials a wallet file OversizedName whose base64 text is
	// Fault.Size bytes; on OpToken a "padding" field of Fault.Size bytes.
	Oversized
)

// OversizedName is the wallet file the Oversized fault adds.
const OversizedName = "padding.bin"

func (k FaultKind) String() string {
	names := [...]string{"none", "401", "403", "404", "429", "500", "503", "200-error",
		"hang", "truncated", "bad-json", "bad-base64", "hostile-name", "empty-wallet",
		"lose-callbacks", "latency", "oversized"}
	if k < 0 || int(k) >= len(names) {
		return "unknown"
	}
	return names[k]
}

// Fault describes a misbehaviour injected with Server.SetFault. Kinds that do
// not apply to an op (BadBase64 on OpList, say) leave the answer normal.
type Fault struct {
	Kind FaultKind
	// Times applies the fault to the next N requests, then clears it; 0 means
	// until cleared.
	Times int
	// RetryAfter is sent as Retry-After (seconds, rounded up) with Status429.
	RetryAfter time.Duration
	// Latency delays the answer (any kind), or each callback POST on OpCallback.
	Latency time.Duration
	// Name is the file name HostileName injects; default "../../etc/passwd".
	Name string
	// HonestLength makes Truncated announce the cut length.
	HonestLength bool
	// Size is what Oversized adds to the answer, in bytes (rounded down to
	// a multiple of 4).
	Size int
}

type faultState struct {
	f         Fault
	remaining int
}

// UpstreamErrorBody is what CES sends with HTTP 200 when its backend is down.
const UpstreamErrorBody = `{"msg":"Internal error. Cannot connect to upstream service","detail":"java.net.ConnectException: Connection refused (Connection refused)"}`

// badJSONBody is broken JSON that still starts like a CES answer.
const badJSONBody = `{"wallets":{"schemas":{"MFCS_RDS_CUSTOM":"x",}},`

// badZipBody starts like a zip and is not one.
const badZipBody = "PK\x03\x04this is not a zip archive"

// SetFault injects f into every following request of op (replacing any
// previous fault for op). A zero Fault clears it.
func (s *Server) SetFault(op Op, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f == (Fault{}) {
		delete(s.faults, op)
		return
	}
	s.faults[op] = &faultState{f: f, remaining: f.Times}
}

// ClearFaults removes every injected fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.faults)
}

// takeFaultLocked returns the fault for one request of op and uses up one of its Times.
func (s *Server) takeFaultLocked(op Op) Fault {
	st, ok := s.faults[op]
	if !ok {
		return Fault{}
	}
	f := st.f
	if st.remaining > 0 {
		st.remaining--
		if st.remaining == 0 {
			delete(s.faults, op)
		}
	}
	return f
}

// ProductFaults are the CES faults PRODUCT.md section 8 lists, as they apply
// to fetch-credentials. Tests that claim "every fault" range over this list,
// so a fault added here is covered everywhere.
func ProductFaults() []Fault {
	return []Fault{
		{Kind: Status401}, {Kind: Status403}, {Kind: Status404},
		{Kind: Status429, RetryAfter: time.Second}, {Kind: Status500}, {Kind: Status503},
		{Kind: OK200Error}, {Kind: Hang}, {Kind: Truncated}, {Kind: BadJSON},
		{Kind: BadBase64}, {Kind: HostileName}, {Kind: EmptyWallet},
	}
}
