#!/usr/bin/env bash
# Capture the console's views as text, from `hangar demo` in a 120x36 tmux
# window: ./assets/screenshots/capture.sh [path to the hangar program]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
hangar="${1:-$here/../../target/debug/hangar}"
s="hangar-screens-$$"
tmux new-session -d -s "$s" -x 120 -y 36 "$hangar demo"
trap 'tmux kill-session -t "$s" 2>/dev/null || true' EXIT
shot() { tmux capture-pane -p -t "$s" > "$here/$1.txt"; }
wait_for() {
    for _ in $(seq 1 150); do
        tmux capture-pane -p -t "$s" | grep -q "$1" && return 0
        sleep 0.2
    done
    echo "timed out waiting for: $1" >&2
    exit 1
}
wait_for "3/3 nodes up"
sleep 3 # let usage and RTTs settle
shot 1-cluster
tmux send-keys -t "$s" 2 Down " "
wait_for "\[x\]"
shot 2-what-if
tmux send-keys -t "$s" 3
wait_for "Ring"
shot 3-layout
tmux send-keys -t "$s" e
wait_for "Role of node"
shot 3b-layout-edit-form
tmux send-keys -t "$s" Escape
sleep 0.5
tmux send-keys -t "$s" 4
wait_for "Access keys"
shot 4-buckets-and-keys
tmux send-keys -t "$s" 5
wait_for "Background workers"
shot 5-workers
tmux send-keys -t "$s" 6
wait_for "Events"
shot 6-events
tmux send-keys -t "$s" "?"
wait_for "Keys (any key closes)"
shot 7-help
tmux send-keys -t "$s" x q
wait_for "Quit the demo?"
tmux send-keys -t "$s" y
