package cluster_test

import (
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/server"
)

// The external NATS server restarts (its operator upgrades it): the room
// state bucket, kept in memory, is gone with it. The nodes make it again
// and write their rooms back, so the cluster takes joins again and a new
// participant sees those who were there. Before, seen from outside with
// starling --nats-url and a restarted nats-server, every change of the
// room state failed from then on ("stream not found"): joins and GET
// /v1/rooms answered 503 until every node was restarted.
func TestNATSRestartRebuildsRoomState(t *testing.T) {
	busCutTurn(t)
	addr, restartNATS := restartableNATS(t)
	srvs := make([]*server.Server, 2)
	for i := range srvs {
		cfg := nodeConfig([]int{0, 0}, i, func(c *config.Config) {
			c.Room.ResumeWindow = config.Duration(5 * time.Second) // the outage is shorter: nobody leaves
			c.Cluster.Listen, c.Cluster.Routes = "", nil
			c.Cluster.NATSURL = "nats://starling:" + testSecret + "@" + addr
		})
		srvs[i] = serveNode(t, cfg, i)
	}
	const rm = "nats-restart"
	alice := join(t, srvs[0], rm, "alice")
	bob := join(t, srvs[1], rm, "bob")
	seeEachOther(t, alice, bob)

	restartNATS(srvs)
	carol := join(t, srvs[1], rm, "carol") // the client tries again on 503
	seeEachOther(t, alice, bob, carol)
	for i, s := range srvs {
		eventually(t, 15*time.Second, "n"+itoa(i)+"'s admin API lists the room with the three", func() bool {
			var list struct {
				Rooms []struct {
					Name            string `json:"name"`
					NumParticipants int    `json:"numParticipants"`
				} `json:"rooms"`
			}
			var one struct {
				Participants []any `json:"participants"`
			}
			return httpJSONAuth(t, "GET", s.BaseURL()+"/v1/rooms", "", nil, &list) == http.StatusOK &&
				len(list.Rooms) == 1 && list.Rooms[0].NumParticipants == 3 &&
				httpJSONAuth(t, "GET", s.BaseURL()+"/v1/rooms/"+rm, "", nil, &one) == http.StatusOK && len(one.Participants) == 3
		})
	}
}

// freeTCPPort is a loopback TCP port free now.
func freeTCPPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// restartableNATS starts a NATS server on a free loopback port for the
// nodes of a NATS-restart test and returns its address and restart, which
// stops it, waits until every node saw it go, and starts a new one (an
// empty JetStream) on the same port. Call it before starting the nodes:
// the servers stop after them (cleanups run last first; stopped before
// them, each node's shutdown waited for NATS).
func restartableNATS(t *testing.T) (addr string, restart func(srvs []*server.Server)) {
	t.Helper()
	port := freeTCPPort(t)
	stop := startNATSAt(t, port)
	t.Cleanup(stop)
	var stopAgain func()
	t.Cleanup(func() {
		if stopAgain != nil {
			stopAgain()
		}
	})
	return "127.0.0.1:" + strconv.Itoa(port), func(srvs []*server.Server) {
		t.Helper()
		stop()
		for i, s := range srvs {
			eventually(t, 10*time.Second, "n"+itoa(i)+" notices NATS is gone", func() bool { return !s.Cluster().Conn().IsConnected() })
		}
		stopAgain = startNATSAt(t, port)
	}
}

// startNATSAt starts a NATS server with JetStream on a given loopback port
// (user starling, password testSecret, as startNATS) and returns its stop,
// which the caller makes a cleanup of (stopping it twice is fine).
func startNATSAt(t *testing.T, port int) (stop func()) {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{
		Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true,
		Username: "starling", Password: testSecret,
		JetStream: true, StoreDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("the test NATS server did not start")
	}
	return func() { ns.Shutdown(); ns.WaitForShutdown() }
}

// A node that did not learn when the room state bucket was made (the store
// did not answer in time at its start: a starved machine) does not take
// the bucket it opened for one made again: its check every 30 s wrote its
// rooms, members, node key and tracks back, and resynchronised every watch,
// in the middle of TestJoinStorm under -race at load 40 ("the room state
// store's bucket was made again (its NATS server restarted?)").
func TestBucketCheckWithoutCreationTime(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 2, nil)
	a := join(t, srvs[0], "made", "a")
	b := join(t, srvs[1], "made", "b")
	seeEachOther(t, a, b)
	n := srvs[0].Cluster()
	n.ForgetBucketMade()
	eventually(t, 20*time.Second, "n0 checks the bucket", n.CheckBucket)
	if got := n.BucketRewrites(); got != 0 {
		t.Fatalf("n0 took the bucket it opened for one made again and wrote its part back %d times", got)
	}
	// Known again now: a second check agrees without the rule for an
	// unknown creation time.
	if !n.CheckBucket() || n.BucketRewrites() != 0 {
		t.Fatalf("the second check: %d write-backs", n.BucketRewrites())
	}
}
