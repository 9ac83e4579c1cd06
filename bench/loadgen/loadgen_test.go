package loadgen

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/starling-rtc/starling/sfu"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	cases := []struct {
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 50, 7 * time.Millisecond},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(5, 1, 4, 2, 3), 50, 3 * time.Millisecond}, // unsorted input
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},    // nearest rank: ceil(0.5*4) = 2nd
		{ms(1, 2, 3, 4), 75, 3 * time.Millisecond},
		{ms(1, 2, 3, 4), 100, 4 * time.Millisecond},
		{ms(1, 2, 3, 4), 1, 1 * time.Millisecond},
	}
	for _, c := range cases {
		if got := Percentile(append([]time.Duration(nil), c.in...), c.p); got != c.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", c.in, c.p, got, c.want)
		}
	}
	// p99 of 1..100 ms is 99 ms, p95 is 95 ms.
	var v []time.Duration
	for i := 100; i >= 1; i-- {
		v = append(v, time.Duration(i)*time.Millisecond)
	}
	if got := Percentile(v, 99); got != 99*time.Millisecond {
		t.Errorf("p99 of 1..100 ms = %v", got)
	}
	if got := Percentile(v, 95); got != 95*time.Millisecond {
		t.Errorf("p95 of 1..100 ms = %v", got)
	}
}

func TestHistogramBuckets(t *testing.T) {
	// Every value lands in a bucket whose upper bound is ≥ it and within 1/32.
	prev := -1
	for us := uint64(0); us < 1<<22; us = us*17/16 + 1 {
		i := histIndex(us)
		if i < prev {
			t.Fatalf("index not monotonic at %d µs", us)
		}
		prev = i
		up := histUpper(i)
		if up < us || (us >= histLinear && float64(up-us) > float64(us)/32+1) {
			t.Fatalf("%d µs -> bucket %d with upper bound %d", us, i, up)
		}
		if i > 0 && histUpper(i-1) >= us {
			t.Fatalf("%d µs also fits bucket %d (upper %d)", us, i-1, histUpper(i-1))
		}
	}
	if got := histIndex(math.MaxUint64); got != histBuckets-1 {
		t.Fatalf("huge value -> bucket %d", got)
	}
}

func TestHistogramPercentiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ { // 1..1000 µs
		h.Record(time.Duration(i) * time.Microsecond)
	}
	h.Record(-time.Second) // clamps to 0
	s := h.Snapshot()
	if s.Count() != 1001 {
		t.Fatalf("count %d", s.Count())
	}
	check := func(p float64, want time.Duration) {
		t.Helper()
		got := s.Percentile(p)
		if got < want || float64(got-want) > float64(want)/32+float64(time.Microsecond) {
			t.Errorf("p%v = %v, want about %v (bucket upper bound)", p, got, want)
		}
	}
	check(50, 500*time.Microsecond)
	check(99, 990*time.Microsecond)
	check(100, 1000*time.Microsecond)

	// A window: the values recorded after a snapshot.
	for i := 0; i < 100; i++ {
		h.Record(20 * time.Millisecond)
	}
	after := h.Snapshot()
	win := after.Sub(&s)
	if win.Count() != 100 {
		t.Fatalf("window count %d", win.Count())
	}
	if p := win.Percentile(50); p < 20*time.Millisecond || p > 21*time.Millisecond {
		t.Fatalf("window p50 %v", p)
	}
	var merged HistSnapshot
	merged.Add(&s)
	merged.Add(&win)
	if merged != after {
		t.Fatal("s + (after - s) != after")
	}
	var empty HistSnapshot
	if empty.Percentile(50) != 0 {
		t.Fatal("empty histogram percentile not 0")
	}
}

func TestHistogramRecordDoesNotAllocate(t *testing.T) {
	var h Histogram
	if n := testing.AllocsPerRun(1000, func() { h.Record(1234 * time.Microsecond) }); n != 0 {
		t.Fatalf("Record allocates %v times", n)
	}
}

