//go:build !race

package cluster_test

const mixUnderRace = false
