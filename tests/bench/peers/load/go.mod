module bulkhead.dev/bench/peers-load

go 1.22