func TestParseBitrate(t *testing.T) {
	good := map[string]int64{
		"2.5M": 2_500_000, "2.5m": 2_500_000, "800k": 800_000, "800K": 800_000, "48kbps": 48_000,
		"1.5Mbit/s": 1_500_000, "64000": 64_000, " 1G ": 1_000_000_000, "100b/s": 100, "0": 0,
		"2.5Mb": 2_500_000,
	}
	for in, want := range good {
		got, err := ParseBitrate(in)
		if err != nil || got != want {
			t.Errorf("ParseBitrate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "fast", "-1M", "1.5X", "NaN", "Inf", "2e15"} {
		if got, err := ParseBitrate(in); err == nil {
			t.Errorf("ParseBitrate(%q) = %d, want an error", in, got)
		}
	}
	var b Bitrate
	if err := b.Set("1.5M"); err != nil || b != 1_500_000 || b.String() != "1.50M" {
		t.Fatalf("Bitrate flag: %v %d %s", err, b, b.String())
	}
}

func TestOnOff(t *testing.T) {
	var o OnOff
	for in, want := range map[string]bool{"on": true, "off": false, "TRUE": true, "no": false, "1": true} {
		if err := o.Set(in); err != nil || bool(o) != want {
			t.Errorf("Set(%q) = %v, %v", in, o, err)
		}
	}
	if o.Set("maybe") == nil {
		t.Error("Set(maybe) accepted")
	}
}

func TestParseStat(t *testing.T) {
	// Field 2 may hold spaces and parentheses; utime/stime are fields 14/15.
	stat := "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 1234 0 5 0 731 269 0 0 20 0 12 0 100 1000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	ut, st, err := ParseStat([]byte(stat))
	if err != nil || ut != 731 || st != 269 {
		t.Fatalf("ParseStat = %d, %d, %v; want 731, 269", ut, st, err)
	}
	for _, bad := range []string{"", "4242 no parens", "4242 (x) S 1 2 3", "4242 (x) S 1 2 3 4 5 6 7 8 9 10 x 2"} {
		if _, _, err := ParseStat([]byte(bad)); err == nil {
			t.Errorf("ParseStat(%q) accepted", bad)
		}
	}
}

func TestParseStatusRSS(t *testing.T) {
	status := "Name:\tstarling\nVmPeak:\t 1000 kB\nVmHWM:\t  9000 kB\nVmRSS:\t   81234 kB\nRssAnon:\t 70000 kB\n"
	kb, err := ParseStatusRSS([]byte(status))
	if err != nil || kb != 81234 {
		t.Fatalf("ParseStatusRSS = %d, %v", kb, err)
	}
	for _, bad := range []string{"Name:\tkthreadd\n", "VmRSS:\n", "VmRSS: x kB\n", "VmRSS: 12 MB\n"} {
		if _, err := ParseStatusRSS([]byte(bad)); err == nil {
			t.Errorf("ParseStatusRSS(%q) accepted", bad)
		}
	}
}

func TestReadProcSelf(t *testing.T) {
	a, err := ReadProc(0)
	if err != nil {
		t.Fatal(err)
	}
	if a.RSSKB == 0 {
		t.Fatal("zero RSS for this process")
	}
	x := 0
	for time.Since(a.At) < 50*time.Millisecond { // burn a little CPU
		x++
	}
	b, err := ReadProc(0)
	if err != nil {
		t.Fatal(err)
	}
	if p := CPUPercent(a, b); p < 0 || p > 400 {
		t.Fatalf("CPU %v%% for a busy loop", p)
	}
	if CPUPercent(b, b) != 0 || CPUSeconds(b, a) != 0 {
		t.Fatal("empty or reversed interval not 0")
	}
	_ = x
}

func TestSeqTracker(t *testing.T) {
	var s seqTracker
	var span uint64
	for _, seq := range []uint16{65533, 65534, 65535, 0, 1, 3, 2, 6} { // wrap, reorder, gap of 2
		span = s.push(seq)
	}
	if span != 10 { // 65533 .. 6
		t.Fatalf("span %d, want 10", span)
	}
	if span = s.push(4); span != 10 { // late packet inside the span
		t.Fatalf("late packet changed span to %d", span)
	}
}

func TestStamp(t *testing.T) {
	p := make([]byte, 40)
	putStamp(p, 123456789)
	if ns, ok := readStamp(p); !ok || ns != 123456789 {
		t.Fatalf("readStamp = %d, %v", ns, ok)
	}
	if _, ok := readStamp(p[:30]); ok {
		t.Fatal("stamp found in a truncated payload")
	}
	if _, ok := readStamp(make([]byte, 5)); ok {
		t.Fatal("stamp found in a short payload")
	}
}

func TestParseRTPPadding(t *testing.T) {
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 77, Padding: true, PaddingSize: 4}, Payload: []byte{1, 2, 3}}
	b, err := pkt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var hdr rtp.Header
	p, ok := parseRTP(&hdr, b)
	if !ok || p.seq != 77 || string(p.payload) != "\x01\x02\x03" {
		t.Fatalf("parseRTP = %+v, %v", p, ok)
	}
	b[len(b)-1] = 200 // padding longer than the packet
	if _, ok := parseRTP(&hdr, b); ok {
		t.Fatal("bad padding accepted")
	}
	if n := testing.AllocsPerRun(100, func() { parseRTP(&hdr, b) }); n != 0 {
		t.Fatalf("parseRTP allocates %v times", n)
	}
}

