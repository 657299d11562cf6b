# Sourced by the benchmark scripts: `two_at_a_time JOB...` runs the caller's `run_one JOB` for every job, two at a
# time (the 2 cores these benchmarks are sized for).
two_at_a_time() {
    local i=0 j
    for j in "$@"; do
        run_one "$j" &
        i=$((i + 1))
        if (( i % 2 == 0 )); then wait; fi
    done
    wait
}
