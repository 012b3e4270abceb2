package webhook

import (
	"fmt"
	"io"
	"net/http"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// The README's receiver sample, verbatim between the markers (TestReadme
// ReceiverSample checks it; TestReceiverSampleVerifiesDeliveries runs it).

// README:begin
// mcpguardHook verifies each delivery's signature before trusting it.
func mcpguardHook(secret string) http.HandlerFunc { // secret: the whsec_... from POST /webhooks
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		panic(err)
	}
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil || wh.Verify(body, r.Header) != nil { // signature, and timestamp within 5 minutes
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		// At least once: skip a webhook-id you have already handled.
		fmt.Println(r.Header.Get("webhook-id"), string(body))
		w.WriteHeader(http.StatusNoContent)
	}
}

// README:end