// TestVP8Packets checks the synthetic frames with pion's depacketizer and
// the SFU's own keyframe parser: what the server must understand.
func TestVP8Packets(t *testing.T) {
	buf := make([]byte, maxRTPPacket)
	for _, key := range []bool{true, false} {
		size := 41_000
		parts := vp8Packets(size)
		total := 0
		for part := 0; part < parts; part++ {
			p := buildVP8(buf, 0x7ffe, size, part, parts, key, 1280, 720, 42)
			if len(p)+rtpHeaderLen > maxRTPPacket {
				t.Fatalf("packet %d: %d bytes with the RTP header", part, len(p)+rtpHeaderLen)
			}
			total += len(p) - vp8DescLen - stampLen
			var d codecs.VP8Packet
			if _, err := d.Unmarshal(p); err != nil {
				t.Fatalf("pion cannot parse packet %d: %v", part, err)
			}
			if d.PictureID != 0x7ffe || d.I != 1 || (d.S == 1) != (part == 0) || d.PID != 0 {
				t.Fatalf("descriptor %+v", d)
			}
			if got := sfu.IsKeyframeStart(sfu.CodecVP8, p); got != (key && part == 0) {
				t.Fatalf("key=%v part %d: IsKeyframeStart = %v", key, part, got)
			}
			if ns, ok := readStamp(p); !ok || ns != 42 {
				t.Fatalf("stamp %d %v", ns, ok)
			}
			if part == 0 && key {
				w, h, ok := sfu.VP8FrameSize(p)
				if !ok || w != 1280 || h != 720 {
					t.Fatalf("keyframe size %dx%d %v", w, h, ok)
				}
			}
		}
		if total != size {
			t.Fatalf("frame of %d bytes sent as %d", size, total)
		}
	}
}

func TestFrameSizerAverage(t *testing.T) {
	p := VideoParams{Bitrate: 2_500_000, FPS: 30, KeyframeInterval: 2 * time.Second}
	f := newFrameSizer(p, 12345)
	bytes := 0
	const seconds = 60
	for i := 0; i < seconds*p.FPS; i++ {
		bytes += f.next(i%(2*p.FPS) == 0)
	}
	got := float64(bytes*8) / seconds
	if math.Abs(got-2.5e6)/2.5e6 > 0.03 {
		t.Fatalf("average %.0f bit/s, want 2.5M ±3%%", got)
	}
	if f.key < 3*f.delta {
		t.Fatalf("keyframe %d bytes, delta %d: keyframes should be several times larger", f.key, f.delta)
	}
}

func TestNormalize(t *testing.T) {
	c := DefaultConfig()
	c.Preset = "AUDIO"
	if err := c.normalize(); err != nil {
		t.Fatal(err)
	}
	if c.Video || c.Publishers != 4 || c.Subscribers != 20 || !c.publishersReceive() {
		t.Fatalf("audio preset: %+v", c)
	}
	c = DefaultConfig()
	c.Preset = "concert"
	if c.normalize() == nil {
		t.Fatal("unknown preset accepted")
	}
	c = DefaultConfig()
	c.Warmup = c.Duration
	if c.normalize() == nil {
		t.Fatal("warm-up as long as the run accepted")
	}
}

func TestParseProcStatCPU(t *testing.T) {
	stat := "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\nintr 1 2 3\n"
	busy, total, err := ParseProcStatCPU([]byte(stat))
	if err != nil || total != 1181 || busy != 161 {
		t.Fatalf("ParseProcStatCPU = %d, %d, %v; want 161, 1181", busy, total, err)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5\n", "cpu 1 2 x 4 5\n"} {
		if _, _, err := ParseProcStatCPU([]byte(bad)); err == nil {
			t.Errorf("ParseProcStatCPU(%q) accepted", bad)
		}
	}
	m, err := ReadMachine()
	if err != nil || m.Total == 0 || m.Busy > m.Total {
		t.Fatalf("ReadMachine = %+v, %v", m, err)
	}
}

