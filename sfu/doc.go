// Package sfu forwards RTP from publishers to subscribers: receivers, down tracks, munging and RTCP.
package sfu
