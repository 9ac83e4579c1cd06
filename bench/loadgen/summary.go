package loadgen

// NodeShare is the participants that joined through one node.
type NodeShare struct {
	URL         string `json:"url"`
	Publishers  int    `json:"publishers"`
	Subscribers int    `json:"subscribers"` // receive-only participants
}

// Summary is what a run measured over its window (after the warm-up).
type Summary struct {
	Date         string `json:"date"`
	Preset       string `json:"preset"`
	URL          string `json:"url"`
	Rooms        int    `json:"rooms"`
	Publishers   int    `json:"publishers"`  // joined and publishing
	Subscribers  int    `json:"subscribers"` // joined participants that receive (meeting publishers included)
	JoinFailures int    `json:"joinFailures"`
	// ServerNodes is each server process's usage when several are
	// measured (--server-pid A,B,C); Server is then their sum.
	ServerNodes []ProcStats `json:"serverNodes,omitempty"`
	// Nodes is how the joined participants spread over the URLs, when
	// --url lists several (see spread).
	Nodes         []NodeShare `json:"nodes,omitempty"`
	WindowSeconds float64     `json:"windowSeconds"`

	VideoBitrate int64  `json:"videoBitrate"` // configured, bits/s; 0 = no video
	FPS          int    `json:"fps,omitempty"`
	Codec        string `json:"codec,omitempty"` // video: vp8 or h264
	Simulcast    bool   `json:"simulcast"`       // video sent as layers q/h/f
	AudioBitrate int64  `json:"audioBitrate"`    // configured, bits/s; 0 = no audio
	Mix          bool   `json:"mix,omitempty"`   // receivers got the server's audio mix

	StreamsExpected int `json:"streamsExpected"` // (subscriber, track) pairs
	StreamsStarted  int `json:"streamsStarted"`  // of those, received at least one packet
	// NotStarted names the first of the streams that never started, with
	// the receiver's state (notstarted.go).
	NotStarted []string `json:"notStarted,omitempty"`
	// MutedTracks are audio tracks muted by publishers beyond --speakers:
	// they send, the server does not forward, no stream is expected.
	MutedTracks int `json:"mutedTracks"`

	Sent struct {
		Packets          uint64  `json:"packets"`
		PacketsPerSecond float64 `json:"packetsPerSecond"`
		Bitrate          float64 `json:"bitrate"` // RTP bits/s over all publishers
		Keyframes        uint64  `json:"keyframes"`
		KeyframeRequests uint64  `json:"keyframeRequests"` // PLI/FIR from the server
	} `json:"sent"`
	// SentLayers is the video each layer carried, over all publishers, low
	// to high (one entry without simulcast).
	SentLayers []LayerSent `json:"sentLayers,omitempty"`
	Received   struct {
		Packets          uint64  `json:"packets"`
		PacketsPerSecond float64 `json:"packetsPerSecond"`
		// ExpectedFromSent is Σ over received streams of the packets its
		// publisher sent in the window: sent × subscribers. A simulcast
		// video stream carries one of the layers, whichever the server
		// picks, so it counts its sequence-number span less padding
		// instead (the SFU's output is contiguous across layer switches).
		ExpectedFromSent uint64  `json:"expectedFromSent"`
		DeliveryRatio    float64 `json:"deliveryRatio"` // MediaPackets / ExpectedFromSent
		// MediaPackets carry a publisher's stamp; for streams judged by
		// sent × subscribers, only those sent inside the window, counted
		// whenever they arrived (a grown delay is not loss). PaddingPackets are
		// padding-only (bandwidth probes); the rest of Packets are other
		// packets without a stamp (see Loss.StampsMissing).
		MediaPackets   uint64 `json:"mediaPackets"`
		PaddingPackets uint64 `json:"paddingPackets"`
	} `json:"received"`
	// LayerChanges counts subscriptionUpdated notifications in the window
	// (the server switching or pausing a subscriber's layer), Pauses those
	// saying "paused".
	LayerChanges uint64 `json:"layerChanges"`
	Pauses       uint64 `json:"pauses"`
	// VideoLayers is what the subscribers' video streams carried in the
	// window, by the size in the keyframes (each packet counts for the
	// last keyframe before it); LayerSwitches counts keyframes whose size
	// differs from the stream's previous one.
	VideoLayers       []LayerReceived `json:"videoLayers,omitempty"`
	LayerSwitches     uint64          `json:"layerSwitches"`
	SubscriberBitrate struct {
		Mean float64 `json:"mean"` // bits/s received per subscriber (RTP bytes)
		Min  float64 `json:"min"`
	} `json:"subscriberBitrate"`
	Loss struct {
		Lost          uint64  `json:"lost"`
		Expected      uint64  `json:"expected"` // from RTP sequence numbers
		Percent       float64 `json:"percent"`
		WorstStream   float64 `json:"worstStreamPercent"`
		BadPackets    uint64  `json:"badPackets"`
		StampsMissing uint64  `json:"stampsMissing"`
		// Datagrams the kernel dropped in the window because a UDP
		// socket's receive buffer was full, on either side (-1 = unknown),
		// and what waited in those buffers at the end. Loss not found here
		// happened inside a process (pion's buffers) or was never sent.
		ServerSocketDrops    int64  `json:"serverSocketDrops"`
		GeneratorSocketDrops int64  `json:"generatorSocketDrops"`
		ServerRxQueuedBytes  uint64 `json:"serverRxQueuedBytes"`
		GenRxQueuedBytes     uint64 `json:"generatorRxQueuedBytes"`
	} `json:"loss"`
	DelayMs      Percentiles `json:"delayMs"`      // publisher send → subscriber read
	JoinMs       Percentiles `json:"joinMs"`       // Dial: WebSocket, join, publisher negotiation
	MediaStartMs Percentiles `json:"mediaStartMs"` // publishing began → first packet, per stream

	// Padding is the padding-only packets each receiver got;
	// ServerMetrics what the servers' /metrics counted (servermetrics.go).
	Padding       PaddingStats   `json:"padding"`
	ServerMetrics *ServerMetrics `json:"serverMetrics,omitempty"`

	Server    *ProcStats    `json:"server,omitempty"`
	Generator *ProcStats    `json:"generator,omitempty"`
	Machine   *MachineStats `json:"machine,omitempty"`

	// Recordings started with --record, one per room (stopped after the
	// window, so their figures cover the whole run).
	Recordings []RecordingStats `json:"recordings,omitempty"`
}

