package sim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Fault is what a route does instead of (or on top of) answering normally.
// Fields combine: Latency is waited first, then Hang, then Status.
type Fault struct {
	// Latency delays the answer (cut short when the client gives up).
	Latency time.Duration `json:"latency,omitempty"`
	// Status answers with this status and a plausible body instead of serving:
	// 429 carries X-RateLimit-*; 429 and 503 carry Retry-After when
	// RetryAfterSeconds is set; 502 and 504 answer an edge HTML page.
	Status int `json:"status,omitempty"`
	// RetryAfterSeconds is when a 429 window resets (X-RateLimit-Reset) and
	// the Retry-After of 429/503. Zero means 1 second for the reset header.
	RetryAfterSeconds int `json:"retryAfterSeconds,omitempty"`
	// Hang blocks until the client cancels the request (or Close is called).
	Hang bool `json:"hang,omitempty"`
	// DropAfterCommit serves the request in full (the write is committed),
	// then closes the connection without answering.
	DropAfterCommit bool `json:"dropAfterCommit,omitempty"`
	// CommitFirst serves the request in full before applying Latency, Hang
	// or Status, like the edge answering 504 while the platform created the
	// resource anyway.
	CommitFirst bool `json:"commitFirst,omitempty"`
	// Times applies the fault to the next Times calls only; 0 means until cleared.
	Times int `json:"times,omitempty"`
	// Skip lets that many calls through untouched before the fault applies.
	Skip int `json:"skip,omitempty"`
	// Echo makes the error message of Status repeat what the request sent,
	// the way some upstreams quote a rejected request: EchoBody (the raw
	// body), EchoQuery or EchoPath (each string of the body, query- or
	// path-escaped), EchoBasic (the body's user:password or client pair as
	// an Authorization: Basic value) or EchoHeader (the Authorization header).
	Echo string `json:"echo,omitempty"`
	// EchoPad puts this many characters before the echo, so that a client
	// cutting long messages cuts in the middle of what is echoed.
	EchoPad int `json:"echoPad,omitempty"`
}

// What an Echo fault repeats.
const (
	EchoBody   = "body"
	EchoQuery  = "query"
	EchoPath   = "path"
	EchoBasic  = "basic"
	EchoHeader = "header"
)

// echoMessage renders the request the way f.Echo asks.
func echoMessage(r *http.Request, f Fault) string {
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	values := map[string]string{}
	var obj map[string]any
	if json.Unmarshal(raw, &obj) == nil {
		for k, v := range obj {
			if s, ok := v.(string); ok {
				values[k] = s
			}
		}
	} else if form, err := url.ParseQuery(string(raw)); err == nil {
		for k := range form {
			values[k] = form.Get(k)
		}
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var echo string
	switch f.Echo {
	case EchoBody:
		echo = string(raw)
	case EchoQuery, EchoPath:
		var parts []string
		for _, k := range keys {
			v := url.QueryEscape(values[k])
			if f.Echo == EchoPath {
				v = url.PathEscape(values[k])
			}
			parts = append(parts, k+"="+v)
		}
		echo = strings.Join(parts, "&")
	case EchoBasic:
		user, pass := values["username"], values["password"]
		if user == "" {
			user, pass = values["client_id"], values["client_secret"]
		}
		echo = "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	case EchoHeader:
		echo = "Authorization: " + r.Header.Get("Authorization")
	}
	return "rejected request " + strings.Repeat("x", f.EchoPad) + echo
}

type faultState struct {
	fault     Fault
	remaining int // calls left when fault.Times > 0
	skip      int // calls still let through
}

// SetFault installs f on route, replacing any fault there. It panics on an
// unknown route name: a typo would otherwise make a test pass vacuously.
func (s *Server) SetFault(route string, f Fault) {
	if !knownRoute(route) {
		panic(fmt.Sprintf("sim: unknown route %q", route))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[route] = &faultState{fault: f, remaining: f.Times, skip: f.Skip}
}

// ClearFault removes the fault of one route.
func (s *Server) ClearFault(route string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.faults, route)
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = map[string]*faultState{}
}

// Faults returns the faults in force, by route.
func (s *Server) Faults() map[string]Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Fault, len(s.faults))
	for r, f := range s.faults {
		ff := f.fault
		if ff.Times > 0 {
			ff.Times = f.remaining
		}
		out[r] = ff
	}
	return out
}

// Calls reports how many requests reached route, faulted or not.
func (s *Server) Calls(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[route]
}

// AllCalls reports the call count of every route called at least once.
func (s *Server) AllCalls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

// ResetCalls sets every call count back to zero and empties the call log.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = map[string]int{}
	s.callLog = nil
}

// Call is one request the simulator received: its method, route name and path.
type Call struct {
	Method string `json:"method"`
	Route  string `json:"route"`
	Path   string `json:"path"`
}

// maxCallLog bounds the call log; counts (Calls) go on past it.
const maxCallLog = 100000

// CallLog returns the requests received since the last reset, oldest
// first (at most the first 100,000), faulted or not: a test proves a dry
// run wrote nothing by finding no method but GET in it (and the token
// requests, which create nothing).
func (s *Server) CallLog() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.callLog...)
}

// takeFault counts and logs the call and returns the fault for this call,
// consuming one of its Times.
func (s *Server) takeFault(r *http.Request, route string) Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[route]++
	if len(s.callLog) < maxCallLog {
		s.callLog = append(s.callLog, Call{Method: r.Method, Route: route, Path: r.URL.Path})
	}
	fs := s.faults[route]
	if fs == nil {
		return Fault{}
	}
	if fs.skip > 0 {
		fs.skip--
		return Fault{}
	}
	f := fs.fault
	if f.Times > 0 {
		fs.remaining--
		if fs.remaining <= 0 {
			delete(s.faults, route)
		}
	}
	return f
}

// applyFault waits, hangs or answers as f says. It reports whether it
// answered (or the client left), in which case the caller must not serve.
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, p product, f Fault) bool {
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return true
		case <-s.stop:
			return true
		}
	}
	if f.Hang {
		select {
		case <-r.Context().Done():
		case <-s.stop:
		}
		return true
	}
	if f.Status == 0 {
		return false
	}
	retry := f.RetryAfterSeconds
	switch f.Status {
	case http.StatusTooManyRequests:
		reset := retry
		if reset <= 0 {
			reset = 1
		}
		setRateLimitHeaders(w, 100, 0, time.Now().Add(time.Duration(reset)*time.Second))
		if retry > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(retry))
		}
		writeError(w, p, f.Status, "", "Too many requests")
	case http.StatusServiceUnavailable:
		if retry > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(retry))
		}
		writeError(w, p, f.Status, "", "Service temporarily unavailable")
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		// The edge answers these, not the product: an HTML page, not JSON.
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(f.Status)
		text := strconv.Itoa(f.Status) + " " + http.StatusText(f.Status)
		_, _ = w.Write([]byte("<html><head><title>" + text + "</title></head><body><center><h1>" + text + "</h1></center></body></html>\n"))
	default:
		msg := http.StatusText(f.Status)
		if f.Status >= 500 {
			msg = "An internal error occurred, please try again later"
		}
		if f.Echo != "" {
			msg = echoMessage(r, f)
		}
		writeError(w, p, f.Status, "", msg)
	}
	return true
}
