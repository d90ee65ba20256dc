#!/bin/sh
# The test suite (npm test), in two phases against the same real Kafka, PostgreSQL and registry:
# 1. every file but the two below, two files at a time (most of a test is waiting on a broker, a group or a kill,
#    so two share the machine's cores well); each uses topics, tables and groups of its own.
# 2. the files that stop and restart the shared embedded Kafka and PostgreSQL (chaos, and orders-revenue's crash
#    test) run alone, one after the other, so that no other test sees those restarts.
# Both phases always run; the suite fails if either does.
serial="test/integration/chaos.test.ts test/integration/orders-revenue.test.ts"
status=0
mocha --parallel --jobs "${TEST_JOBS:-2}" --ignore test/integration/chaos.test.ts --ignore test/integration/orders-revenue.test.ts 'test/**/*.test.ts' || status=1
# shellcheck disable=SC2086
mocha $serial || status=1
exit $status
