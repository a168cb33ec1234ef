package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestWithoutTrackers(t *testing.T) {
	own := func(u string) bool { return strings.Contains(u, "own") }
	tests := []struct {
		in, want [][]string
	}{
		{nil, nil},
		{[][]string{{"http://own/announce"}}, nil},
		{[][]string{{"http://own/announce"}, {"udp://other:6969"}}, [][]string{{"udp://other:6969"}}},
		{[][]string{{"http://a/announce", "http://own/announce", "http://b/announce"}}, [][]string{{"http://a/announce", "http://b/announce"}}},
	}
	for _, tc := range tests {
		if got := withoutTrackers(tc.in, own); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("withoutTrackers(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
