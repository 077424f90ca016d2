// Load generator for pier's benchmark harness (bench/run.sh): standard library only.
module pier.local/bench/loadgen

go 1.24
