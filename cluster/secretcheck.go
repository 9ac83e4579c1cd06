package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// The cluster secret on an external bus. The embedded NATS servers check
// the secret on every route, so a node with another one is refused there
// (ErrSecretRejected). On an existing NATS cluster (--nats-url) the bus
// takes that cluster's own credentials, and the secret only keys the media
// relay: a node started with another secret joined the bus, was listed in
// GET /v1/nodes and took joins, and no media crossed between it and the
// others, without a word in any log (checked from outside: three nodes on
// one nats-server, a fourth with another secret). Now each node proves its
// secret on the bus at start, and one whose secret no other node shares
// stops with a clear message.

const subjSecret = "starling.nodes.secret" // secret proofs, request/reply

// secretProof proves the secret without showing it: an HMAC of a fixed
// text keyed with the secret.
func secretProof(secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("starling cluster secret proof v1"))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

type proofMsg struct {
	Node  string `json:"node"`
	Proof string `json:"proof"`
}

// ErrSecretMismatch: the other nodes on an external bus have another secret.
var ErrSecretMismatch = errors.New("the other nodes on the bus have a different cluster secret: every node needs the same --cluster-secret / STARLING_CLUSTER_SECRET " +
	"(with --nats-url the bus takes the NATS server's credentials, and the secret keys the media relay between nodes: no media would cross)")

// answerProofs answers the other nodes' secret proofs with this node's, and
// says when one differs.
func (n *Node) answerProofs() error {
	mine := secretProof(n.opts.Secret)
	_, err := n.bus.nc.Subscribe(subjSecret, func(m *nats.Msg) {
		var p proofMsg
		if json.Unmarshal(m.Data, &p) != nil || p.Node == n.id {
			return
		}
		if n.skipProofs.Load() > 0 && n.skipProofs.Add(-1) >= 0 {
			return
		}
		if p.Proof != mine {
			n.log.Error("a node with a different cluster secret is on the bus: it stops (no media would cross between it and this node)", "other", p.Node)
		}
		data, _ := json.Marshal(proofMsg{Node: n.id, Proof: mine})
		_ = m.Respond(data)
	})
	return err
}

// checkSecret asks the nodes on the bus for their proofs: it fails when
// some answer and none shares this node's secret (asked twice, a second
// apart, so that nodes starting at the same moment can answer). Nodes that
// do not answer within proofWait are not waited for when the store knows no
// other node (the first node); when it does (their keys), a starved node
// may just be slow to answer (a loaded test run: the node with another
// secret heard nothing within 2 x 500 ms and started), so the asking goes
// on for up to secretPatience before this node counts itself alone.
func (n *Node) checkSecret() error {
	patience := time.Now().Add(secretPatience)
	for round := 0; ; round++ {
		same, other := n.askProofs(min(proofWait*time.Duration(round+1), 3*time.Second))
		switch {
		case len(same) > 0:
			if len(other) > 0 {
				n.log.Error("nodes with a different cluster secret are on the bus (they stop)", "nodes", strings.Join(other, ","))
			}
			return nil
		case len(other) > 0 && round >= 1:
			return fmt.Errorf("%w; nodes answering with another secret: %s", ErrSecretMismatch, strings.Join(other, ", "))
		case len(other) == 0 && (time.Now().After(patience) || !n.othersInStore()):
			return nil
		}
		time.Sleep(time.Second)
	}
}

// secretPatience bounds how long checkSecret waits for nodes the store
// lists to answer; a node key left by a node that died unseen must not
// stop a start for longer.
const secretPatience = 15 * time.Second

// othersInStore reports whether the store holds another node's key.
func (n *Node) othersInStore() bool {
	keys, err := n.listKeys(n.retry, "n.*")
	if err != nil {
		return false
	}
	for _, k := range keys {
		if k != nodeKey(n.id) {
			return true
		}
	}
	return false
}

const (
	proofWait  = 500 * time.Millisecond // for a first answer, more in later rounds
	proofQuiet = 200 * time.Millisecond // after the last one
)

// askProofs collects the answers to one proof request, waiting up to wait
// for the first: the nodes sharing this node's secret and the others.
func (n *Node) askProofs(wait time.Duration) (same, other []string) {
	mine := secretProof(n.opts.Secret)
	inbox := n.bus.nc.NewRespInbox()
	sub, err := n.bus.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, nil
	}
	defer func() { _ = sub.Unsubscribe() }()
	data, _ := json.Marshal(proofMsg{Node: n.id, Proof: mine})
	if n.bus.nc.PublishRequest(subjSecret, inbox, data) != nil {
		return nil, nil
	}
	deadline := time.Now().Add(wait)
	seen := map[string]bool{}
	for {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			break
		}
		var p proofMsg
		if json.Unmarshal(m.Data, &p) != nil || p.Node == n.id || seen[p.Node] {
			continue
		}
		seen[p.Node] = true
		if p.Proof == mine {
			same = append(same, p.Node)
		} else {
			other = append(other, p.Node)
		}
		deadline = time.Now().Add(proofQuiet)
	}
	sort.Strings(same)
	sort.Strings(other)
	return same, other
}