// LayerSent is one video layer over all publishers in the window.
type LayerSent struct {
	RID              string  `json:"rid,omitempty"` // "" = not simulcast
	Width            int     `json:"width"`
	Height           int     `json:"height"`
	Bitrate          float64 `json:"bitrate"` // RTP bits/s
	PacketsPerSecond float64 `json:"packetsPerSecond"`
	Frames           uint64  `json:"frames"`
	Keyframes        uint64  `json:"keyframes"`
	KeyframeRequests uint64  `json:"keyframeRequests"` // PLI/FIR for this layer
	// FramesOff are frames not sent because the server had turned the
	// layer off (publishLayers, dynacast).
	FramesOff uint64 `json:"framesOff"`
}

// LayerReceived is the video the subscribers received at one size.
type LayerReceived struct {
	Width   int     `json:"width"` // 0×0: before a stream's first keyframe with a size
	Height  int     `json:"height"`
	Packets uint64  `json:"packets"` // media packets in the window
	Percent float64 `json:"percent"` // of all video media packets received
	// StreamsAtEnd are the video streams whose last keyframe had this size.
	StreamsAtEnd int `json:"streamsAtEnd"`
}

// RecordingsOK says whether every recording asked for ran and wrote files.
func (s *Summary) RecordingsOK() bool {
	for i := range s.Recordings {
		if !s.Recordings[i].OK() {
			return false
		}
	}
	return true
}

// MachineStats is the whole machine's CPU use over the window, to see what
// else ran: OtherPercent is what neither the server nor the generator used.
type MachineStats struct {
	Cores        int     `json:"cores"`
	CPUPercent   float64 `json:"cpuPercent"` // of one core; at most 100 × Cores
	OtherPercent float64 `json:"otherPercent"`
}

// Percentiles of a distribution, in milliseconds.
type Percentiles struct {
	P50     float64 `json:"p50"`
	P95     float64 `json:"p95"`
	P99     float64 `json:"p99"`
	Max     float64 `json:"max"`
	Samples uint64  `json:"samples"`
}

// ProcStats is a process's usage over the window.
type ProcStats struct {
	PID        int     `json:"pid,omitempty"`
	CPUPercent float64 `json:"cpuPercent"` // of one core
	CPUSeconds float64 `json:"cpuSeconds"`
	RSSMB      float64 `json:"rssMB"`      // at the end of the window
	RSSStartMB float64 `json:"rssStartMB"` // before anyone joined
	// Server only.
	UsPerForwardedPacket     float64 `json:"usPerForwardedPacket,omitempty"` // every RTP packet received, probes included
	UsPerMediaPacket         float64 `json:"usPerMediaPacket,omitempty"`     // media packets only
	CPUMsPerSubscriberSecond float64 `json:"cpuMsPerSubscriberSecond,omitempty"`
	RSSPerSubscriberKB       float64 `json:"rssPerSubscriberKB,omitempty"`
}
