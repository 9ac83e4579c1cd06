# Shared by the benchmark scripts (source it).

# busy_pct: the machine's CPU use over 3 s, in % of one core.
busy_pct() {
	local a b
	a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat)
	sleep 3
	b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat)
	echo $(((b - a) / 3))
}