func TestParseUDPTable(t *testing.T) {
	table := "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            \n" +
		"  390: 0100007F:CA7C 00000000:0000 07 00000000:00000200 00:00000000 00000000     0        0 534477 2 000000008f49438c 7        \n" +
		" 3877: 0100007F:981B 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 535768 2 00000000a5c84787 0        \n" +
		" 3878: 0100007F:981C 00000000:0000 07 00000000:00000010 00:00000000 00000000     0        0 999 2 00000000a5c84787 5        \n"
	s, err := ParseUDPTable([]byte(table), map[uint64]bool{534477: true, 999: true})
	if err != nil || s.Sockets != 2 || s.Drops != 12 || s.RxQueued != 0x210 {
		t.Fatalf("ParseUDPTable = %+v, %v", s, err)
	}
	if _, err := ParseUDPTable([]byte("header\n  1: short row\n"), nil); err == nil {
		t.Fatal("short row accepted")
	}

	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if u, err := ReadUDP(0); err != nil || u.Sockets < 1 {
		t.Fatalf("ReadUDP(self) = %+v, %v; want at least the socket just opened", u, err)
	}
}

// TestSpread: with several node URLs the publishers of every room join
// the first node and the viewers go round-robin over all of them, evenly
// and always the same way; one URL takes everyone.
func TestSpread(t *testing.T) {
	cfg := Config{URL: "ws://127.0.0.1:1/v1/rtc, ws://127.0.0.1:2/v1/rtc,ws://127.0.0.1:3/v1/rtc"}
	urls := cfg.urls()
	if len(urls) != 3 || urls[1] != "ws://127.0.0.1:2/v1/rtc" {
		t.Fatalf("urls %q", urls)
	}
	var parts []*participant
	for room := 0; room < 2; room++ {
		parts = append(parts, &participant{publish: true}, &participant{publish: true, receive: true})
		for i := 0; i < 4; i++ {
			parts = append(parts, &participant{receive: true})
		}
	}
	spread(urls, parts, false)
	perNode := map[string]int{}
	viewers := 0
	for i, p := range parts {
		if p.publish {
			if p.url != urls[0] {
				t.Fatalf("publisher %d on %s, want the first node", i, p.url)
			}
			continue
		}
		if want := urls[viewers%3]; p.url != want {
			t.Fatalf("viewer %d on %s, want %s (round-robin)", viewers, p.url, want)
		}
		viewers++
		perNode[p.url]++
	}
	if perNode[urls[0]] != 3 || perNode[urls[1]] != 3 || perNode[urls[2]] != 2 {
		t.Fatalf("viewers per node %v, want 3/3/2", perNode)
	}

	// Pinned: each room whole on one node, the rooms in turn.
	var pinned []*participant
	for room := range 4 {
		name := fmt.Sprintf("r%d", room)
		pinned = append(pinned, &participant{room: name, publish: true}, &participant{room: name, receive: true}, &participant{room: name, receive: true})
	}
	spread(urls, pinned, true)
	for i, p := range pinned {
		if want := urls[(i/3)%3]; p.url != want {
			t.Fatalf("pinned: participant %d of room %s on %s, want %s", i, p.room, p.url, want)
		}
	}

	one := []*participant{{publish: true}, {receive: true}}
	spread([]string{"ws://a"}, one, false)
	if one[0].url != "ws://a" || one[1].url != "ws://a" {
		t.Fatalf("one node: %q %q", one[0].url, one[1].url)
	}
}

// TestScrapeMetrics reads the counters the summary uses from a server's
// text exposition, and finds /metrics from the signaling URL.
func TestScrapeMetrics(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, "# HELP go_memstats_mallocs_total x\n# TYPE go_memstats_mallocs_total counter\n"+
			"go_memstats_mallocs_total 1.234567e+06\ngo_gc_duration_seconds_count 12\n"+
			"starling_bwe_probes_total 3\nstarling_bwe_padding_packets_total 450\nstarling_rooms 1\n")
	}))
	defer srv.Close()
	base, err := metricsBase("ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/rtc")
	if err != nil || base != srv.URL {
		t.Fatalf("metricsBase: %q, %v; want %q", base, err, srv.URL)
	}
	m, err := scrapeOne(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if m != (metricsSample{mallocs: 1234567, gcs: 12, probes: 3, padding: 450}) {
		t.Fatalf("scraped %+v", m)
	}
	d := serverMetrics(metricsSample{mallocs: 1000, padding: 50}, m, 1000)
	if d.Mallocs != 1233567 || d.PaddingPackets != 400 || d.MallocsPerForwardedPacket != 1233.567 {
		t.Fatalf("window %+v", d)
	}
	if _, err := scrapeOne(base + "/nothing"); err == nil {
		t.Fatal("a 404 was read as metrics")
	}
}
