package reported

import (
	"errors"
	"fmt"
	"strings"
)

// EventPaused is BEP 21's `event=paused`: a partial seed that stopped
// downloading but still serves what it has.
const EventPaused Event = "paused"

// ErrUnknownEvent is returned by ParseEvent for an event name it does not know.
var ErrUnknownEvent = errors.New("unknown event")

// maxEventLen bounds the event text quoted back in error messages.
const maxEventLen = 32

// ParseEvent reads an announce `event` value as trackers and tracker logs
// write it. It accepts "", "started", "completed", "stopped", "paused"
// (BEP 21), and "empty" and "none", which some clients and logs use for a
// regular announce and which map to EventNone. Case and surrounding blanks
// are ignored. Anything else is an error wrapping ErrUnknownEvent.
func ParseEvent(s string) (Event, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "empty", "none":
		return EventNone, nil
	case "started":
		return EventStarted, nil
	case "completed":
		return EventCompleted, nil
	case "stopped":
		return EventStopped, nil
	case "paused":
		return EventPaused, nil
	}
	if len(s) > maxEventLen {
		s = s[:maxEventLen] + "..."
	}
	return EventNone, fmt.Errorf("%w %q", ErrUnknownEvent, s)
}
